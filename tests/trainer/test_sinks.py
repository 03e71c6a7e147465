"""The record encoders (docs/design.md §4): orjson when importable, else the standard library, writing
the same JSON; the agent socket's sender."""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gpulens import wire
from gpulens.trainer import StepMonitor, sinks
from tests.trainer.conftest import Receiver

IDENTITY = {
    "v": 1,
    "kind": "step",
    "job_id": "bgpt-50b",
    "team": "ai-research",
    "rank": 0,
    "local_rank": 0,
    "gpu": 0,
    "pid": 4242,
}
FIELDS: list[dict[str, Any]] = [
    {
        "step": 1200,
        "ts": 1795600000.12,
        "step_seconds": 0.512,
        "tokens": 524288,
        "samples": 256,
        "loss": 2.31,
        "grad_norm": 1.02,
        "lr": 0.0003,
        "mfu": 0.41,
    },
    {"step": 3, "ts": 1.5, "step_seconds": 2.5e-8, "loss": math.nan, "grad_norm": math.inf, "lr": -math.inf},
    {
        "step": 4,
        "ts": 1e20,
        "step_seconds": 1e-300,
        "tokens": np.int64(7),
        "loss": np.float32(0.5),
        "lr": torch.tensor(0.25),
        "note": "naïve ✓",
    },
]


def strict(line: bytes) -> dict[str, Any]:
    assert line.count(b"\n") == 0 and b" " not in line.replace(b"na\xc3\xafve \xe2\x9c\x93", b"")  # compact
    return json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def expected(record: dict[str, Any]) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, str) or isinstance(v, int):
            return v
        v = float(v)
        return v if math.isfinite(v) else None

    return {k: plain(v) for k, v in record.items()}


@pytest.mark.parametrize("fields", FIELDS)
def test_orjson_and_the_fallback_write_the_same_values_in_the_same_order(
    fields: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert wire._orjson is not None  # installed here with gpulens[trainer]
    record = {**IDENTITY, **fields}
    fast = wire.encode(record)
    fast_step = wire.step_encoder(IDENTITY)(record, fields)
    monkeypatch.setattr(wire, "_orjson", None)
    slow = wire.encode(record)
    slow_step = wire.step_encoder(IDENTITY)(record, fields)  # the prefix join
    decoded = [strict(line) for line in (fast, fast_step, slow, slow_step)]
    assert all(list(d.items()) == list(expected(record).items()) for d in decoded)
    assert fast == fast_step and slow == slow_step
    assert "naïve ✓".encode() in fast + slow or "note" not in record  # UTF-8 on the wire, not \\u escapes


def test_a_value_no_encoder_takes_is_an_error_the_reporter_can_catch(monkeypatch: pytest.MonkeyPatch) -> None:
    for orjson in (wire._orjson, None):
        monkeypatch.setattr(wire, "_orjson", orjson)
        with pytest.raises((TypeError, ValueError)):
            wire.encode({**IDENTITY, "tokens": object()})


def test_an_unencodable_step_is_dropped_and_counted_and_its_loss_still_judged(tmp_path: Path) -> None:
    log = tmp_path / "steps.jsonl"
    monitor = StepMonitor("j", "t", sinks=[sinks.JsonlSink(log)], env={}, report_interval=0)
    with monitor.step(tokens=1) as step:
        step.record(loss=2.0)
    with monitor.step(tokens=object()) as step:  # type: ignore[arg-type]  # not a number: no JSON for it
        step.record(loss=math.nan)
    monitor.close()
    assert monitor.dropped == 1
    assert [a.kind for a in monitor.anomalies] == ["nan"]
    kinds = [json.loads(line)["kind"] for line in log.read_text().splitlines()]
    assert kinds == ["run", "step", "anomaly", "run"]  # the run's start and end around them


def test_the_socket_sink_reconnects_to_an_agent_that_restarted(tmp_path: Path) -> None:
    """The sender's socket is connected to the agent's path (a `send` is cheaper than a `sendto`); an
    agent that restarts binds a new socket there, which the sender reaches again after its retry delay."""
    with tempfile.TemporaryDirectory(prefix="gl-", dir="/tmp") as short:
        path = Path(short) / "agent.sock"
        first = Receiver(path)
        sink = sinks.SocketSink(path)
        line = wire.encode({**IDENTITY, **FIELDS[0]})
        sink.emit({}, line)
        assert (sink.sent, len(first.records())) == (1, 1)
        first.sock.close()
        path.unlink()
        sink.emit({}, line)  # the old agent is gone: dropped, counted, not raised
        assert sink.dropped == 1
        second = Receiver(path)
        deadline = time.monotonic() + 30
        while sink.sent < 2 and time.monotonic() < deadline:
            sink.emit({}, line)  # dropped until the retry delay (1 s) has passed, then connected again
            time.sleep(0.05)
        assert sink.sent == 2 and len(second.records()) == 1
        sink.close()
        second.sock.close()
