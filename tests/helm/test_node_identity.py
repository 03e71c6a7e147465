"""node_identity.py (the agent's init container) against an HTTP server answering like the API server
with a recorded EKS Node object (tests/helm/fixtures/node-p4d.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.helm.chart import CHART
from tests.support.http_server import serve_http

SCRIPT = CHART / "files" / "scripts" / "node_identity.py"
NODE = json.loads((Path(__file__).parent / "fixtures" / "node-p4d.json").read_text())
NAME = NODE["metadata"]["name"]
TOKEN = "projected-token-for-the-test"
OFF_AWS = {
    **NODE,
    "metadata": {**NODE["metadata"], "name": "gke-node", "labels": {}},
    "spec": {"providerID": "gce://project/us-central1-a/gke-node"},
}


class ApiServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_error(401)
            return
        nodes = {f"/api/v1/nodes/{n['metadata']['name']}": n for n in (NODE, OFF_AWS)}
        if self.path not in nodes:
            self.send_error(404)
            return
        body = json.dumps(nodes[self.path]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with serve_http(ApiServer) as url:
        yield url


def run(api: str, node: str, out: Path, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    (out.parent / "token").write_text(token + "\n")
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            node,
            str(out),
            "--api",
            api,
            "--token",
            str(out.parent / "token"),
            "--ca",
            str(out.parent / "absent.crt"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_eks_node_yields_its_instance_id_and_type(api: str, tmp_path: Path) -> None:
    out = tmp_path / "node"
    out.mkdir()
    assert run(api, NAME, out).returncode == 0
    assert (out / "instance-id").read_text() == "i-0a1b2c3d4e5f60718"
    assert (out / "instance-type").read_text() == "p4d.24xlarge"


def test_a_node_off_aws_yields_empty_values(api: str, tmp_path: Path) -> None:
    out = tmp_path / "node"
    out.mkdir()
    assert run(api, "gke-node", out).returncode == 0
    assert (out / "instance-id").read_text() == "" and (out / "instance-type").read_text() == ""


@pytest.mark.parametrize("node, token, status", [(NAME, "wrong", "401"), ("no-such-node", TOKEN, "404")])
def test_an_api_error_is_one_line_and_writes_nothing(
    api: str, tmp_path: Path, node: str, token: str, status: str
) -> None:
    out = tmp_path / "node"
    out.mkdir()
    result = run(api, node, out, token)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert (
        result.stderr.startswith(f"node_identity: error: cannot read node {node}") and status in result.stderr
    )
    assert list(out.iterdir()) == []
