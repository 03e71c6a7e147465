"""StepMonitor on the CPU: docs/design.md §4 records to a real datagram socket and a JSONL file, ranks,
anomalies."""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from gpulens.errors import GpulensError
from gpulens.trainer import Anomaly, StepMonitor
from gpulens.trainer.sinks import SEND_BUFFER, SocketSink, encode
from tests.support.servers import free_port
from tests.trainer.conftest import Receiver, log_records

SPEC_STEP_KEYS = {
    "v",
    "kind",
    "job_id",
    "team",
    "rank",
    "local_rank",
    "gpu",
    "pid",
    "attempt",
    "step",
    "ts",
    "step_seconds",
    "tokens",
    "samples",
    "loss",
    "grad_norm",
    "lr",
    "mfu",
}


def run_steps(monitor: StepMonitor, losses: list[float]) -> None:
    for loss in losses:
        with monitor.step(tokens=1000, samples=4) as step:
            step.record(loss=torch.tensor(loss), grad_norm=torch.tensor(1.5), lr=3e-4)
    monitor.close()


def test_step_records_follow_spec_4_on_the_socket_and_in_the_jsonl(
    receiver: Receiver, tmp_path: Path
) -> None:
    log = tmp_path / "run.jsonl"
    monitor = StepMonitor(
        "bgpt-50b",
        "ai-research",
        flops_per_token=6e6,
        peak_flops=1e12,
        socket=receiver.path,
        log_path=log,
        env={},
    )
    run_steps(monitor, [2.5, 2.4, 2.3])
    got = receiver.records()
    assert [r["step"] for r in got] == [0, 1, 2]
    first = got[0]
    assert set(first) == SPEC_STEP_KEYS
    assert (first["v"], first["kind"], first["job_id"], first["team"], first["rank"]) == (
        1,
        "step",
        "bgpt-50b",
        "ai-research",
        0,
    )
    assert first["loss"] == pytest.approx(2.5) and first["grad_norm"] == 1.5 and first["lr"] == 3e-4
    assert first["tokens"] == 1000 and first["samples"] == 4 and first["step_seconds"] > 0
    assert first["mfu"] == pytest.approx(6e6 * 1000 / first["step_seconds"] / 1e12)
    assert log_records(log) == got
    assert monitor.dropped == 0


def test_nan_loss_is_null_on_the_wire_and_an_anomaly_at_its_exact_step(receiver: Receiver, caplog) -> None:
    seen: list[Anomaly] = []
    monitor = StepMonitor("j", "t", socket=receiver.path, env={}, on_anomaly=seen.append)
    with caplog.at_level(logging.WARNING, logger="gpulens.trainer"):
        run_steps(monitor, [2.0, 1.9, float("nan"), float("nan"), 1.8])
    got = receiver.records()
    steps = [r for r in got if r["kind"] == "step"]
    anomalies = [r for r in got if r["kind"] == "anomaly"]
    assert [r["loss"] for r in steps][2:4] == [None, None]
    assert [(a["step"], a["anomaly"], a["loss"]) for a in anomalies] == [(2, "nan", None)]
    assert [(a.step, a.kind) for a in seen] == [(2, "nan")] and math.isnan(seen[0].loss)
    assert "loss nan at step 2" in caplog.text


def test_callback_can_stop_the_run_by_raising(receiver: Receiver) -> None:
    class Stop(Exception):
        pass

    def stop(anomaly: Anomaly) -> None:
        raise Stop(anomaly.kind)

    monitor = StepMonitor("j", "t", socket=receiver.path, env={}, on_anomaly=stop)
    with pytest.raises(Stop, match="nan"):  # at a later step's end, or at the latest at close()
        for i, loss in enumerate([2.0, float("nan"), 2.0]):
            with monitor.step(step=i) as step:
                step.record(loss=loss)
        monitor.close()


def test_callback_runs_on_the_training_thread_at_the_next_step_end(receiver: Receiver) -> None:
    seen: list[tuple[int, int]] = []
    monitor = StepMonitor(
        "j",
        "t",
        socket=receiver.path,
        env={},
        on_anomaly=lambda a: seen.append((a.step, threading.get_ident())),
    )
    for i, loss in enumerate([2.0, float("nan")] + [2.0] * 200):
        with monitor.step(step=i) as step:
            step.record(loss=loss)
        if seen:
            break
        time.sleep(0.002)
    monitor.close()
    assert seen == [(1, threading.get_ident())]


def test_no_agent_listening_drops_and_counts_without_raising(tmp_path: Path) -> None:
    monitor = StepMonitor("j", "t", socket=tmp_path / "nobody.sock", env={})
    run_steps(monitor, [2.0] * 20)
    assert monitor.dropped == 1 + 20 + 1  # run start, the steps, run end


def test_full_socket_buffer_drops_instead_of_blocking(receiver: Receiver) -> None:
    monitor = StepMonitor("j", "t", socket=receiver.path, env={})
    steps = 12_000  # more than an 8 MiB send buffer holds (>= 768 bytes of kernel memory per datagram)
    for _ in range(steps):  # nobody reads: the receive queue fills up
        with monitor.step(tokens=1) as step:
            step.record(loss=2.0)
    monitor.close()
    assert 0 < monitor.dropped < steps
    assert monitor.sinks[0].sent + monitor.dropped == 1 + steps + 1  # type: ignore[attr-defined]  # + run start, end


def test_a_burst_the_default_send_buffer_would_drop_is_queued(receiver: Receiver) -> None:
    """Queued datagrams count against the sender's SO_SNDBUF: the default (208 KiB) holds ~330 records."""
    sink = SocketSink(receiver.path)
    qlen = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    if sink.send_buffer < SEND_BUFFER or qlen < 2000:
        pytest.skip(f"this kernel grants SO_SNDBUF {sink.send_buffer} (net.core.wmem_max) and queues {qlen}")
    record = {
        "v": 1,
        "kind": "step",
        "job_id": "bench-job",
        "team": "bench-team",
        "rank": 0,
        "local_rank": 0,
        "gpu": 0,
        "pid": 1,
        "step": 1,
        "ts": 1795600000.12,
        "step_seconds": 0.512,
        "tokens": 524288,
        "samples": 256,
        "loss": 2.31,
        "grad_norm": 1.02,
        "lr": 0.0003,
        "mfu": 0.41,
    }
    line = encode(record)
    for _ in range(2000):
        sink.emit(record, line)
    sink.close()
    assert (sink.sent, sink.dropped) == (2000, 0)
    assert len(receiver.records()) == 2000
    default = SocketSink(receiver.path, send_buffer=1)  # the kernel's minimum: what a small buffer does
    for _ in range(2000):
        default.emit(record, line)
    default.close()
    assert default.dropped > 0  # so the first half is the larger buffer's doing


def test_only_rank_0_reports_loss_unless_asked(receiver: Receiver) -> None:
    rank1 = StepMonitor(
        "j", "t", socket=receiver.path, env={"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}
    )
    run_steps(rank1, [2.0, float("nan")])
    got = receiver.records()
    assert [(r["rank"], r["local_rank"], r["gpu"]) for r in got] == [(1, 1, 1), (1, 1, 1)]
    assert all("loss" not in r for r in got) and rank1.anomalies == []
    everyone = StepMonitor("j", "t", socket=receiver.path, env={"RANK": "1"}, report_loss_all_ranks=True)
    run_steps(everyone, [2.0, float("nan")])
    assert [r.get("anomaly") for r in receiver.records()] == [None, None, "nan"]


def test_train_log_comes_from_the_environment_mapping(tmp_path: Path) -> None:
    log = tmp_path / "env.jsonl"
    run_steps(
        StepMonitor("j", "t", socket=tmp_path / "none.sock", env={"GPULENS_TRAIN_LOG": str(log)}), [2.0]
    )
    assert [r["job_id"] for r in log_records(log)] == ["j"]


def test_explicit_step_numbers_and_failed_steps(receiver: Receiver) -> None:
    monitor = StepMonitor("j", "t", socket=receiver.path, env={})
    with monitor.step(step=100):
        pass
    with pytest.raises(RuntimeError), monitor.step():
        raise RuntimeError("out of memory")  # the failed step 101 is not reported
    with monitor.step():
        pass
    monitor.close()
    assert [r["step"] for r in receiver.records()] == [100, 102]


def test_non_scalar_tensor_is_refused() -> None:
    monitor = StepMonitor("j", "t", sinks=[], env={})
    with pytest.raises(ValueError, match="scalars"), monitor.step() as step:
        step.record(loss=torch.ones(3))


def test_own_prometheus_endpoint_on_base_port_plus_local_rank(tmp_path: Path) -> None:
    base = free_port()
    monitor = StepMonitor(
        "prom-job",
        "t",
        socket=tmp_path / "none.sock",
        flops_per_token=1e6,
        peak_flops=1e12,
        prometheus_port=base - 1,
        env={"LOCAL_RANK": "1"},
        report_interval=0,
        attempt=3,
    )
    try:
        for loss in [2.0, 1.9, float("nan")]:
            with monitor.step(tokens=500) as step:
                step.record(loss=loss)
        monitor.add_phase("eval", 100.0, 102.5)
        monitor.add_phase("eval", 200.0, 200.5)
        monitor.add_phase("compile", 300.0, 301.0)  # not a named phase: counted as other
        with urllib.request.urlopen(f"http://127.0.0.1:{base}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        monitor.close()
    samples = {
        (s.name, s.labels.get("kind")): (s.value, s.labels)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    value, labels = samples[("gpulens_train_steps_total", None)]
    assert value == 3 and (labels["job_id"], labels["team"], labels["rank"], labels["gpu"]) == (
        "prom-job",
        "t",
        "0",
        "1",
    )
    assert samples[("gpulens_train_tokens_total", None)][0] == 1500
    assert samples[("gpulens_train_loss_anomalies_total", "nan")][0] == 1
    assert 0 < samples[("gpulens_train_mfu_ratio", None)][0]
    assert samples[("gpulens_train_attempt", None)] == (3, labels)
    phases = {
        s.labels["phase"]: (s.value, s.labels["gpu"])
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gpulens_train_phase_seconds_total"
    }
    assert phases == {"eval": (3.0, "1"), "other": (1.0, "1")}  # on the GPU of this process's steps
    assert math.isnan(samples[("gpulens_train_loss", None)][0])


def test_unusable_destinations_are_clear_errors_at_construction(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(GpulensError, match="cannot append the training log"):
        StepMonitor("j", "t", socket=tmp_path / "none.sock", log_path=tmp_path / "file" / "run.jsonl", env={})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(GpulensError, match="cannot serve /metrics"):
            StepMonitor(
                "j", "t", socket=tmp_path / "none.sock", prometheus_port=busy.getsockname()[1], env={}
            )
