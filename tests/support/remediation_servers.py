"""Real servers for the remediation tests: Alertmanager, `gpulens remediate serve`, a small Kubernetes
API, and a webhook sink. All bind 127.0.0.1 on free ports and stop when their context ends.

No Kubernetes API server can run here, so `KubeApi` implements the five calls the k8s actions make
(read/patch a node, list pods by node, create an eviction) over real HTTP with the API's JSON shapes,
including the Eviction API's 429 while a PodDisruptionBudget blocks a pod.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.support.http_server import serve_http
from tests.support.servers import free_port, gpulens_exe, require_binary, stop, wait_http


@contextlib.contextmanager
def run_alertmanager(tmp_path: Path, webhook_url: str, *, token: str | None = None) -> Iterator[str]:
    """Debian's prometheus-alertmanager routing every alert to `webhook_url` within about a second.

    Yields its host:port (for Prometheus' `alerting` config).
    """
    binary = require_binary("prometheus-alertmanager")
    home = tmp_path / "alertmanager"
    home.mkdir(exist_ok=True)
    webhook: dict[str, Any] = {"url": webhook_url, "send_resolved": True, "max_alerts": 0}
    if token:
        webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": token}}
    config = {
        "route": {
            "receiver": "gpulens",
            "group_by": ["alertname", "node"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "gpulens", "webhook_configs": [webhook]}],
    }
    (home / "alertmanager.yml").write_text(json.dumps(config))
    port = free_port()
    args = [
        binary,
        f"--config.file={home / 'alertmanager.yml'}",
        f"--storage.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with (home / "alertmanager.log").open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=60, proc=proc)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


@dataclass
class Remediate:
    url: str
    proc: subprocess.Popen[bytes]
    audit_log: Path
    log: Path

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def run_remediate(tmp_path: Path, *extra: str, token: str | None = None) -> Iterator[Remediate]:
    """`gpulens remediate serve` as a subprocess on a free port, its audit log under tmp_path."""
    port = free_port()
    audit_log = tmp_path / "audit.jsonl"
    log = tmp_path / "remediate.log"
    env = {k: v for k, v in os.environ.items() if k != "GPULENS_REMEDIATE_TOKEN"}
    if token:
        env["GPULENS_REMEDIATE_TOKEN"] = token
    args = [gpulens_exe(), "remediate", "serve", "--port", str(port), "--audit-log", str(audit_log), *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc=proc)
        yield Remediate(url=url, proc=proc, audit_log=audit_log, log=log)
    finally:
        stop(proc)


@dataclass
class WebhookSink:
    """Records every JSON body POSTed to it; answers `status`."""

    status: int = 200
    bodies: list[Any] = field(default_factory=list)

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        sink = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.bodies.append(json.loads(body))
                self._send(sink.status, {})

        with serve_http(Handler) as url:
            yield url


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class KubeApi:
    """Nodes and pods in memory behind the Kubernetes API paths the k8s actions use.

    `pdb_blocks[(namespace, pod)]` is how many more evictions of that pod answer 429 (a
    PodDisruptionBudget allows no disruption yet); -1 blocks for ever. An eviction deletes the pod.
    """

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: list[dict[str, Any]] = field(default_factory=list)
    pdb_blocks: dict[tuple[str, str], int] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    evicted: list[tuple[str, str]] = field(default_factory=list)

    def add_node(self, name: str) -> None:
        self.nodes[name] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}}

    def add_pod(
        self,
        namespace: str,
        name: str,
        node: str,
        owner_kind: str | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        meta: dict[str, Any] = {"name": name, "namespace": namespace, "annotations": dict(annotations or {})}
        if owner_kind:
            meta["ownerReferences"] = [
                {"apiVersion": "apps/v1", "kind": owner_kind, "name": f"{name}-owner", "uid": f"uid-{name}"}
            ]
        self.pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]},
                "status": {"phase": "Running"},
            }
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        with serve_http(_kube_handler(self)) as url:
            yield url


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
        "metadata": {},
    }


def _kube_handler(api: KubeApi) -> type[BaseHTTPRequestHandler]:
    node_path = re.compile(r"^/api/v1/nodes/([^/]+)$")
    eviction_path = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/eviction$")

    class Handler(_Quiet):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            api.requests.append(("GET", url.path))
            if m := node_path.match(url.path):
                node = api.nodes.get(m[1])
                self._send(200, node) if node else self._send(404, _status(404, "NotFound", "node not found"))
            elif url.path == "/api/v1/pods":
                selector = parse_qs(url.query).get("fieldSelector", [""])[0]
                name = selector.removeprefix("spec.nodeName=")
                items = [p for p in api.pods if p["spec"]["nodeName"] == name]
                self._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
            else:
                self._send(404, _status(404, "NotFound", url.path))

        def do_PATCH(self) -> None:
            url = urlparse(self.path)
            api.requests.append(("PATCH", url.path))
            patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            m = node_path.match(url.path)
            if not m or m[1] not in api.nodes:
                self._send(404, _status(404, "NotFound", url.path))
                return
            api.nodes[m[1]]["spec"].update(patch.get("spec", {}))
            self._send(200, api.nodes[m[1]])

        def do_POST(self) -> None:
            url = urlparse(self.path)
            api.requests.append(("POST", url.path))
            self.rfile.read(int(self.headers["Content-Length"]))
            m = eviction_path.match(url.path)
            if not m:
                self._send(404, _status(404, "NotFound", url.path))
                return
            key = (m[1], m[2])
            left = api.pdb_blocks.get(key, 0)
            if left != 0:
                api.pdb_blocks[key] = left - 1 if left > 0 else left
                self._send(
                    429,
                    _status(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                    ),
                )
                return
            api.pods = [p for p in api.pods if (p["metadata"]["namespace"], p["metadata"]["name"]) != key]
            api.evicted.append(key)
            self._send(
                201, {"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 201, "metadata": {}}
            )

    return Handler
