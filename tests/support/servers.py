"""Real servers for integration tests: free ports, readiness waits, Prometheus, the gpulens agent.

Every server binds 127.0.0.1 and lives in the test's temporary directory; each launcher is a
context manager that stops what it started, even when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers 2xx; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def http_get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def gpulens_exe() -> str:
    """The `gpulens` entry point of the interpreter running the tests."""
    candidate = Path(sys.executable).parent / "gpulens"
    return str(candidate) if candidate.exists() else "gpulens"


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Agent:
    url: str
    port: int
    socket: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def metrics(self) -> str:
        return http_get(f"{self.url}/metrics")


@contextlib.contextmanager
def run_agent(tmp_path: Path, *extra: str, node: str = "testnode", gpus: int = 8) -> Iterator[Agent]:
    """`gpulens agent --backend sim` as a subprocess on a free port, its socket under tmp_path."""
    port = free_port()
    sock = tmp_path / "agent.sock"
    log = tmp_path / "agent.log"
    args = [
        gpulens_exe(),
        "agent",
        "--backend",
        "sim",
        "--sim-gpus",
        str(gpus),
        "--port",
        str(port),
        "--socket",
        str(sock),
        "--node",
        node,
        *extra,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc=proc)
        yield Agent(url=url, port=port, socket=sock, proc=proc, log=log)
    finally:
        stop(proc)


def require_binary(name: str) -> str:
    """Path to a Debian-packaged server binary; CI installs it (.ci/run), so absence fails there."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)")
    return path


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]

    def query(self, promql: str) -> list[dict[str, object]]:
        q = urllib.parse.urlencode({"query": promql})
        body = json.loads(http_get(f"{self.url}/api/v1/query?{q}"))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def wait_for(self, promql: str, timeout: float = 60.0) -> list[dict[str, object]]:
        """Poll until `promql` returns at least one series."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.5)
        raise TimeoutError(f"Prometheus returned nothing for {promql!r} within {timeout}s")


@contextlib.contextmanager
def run_prometheus(
    tmp_path: Path,
    targets: Sequence[str],
    *,
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    alertmanager: str | None = None,
    extra_flags: Sequence[str] = (),
) -> Iterator[Prometheus]:
    """A real Prometheus on 127.0.0.1 scraping `targets` (host:port), with its own config and data dir."""
    binary = require_binary("prometheus")
    port = free_port()
    home = tmp_path / "prometheus"
    home.mkdir(exist_ok=True)
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "scrape_configs": [{"job_name": "gpulens", "static_configs": [{"targets": list(targets)}]}],
        "rule_files": [str(p) for p in rule_files],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    (home / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    log = home / "prometheus.log"
    args = [
        binary,
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        *extra_flags,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/-/ready", timeout=60, proc=proc)
        yield Prometheus(url=url, proc=proc)
    finally:
        stop(proc)
