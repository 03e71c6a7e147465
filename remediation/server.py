"""The HTTP receiver: `POST /alerts` (Alertmanager webhook), `GET /healthz`, `GET /metrics`.

Bearer-token auth on `/alerts` when a token is configured (401 otherwise); a body that is not a
version-4 payload is a 400 and the server keeps serving; more than `max_alerts` alerts in one payload
is a 413 naming the cap. The engine decides and audits at once and acts on its worker pool; the reply
waits at most `reply_wait` seconds for the outcomes (a decision still running reads `pending`), so a
drain blocked by a PodDisruptionBudget never holds the webhook, let alone other webhooks. `/metrics`
exposes `gpulens_remediation_actions_total{action,result}` on a private registry.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from gpulens.httpserver import GpulensHTTPServer
from gpulens.remediation.actions.base import printable
from gpulens.remediation.engine import Engine
from gpulens.remediation.model import AuditRecord
from gpulens.remediation.payload import PayloadError, TooManyAlerts, parse_payload

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024  # Alertmanager groups are small; refuse anything that is not
MAX_ALERTS = 1000  # per payload: Alertmanager's webhook_config max_alerts keeps groups under it


@dataclass(frozen=True)
class ServerConfig:
    """`token` is required as `Authorization: Bearer TOKEN` on /alerts when set; `connection_timeout`
    seconds of silence close a connection; `reply_wait` seconds is the longest a webhook reply waits
    for its actions' outcomes."""

    host: str = "127.0.0.1"
    port: int = 9095
    token: str | None = None
    max_alerts: int = MAX_ALERTS
    reply_wait: float = 5.0
    connection_timeout: float = 10.0


class Metrics:
    """The receiver's own metrics, on a private registry (never the process-global one)."""

    def __init__(self, execute: bool) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.actions = Counter(
            "gpulens_remediation_actions",
            "Remediation decisions, by action and result.",
            ("action", "result"),
            registry=self.registry,
        )
        self.webhooks = Counter(
            "gpulens_remediation_webhooks",
            "Webhook requests on /alerts, by result (ok, unauthorized, malformed, error).",
            ("result",),
            registry=self.registry,
        )
        mode = Gauge(
            "gpulens_remediation_execute",
            "1 when actions run for real (--execute), 0 in dry-run.",
            registry=self.registry,
        )
        mode.set(1 if execute else 0)
        self.queued = Gauge(
            "gpulens_remediation_actions_queued",
            "Actions decided and waiting for a free worker (a storm, or workers held by slow drains).",
            registry=self.registry,
        )

    def watch(self, engine: Engine) -> None:
        pool = engine.pool
        self.queued.set_function(lambda: float(pool.queued()) if pool is not None else 0.0)

    def observe(self, record: AuditRecord) -> None:
        self.actions.labels(action=record.action, result=record.result).inc()


class RemediationServer:
    """A threading HTTP server around one engine; `serve_forever()` until `shutdown()`."""

    def __init__(self, engine: Engine, metrics: Metrics, config: ServerConfig) -> None:
        metrics.watch(engine)
        handler = type("Handler", (_Handler,), {"engine": engine, "metrics": metrics, "config": config})
        server = type("Server", (GpulensHTTPServer,), {"connection_timeout": config.connection_timeout})
        self.httpd = server((config.host, config.port), handler)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="gpulens-remediate", daemon=True)
        thread.start()
        return thread

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    engine: Engine
    metrics: Metrics
    config: ServerConfig
    server_version = "gpulens-remediate"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b"ok\n", "text/plain; charset=utf-8")
        elif self.path == "/metrics":
            self._reply(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        try:
            self._post()
        except (ConnectionError, TimeoutError):
            raise  # the client went away: the server logs one debug line
        except Exception:
            logger.exception("POST %s failed", self.path[:100])
            self.metrics.webhooks.labels(result="error").inc()
            self._json(500, {"error": "internal error; see the receiver's log"})

    def _post(self) -> None:
        if self.path != "/alerts":
            self._json(404, {"error": "not found"})
            return
        if not self._authorized():
            self.metrics.webhooks.labels(result="unauthorized").inc()
            self._json(401, {"error": "missing or wrong bearer token"}, {"WWW-Authenticate": "Bearer"})
            return
        body = self._body()
        if body is None:
            return
        try:
            alerts = parse_payload(body, max_alerts=self.config.max_alerts)
        except PayloadError as exc:
            self.metrics.webhooks.labels(result="malformed").inc()
            self._json(413 if isinstance(exc, TooManyAlerts) else 400, {"error": str(exc)})
            return
        try:
            records = self.engine.submit(alerts).wait(self.config.reply_wait)
        except OSError as exc:  # the audit log could not be written: act on nothing, let Alertmanager retry
            logger.error("audit log write failed: %s", exc)
            self.metrics.webhooks.labels(result="error").inc()
            self._json(500, {"error": "audit log write failed"})
            return
        self.metrics.webhooks.labels(result="ok").inc()
        self._json(200, {"alerts": len(alerts), "decisions": [r.result for r in records]})

    def _authorized(self) -> bool:
        token = self.config.token
        if not token:
            return True
        given = self.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        # Constant-time comparison: the token must not leak through response timing.
        return scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), token.encode())

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.metrics.webhooks.labels(result="malformed").inc()
            self._json(411, {"error": "Content-Length required"})
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            self.metrics.webhooks.labels(result="malformed").inc()
            self._json(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
            return None
        return self.rfile.read(length)

    def _json(self, code: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._reply(code, json.dumps(doc).encode() + b"\n", "application/json", headers)

    def _reply(
        self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only: never headers, so a bearer token cannot reach the log.
        logger.debug("%s %s", self.address_string(), printable(format % args))
