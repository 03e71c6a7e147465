"""The receiver over real HTTP (in-process, port 0): auth, malformed payloads, health, its own metrics."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpulens.remediation.audit import AuditLog
from gpulens.remediation.engine import Engine
from gpulens.remediation.policy import load_policy
from gpulens.remediation.server import Metrics, RemediationServer, ServerConfig
from tests.remediation.conftest import payload, xid_alert

TOKEN = "t0k3n-for-tests"


@dataclass
class Receiver:
    url: str
    audit: Path

    def post(
        self, body: bytes, token: str | None = TOKEN, path: str = "/alerts"
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:
            return reply.read().decode()

    def lines(self) -> list[dict[str, Any]]:
        return (
            [json.loads(line) for line in self.audit.read_text().splitlines()] if self.audit.exists() else []
        )


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    metrics = Metrics(execute=False)
    engine = Engine(load_policy(None), AuditLog(tmp_path / "audit.jsonl"), observe=metrics.observe)
    server = RemediationServer(engine, metrics, ServerConfig(port=0, token=TOKEN))
    server.start_in_thread()
    try:
        yield Receiver(url=f"http://127.0.0.1:{server.port}", audit=tmp_path / "audit.jsonl")
    finally:
        server.shutdown()


def test_an_alert_is_audited_as_a_dry_run_drain(receiver: Receiver) -> None:
    status, reply = receiver.post(payload(xid_alert("gpu-node-2")))
    assert (status, reply) == (200, {"alerts": 1, "decisions": ["dry_run", "dry_run"]})
    drain = receiver.lines()[-1]
    assert (drain["node"], drain["action"], drain["dry_run"], drain["result"]) == (
        "gpu-node-2",
        "k8s-drain",
        True,
        "dry_run",
    )


@pytest.mark.parametrize("token", [None, "wrong", "", f"{TOKEN}x"])
def test_a_missing_or_wrong_token_is_401_and_decides_nothing(receiver: Receiver, token: str | None) -> None:
    status, reply = receiver.post(payload(xid_alert()), token=token)
    assert status == 401 and "token" in reply["error"]
    assert receiver.lines() == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"version": "3", "alerts": []}', "unsupported payload version"),
        (b'{"version": "4"}', "alerts"),
        (b'{"version": "4", "alerts": [{"labels": {"node": "n1"}}]}', "alertname"),
        (b'{"version": "4", "alerts": [{"labels": {"alertname": "X", "gpu": 3}}]}', "alerts[0].labels"),
        (b'{"version": "4", "alerts": [{"labels": {"alertname": "X"}, "status": "pending"}]}', "status"),
    ],
)
def test_a_malformed_payload_is_400_and_the_server_keeps_serving(
    receiver: Receiver, body: bytes, words: str
) -> None:
    status, reply = receiver.post(body)
    assert status == 400 and words in reply["error"]
    assert receiver.lines() == []
    assert receiver.post(payload(xid_alert()))[0] == 200
    assert receiver.get("/healthz") == "ok\n"


def test_metrics_count_actions_by_result(receiver: Receiver) -> None:
    receiver.post(payload(xid_alert("a"), xid_alert("b")))
    receiver.post(payload(xid_alert("a")))  # a repeat
    receiver.post(b"junk")
    receiver.post(payload(xid_alert("c")), token="nope")
    text = receiver.get("/metrics")
    expected = [
        'gpulens_remediation_actions_total{action="k8s-drain",result="dry_run"} 2.0',
        'gpulens_remediation_actions_total{action="log",result="dry_run"} 2.0',
        'gpulens_remediation_actions_total{action="k8s-drain",result="deduplicated"} 1.0',
        'gpulens_remediation_webhooks_total{result="ok"} 2.0',
        'gpulens_remediation_webhooks_total{result="malformed"} 1.0',
        'gpulens_remediation_webhooks_total{result="unauthorized"} 1.0',
        "gpulens_remediation_execute 0.0",
        "gpulens_remediation_actions_queued 0.0",
    ]
    assert [line for line in expected if line not in text.splitlines()] == []


def test_unknown_paths_are_404(receiver: Receiver) -> None:
    assert receiver.post(payload(xid_alert()), path="/alert")[0] == 404
    with pytest.raises(urllib.error.HTTPError) as caught:
        receiver.get("/nope")
    assert caught.value.code == 404


def test_concurrent_webhooks_never_squeeze_past_the_blast_radius(receiver: Receiver) -> None:
    # Forty webhooks at once (issue 15 lost some to resets), each for another node; the default policy
    # allows two drains an hour.
    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(lambda i: receiver.post(payload(xid_alert(f"node-{i}")))[0], range(40)))
    assert statuses == [200] * 40
    drains = [r["result"] for r in receiver.lines() if r["action"] == "k8s-drain"]
    assert sorted(drains) == ["dry_run"] * 2 + ["rate_limited"] * 38


# -- issue 15, item 5: connection timeouts, a real listen backlog ---------------------------------------


@pytest.fixture
def idle_server(tmp_path: Path) -> Iterator[RemediationServer]:
    """A receiver that is bound and listening but not yet accepting (its accept loop not started)."""
    engine = Engine(load_policy(None), AuditLog(tmp_path / "audit.jsonl"))
    server = RemediationServer(engine, Metrics(execute=False), ServerConfig(port=0, token=TOKEN))
    try:
        yield server
    finally:
        server.httpd.server_close()
        engine.close()


def test_a_connection_that_sends_nothing_is_closed_by_the_server(receiver: Receiver) -> None:
    host, port = receiver.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=120) as silent:
        # No request: the server's connection timeout (10 s) must end it; recv sees the close.
        assert silent.recv(1024) == b""
    assert receiver.get("/healthz") == "ok\n"


def test_a_burst_of_connections_waits_in_the_backlog_instead_of_being_dropped(
    idle_server: RemediationServer,
) -> None:
    # 64 clients connect while the server is busy elsewhere (not accepting): the kernel completes each
    # handshake into the listen backlog. With a backlog of 5, all but about 6 would hang in SYN_SENT.
    clients = []
    try:
        for _ in range(64):
            conn = socket.socket()
            conn.settimeout(5)
            conn.connect(("127.0.0.1", idle_server.port))
            clients.append(conn)
        thread = idle_server.start_in_thread()
        for conn in clients:
            conn.settimeout(60)
            conn.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        replies = [conn.makefile("rb").readline() for conn in clients]
    finally:
        for conn in clients:
            conn.close()
    idle_server.httpd.shutdown()
    thread.join(timeout=30)
    assert replies == [b"HTTP/1.0 200 OK\r\n"] * 64
