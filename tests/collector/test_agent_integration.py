"""`gpulens agent --backend sim` as a subprocess: HTTP, promtool, a real Prometheus, the real socket."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.servers import gpulens_exe, require_binary, run_agent, run_prometheus

SPEC_GPU_FAMILIES = (
    "gpulens_gpu_up",
    "gpulens_gpu_utilization_ratio",
    "gpulens_gpu_sm_active_ratio",
    "gpulens_gpu_sm_occupancy_ratio",
    "gpulens_gpu_tensor_active_ratio",
    "gpulens_gpu_dram_active_ratio",
    "gpulens_gpu_memory_used_bytes",
    "gpulens_gpu_memory_total_bytes",
    "gpulens_gpu_power_watts",
    "gpulens_gpu_energy_joules_total",
    "gpulens_gpu_temperature_celsius",
    "gpulens_gpu_sm_clock_hertz",
    "gpulens_gpu_sm_active_seconds_total",
    "gpulens_gpu_tensor_active_seconds_total",
    "gpulens_gpu_dram_active_seconds_total",
    "gpulens_gpu_held_seconds_total",
    "gpulens_gpu_ecc_errors_total",
)


def _send(path: Path, records: list[bytes]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for r in records:
            s.sendto(r, str(path))


def _step(i: int, rank: int = 0, gpu: int = 7, job: str = "itest-job", team: str = "itest-team") -> bytes:
    return json.dumps(
        {
            "v": 1,
            "kind": "step",
            "job_id": job,
            "team": team,
            "rank": rank,
            "local_rank": rank,
            "gpu": gpu,
            "pid": 1,
            "step": i,
            "ts": time.time(),
            "step_seconds": 0.3,
            "tokens": 1000,
            "loss": 2.0,
            "mfu": 0.5,
        }
    ).encode()


def _value(text: str, pattern: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if re.match(pattern, line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_metric(agent: object, pattern: str, minimum: float, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = agent.metrics()  # type: ignore[attr-defined]
        if _value(text, pattern) >= minimum or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def _wait_text(agent: object, ready: Callable[[str], bool], timeout: float = 30.0) -> str:
    """The agent's /metrics once `ready` holds of it (polled), else its last page: the asserts say why."""
    deadline = time.monotonic() + timeout
    while True:
        text = agent.metrics()  # type: ignore[attr-defined]
        if ready(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def _has_families(text: str) -> bool:
    return all(re.search(rf"^{family}{{", text, re.M) for family in SPEC_GPU_FAMILIES)


def test_scrape_promtool_openmetrics_healthz_and_sigterm(tmp_path: Path) -> None:
    with run_agent(tmp_path, "--interval", "0.5", "--instance-id", "i-0123", "--cluster", "c1") as agent:
        text = _wait_text(agent, _has_families)
        for family in SPEC_GPU_FAMILIES:
            assert re.search(rf"^{family}{{", text, re.M), family
        assert len(set(re.findall(r'^gpulens_gpu_up\{gpu="(\d+)"', text, re.M))) == 8
        assert 'backend="sim"' in text and 'instance_id="i-0123"' in text
        promtool = require_binary("promtool")
        lint = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint
        req = urllib.request.Request(
            f"{agent.url}/metrics",
            headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"},
        )
        with urllib.request.urlopen(req) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            assert resp.read().decode().endswith("# EOF\n")
        with urllib.request.urlopen(f"{agent.url}/healthz") as resp:
            assert resp.status == 200
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.proc.wait(timeout=10) == 0
        assert not agent.socket.exists()  # removed on graceful shutdown


def test_datagrams_become_counters_and_histograms_and_garbage_is_survived(tmp_path: Path) -> None:
    with run_agent(tmp_path) as agent:
        garbage = [
            b"{not json",
            b"\x00" * 100,
            b"[]",
            b"9" * 8000,
            json.dumps({"v": 1}).encode(),
            b"x" * 9000,
        ]
        _send(agent.socket, garbage * 50)
        _send(agent.socket, [_step(i, rank=r) for i in range(50) for r in range(2)])
        text = _wait_metric(agent, r'gpulens_train_steps_total\{.*job_id="itest-job"', 100)
        assert (
            _value(text, r'gpulens_train_steps_total\{.*job_id="itest-job".*rank="0".*team="itest-team"')
            == 50
        )
        assert _value(text, r'gpulens_train_tokens_total\{.*job_id="itest-job"') == 100 * 1000
        assert (
            _value(text, r'gpulens_train_step_seconds_bucket\{.*job_id="itest-job".*le="0.5".*rank="1"') == 50
        )
        assert _value(text, r'gpulens_train_step_seconds_count\{.*job_id="itest-job"') == 100
        assert _value(text, r'gpulens_agent_datagrams_total\{result="malformed"\}') == 300
        text = _wait_metric(agent, r'gpulens_gpu_up\{gpu="7",job_id="itest-job",[^}]*team="itest-team"', 1)
        assert re.search(r'^gpulens_gpu_up\{gpu="7",job_id="itest-job",[^}]*team="itest-team"', text, re.M)
        assert agent.proc.poll() is None


def test_sim_fault_79_takes_the_gpu_down_and_counts_the_xid(tmp_path: Path) -> None:
    with run_agent(
        tmp_path, "--interval", "0.25", "--sim-fault", "79:3:1", "--label", "team=platform"
    ) as agent:
        text = _wait_metric(agent, r'gpulens_gpu_xid_errors_total\{.*gpu="3"', 1)
        line = next(x for x in text.splitlines() if x.startswith("gpulens_gpu_xid_errors_total{"))
        assert 'xid="79"' in line and 'recoverable="false"' in line and 'action="reboot_node"' in line
        assert line.endswith(" 1.0")
        assert re.search(r'^gpulens_gpu_up\{gpu="3",[^}]*\} 0\.0$', text, re.M)
        assert len(re.findall(r"^gpulens_gpu_up\{[^}]*\} 1\.0$", text, re.M)) == 7
        # the free GPU 7 carries the static team label
        assert re.search(r'^gpulens_gpu_up\{gpu="7",[^}]*team="platform"', text, re.M)


def test_profiler_lock_endpoint_and_sigusr1(tmp_path: Path) -> None:
    with run_agent(tmp_path, "--interval", "0.2") as agent:
        req = urllib.request.Request(f"{agent.url}/profiling/pause?seconds=30", method="POST")
        assert urllib.request.urlopen(req).status == 200
        text = _wait_text(agent, lambda t: "gpulens_gpu_sm_active_ratio{" not in t)
        assert 'profiling="paused"' in text and "gpulens_gpu_sm_active_ratio{" not in text
        assert "gpulens_gpu_utilization_ratio{" in text
        urllib.request.urlopen(urllib.request.Request(f"{agent.url}/profiling/resume", method="POST"))
        assert "gpulens_gpu_sm_active_ratio{" in _wait_text(
            agent, lambda t: "gpulens_gpu_sm_active_ratio{" in t
        )
        agent.proc.send_signal(signal.SIGUSR1)
        assert 'profiling="paused"' in _wait_text(agent, lambda t: 'profiling="paused"' in t)


def test_real_prometheus_scrapes_the_spec_families_with_labels(tmp_path: Path) -> None:
    with run_agent(tmp_path, "--interval", "0.5", "--node", "promnode") as agent:
        _send(agent.socket, [_step(i) for i in range(10)])
        with run_prometheus(tmp_path, [f"127.0.0.1:{agent.port}"]) as prom:
            prom.wait_for('gpulens_train_steps_total{job_id="itest-job"}')
            for family in (*SPEC_GPU_FAMILIES, "gpulens_agent_info", "gpulens_node_info"):
                result = prom.wait_for(family, timeout=20)
                labels = result[0]["metric"]
                if family.startswith("gpulens_gpu_"):
                    assert {"node", "gpu", "uuid", "model"} <= set(labels), (family, labels)
                    assert labels["node"] == "promnode"
            held = prom.query('gpulens_gpu_held_seconds_total{job_id="sim-llm-pretrain"}')
            assert {r["metric"]["team"] for r in held} == {"ai-research"} and len(held) == 4
            step = prom.query("gpulens_train_step_seconds_bucket")
            assert {"job_id", "team", "rank", "gpu", "node", "le"} <= set(step[0]["metric"])
            info = prom.query("gpulens_agent_info")[0]["metric"]
            assert info["backend"] == "sim"


def test_auto_without_a_gpu_exits_1_suggesting_sim(tmp_path: Path) -> None:
    proc = subprocess.run(
        [gpulens_exe(), "agent", "--backend", "auto", "--port", "1", "--socket", str(tmp_path / "s.sock")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--backend sim" in lines[0]


@pytest.mark.parametrize("args", [["--sim-fault", "79:3"], ["--label", "team"], ["--sim-scenario", "nope"]])
def test_bad_flags_are_one_line_errors(tmp_path: Path, args: list[str]) -> None:
    proc = subprocess.run(
        [
            gpulens_exe(),
            "agent",
            "--backend",
            "sim",
            "--port",
            "1",
            "--socket",
            str(tmp_path / "s.sock"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
