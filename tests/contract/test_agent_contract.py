"""docs/design.md §3 metric names and labels from a sim agent; §4 wire format (unknown keys ignored, malformed
counted and dropped, the agent survives)."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import Agent, run_agent

GPU_FAMILIES = (
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
)
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#"):
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    with run_agent(
        tmp_path_factory.mktemp("agent"),
        "--interval",
        "0.2",
        "--sim-seed",
        "3",
        "--sim-fault",
        "13:1:0",
        "--instance-id",
        "i-0abc",
        "--instance-type",
        "p4d.24xlarge",
        "--cluster",
        "c1",
        node="contract-node",
        gpus=4,
    ) as a:
        time.sleep(1.0)
        yield a


def send(path: Path, *payloads: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for p in payloads:
            s.sendto(p, str(path))


def wait_metrics(agent: Agent, predicate, timeout: float = 10.0) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    text = agent.metrics()
    while not predicate(text) and time.monotonic() < deadline:
        time.sleep(0.2)
        text = agent.metrics()
    return text


def test_gpu_families_and_labels(agent: Agent) -> None:
    got = samples(agent.metrics())
    names = {n for n, _, _ in got}
    missing = [f for f in GPU_FAMILIES if f not in names]
    assert not missing, f"missing families: {missing}"
    for name, labels, _ in got:
        assert "job" not in labels, (name, labels)
        if name.startswith("gpulens_gpu_"):
            assert {"node", "gpu", "uuid", "model"} <= set(labels), (name, labels)
            assert labels["node"] == "contract-node"
    ups = {labels["gpu"] for name, labels, v in got if name == "gpulens_gpu_up" and v == 1}
    assert ups == {"0", "1", "2", "3"}
    for name, _, value in got:
        if name.endswith("_ratio"):
            assert 0.0 <= value <= 1.0, (name, value)


def test_agent_families(agent: Agent) -> None:
    got = samples(agent.metrics())
    info = [labels for name, labels, _ in got if name == "gpulens_agent_info"]
    assert info and {"version", "backend"} <= set(info[0]) and info[0]["backend"] == "sim"
    names = {n for n, _, _ in got}
    assert "gpulens_agent_sample_seconds_bucket" in names
    assert info[0]["trust"] == "uid"  # sim: senders with the agent's uid speak for any GPU (design §3)
    results = {labels["result"] for name, labels, _ in got if name == "gpulens_agent_datagrams_total"}
    assert {"ok", "malformed", "rejected", "over_limit"} <= results
    assert "gpulens_gpu_utilization_seconds_total" in names


def test_phase_and_run_records_become_phase_seconds_and_attempt(agent: Agent) -> None:
    """design §3/§4: phase end-start per phase bucket (unknown names -> other); the latest attempt."""
    base = {"v": 1, "job_id": "phase-job", "team": "phase-team", "rank": 0}
    send(
        agent.socket,
        json.dumps(
            {**base, "kind": "run", "event": "start", "attempt": 2, "ts": 1.0, "world_size": 1}
        ).encode(),
        json.dumps(
            {**base, "kind": "phase", "attempt": 2, "phase": "eval", "start": 10.0, "end": 12.5}
        ).encode(),
        json.dumps(
            {**base, "kind": "phase", "attempt": 2, "phase": "warmup", "start": 0.0, "end": 0.5}
        ).encode(),
    )
    text = wait_metrics(agent, lambda t: 'phase="other"' in t and 'job_id="phase-job"' in t)
    got = [(n, lab, v) for n, lab, v in samples(text) if lab.get("job_id") == "phase-job"]
    phases = {lab["phase"]: v for n, lab, v in got if n == "gpulens_train_phase_seconds_total"}
    assert phases == {"eval": 2.5, "other": 0.5}
    assert [v for n, _, v in got if n == "gpulens_train_attempt"] == [2.0]


def test_counters_are_total_and_types_declared(agent: Agent) -> None:
    text = agent.metrics()
    for line in text.splitlines():
        if line.startswith("# TYPE gpulens_"):
            _, _, name, kind = line.split()
            if kind == "counter":
                assert name.endswith("_total"), line
            if name.endswith("_ratio"):
                assert kind == "gauge", line


def test_wire_format_unknown_keys_and_malformed(agent: Agent) -> None:
    step = {
        "v": 1,
        "kind": "step",
        "job_id": "wire-job",
        "team": "wire-team",
        "rank": 0,
        "local_rank": 0,
        "gpu": 2,
        "pid": 4242,
        "ts": time.time(),
        "step_seconds": 0.5,
        "tokens": 1024,
        "samples": 8,
        "loss": 2.31,
        "grad_norm": 1.0,
        "lr": 3e-4,
        "mfu": 0.41,
        "some_future_key": {"x": [1, 2]},
    }
    payloads = [json.dumps({**step, "step": i}).encode() for i in range(5)]
    anomaly = {
        "v": 1,
        "kind": "anomaly",
        "job_id": "wire-job",
        "team": "wire-team",
        "rank": 0,
        "step": 4,
        "anomaly": "spike",
        "loss": 4.7,
        "extra": True,
    }
    send(
        agent.socket,
        *payloads,
        json.dumps(anomaly).encode(),
        b"{not json",
        b"[1, 2]",
        json.dumps({"v": 1, "kind": "step", "step": "three"}).encode(),
    )

    def ready(text: str) -> bool:
        return any(
            n == "gpulens_train_steps_total" and lab.get("job_id") == "wire-job" and v >= 5
            for n, lab, v in samples(text)
        )

    got = samples(wait_metrics(agent, ready))
    steps = [
        (lab, v) for n, lab, v in got if n == "gpulens_train_steps_total" and lab.get("job_id") == "wire-job"
    ]
    assert sum(v for _, v in steps) == 5, steps
    for lab, _ in steps:
        assert lab["team"] == "wire-team" and lab["node"] == "contract-node"
        assert {"rank", "gpu"} <= set(lab)
    tokens = [v for n, lab, v in got if n == "gpulens_train_tokens_total" and lab.get("job_id") == "wire-job"]
    assert sum(tokens) == 5 * 1024
    losses = [v for n, lab, v in got if n == "gpulens_train_loss" and lab.get("job_id") == "wire-job"]
    assert losses == [2.31]
    spikes = [
        v
        for n, lab, v in got
        if n == "gpulens_train_loss_anomalies_total"
        and lab.get("job_id") == "wire-job"
        and lab.get("kind") == "spike"
    ]
    assert spikes == [1.0]
    names = {n for n, _, _ in got}
    assert "gpulens_train_step_seconds_bucket" in names
    assert {"gpulens_train_mfu_ratio", "gpulens_train_last_step_timestamp_seconds"} <= names
    malformed = [
        v for n, lab, v in got if n == "gpulens_agent_datagrams_total" and lab.get("result") == "malformed"
    ]
    assert malformed and malformed[0] >= 3, malformed
    assert agent.proc.poll() is None

    # §3: a GPU a training process is mapped to carries job_id and team; held seconds are counted.
    def mapped(text: str) -> bool:
        return any(
            n == "gpulens_gpu_held_seconds_total" and lab.get("job_id") == "wire-job"
            for n, lab, _ in samples(text)
        )

    got = samples(wait_metrics(agent, mapped))
    up = [lab for n, lab, _ in got if n == "gpulens_gpu_up" and lab.get("gpu") == "2"]
    assert up and up[0].get("job_id") == "wire-job" and up[0].get("team") == "wire-team", up
    held = [
        lab for n, lab, _ in got if n == "gpulens_gpu_held_seconds_total" and lab.get("job_id") == "wire-job"
    ]
    assert held and held[0]["team"] == "wire-team" and held[0]["gpu"] == "2", held


def test_xid_counter_and_node_info(agent: Agent) -> None:
    def seen(text: str) -> bool:
        return any(n == "gpulens_gpu_xid_errors_total" for n, _, _ in samples(text))

    got = samples(wait_metrics(agent, seen))
    xids = [(lab, v) for n, lab, v in got if n == "gpulens_gpu_xid_errors_total"]
    assert xids, "no gpulens_gpu_xid_errors_total after --sim-fault 13:1:0"
    lab, value = xids[0]
    assert lab["xid"] == "13" and lab["gpu"] == "1" and value >= 1
    assert lab["recoverable"] in ("true", "false")
    assert lab["action"] in ("restart_app", "reset_gpu", "reboot_node", "ignore", "investigate")
    info = [lab for n, lab, _ in got if n == "gpulens_node_info"]
    assert info and info[0]["node"] == "contract-node" and info[0]["instance_id"] == "i-0abc"
    assert info[0]["instance_type"] == "p4d.24xlarge" and info[0]["cluster"] == "c1"


def _train(monitor, losses: list[float]) -> None:  # type: ignore[no-untyped-def]
    for loss in losses:
        with monitor.step(tokens=1024) as step:
            step.record(loss=loss)


def test_trainer_never_raises_without_an_agent(tmp_path: Path) -> None:
    # §4: a missing agent drops the record and counts it; the training loop never sees an error.
    from gpulens.trainer import StepMonitor

    monitor = StepMonitor("lonely", "t", socket=tmp_path / "nobody-listens.sock", gpu=0, env={})
    _train(monitor, [2.0] * 20)
    monitor.close()
    assert monitor.dropped >= 1


def test_trainer_to_agent_and_online_detector_agree_with_runs_check(agent: Agent) -> None:
    # §4 + §7: the same curve D as test_training_health_contract (spike confirmed at step 102) through
    # the trainer's online detector and the agent: one spike at 102, counted by the agent.
    from gpulens.trainer import StepMonitor

    losses = [2.0] * 200
    losses[100:105] = [3.0] * 5
    monitor = StepMonitor("online-job", "online-team", socket=agent.socket, gpu=3, env={})
    _train(monitor, losses)
    monitor.close()
    assert [(a.kind, a.step) for a in monitor.anomalies] == [("spike", 102)]

    def arrived(text: str) -> bool:
        return any(
            n == "gpulens_train_steps_total" and lab.get("job_id") == "online-job" and v >= 200
            for n, lab, v in samples(text)
        )

    got = samples(wait_metrics(agent, arrived))
    steps = [v for n, lab, v in got if n == "gpulens_train_steps_total" and lab.get("job_id") == "online-job"]
    assert sum(steps) == 200 and monitor.dropped == 0
    spikes = [
        v
        for n, lab, v in got
        if n == "gpulens_train_loss_anomalies_total"
        and lab.get("job_id") == "online-job"
        and lab.get("kind") == "spike"
    ]
    assert spikes == [1.0], spikes


def test_metrics_pass_promtool_lint(agent: Agent) -> None:
    import subprocess

    from tests.support.servers import require_binary

    out = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=agent.metrics(),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
