"""The training thread never waits on the device (issue 3): every device call StepMonitor makes goes
through the CUDA seam (`CudaTiming` over an injected `torch.cuda` and `stack`), so a counting fake shows
exactly which calls happen per step. A fake GPU finishes work LAG calls after it was queued; reading a
value before its step's end event has completed, or any blocking call, fails the test. Issue 14: one
event per step (a step starts at the previous step's end unless a gap or a phase lies between) and one
device-to-host copy per step for all its tensors.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gpulens.trainer import StepMonitor
from gpulens.trainer.sinks import JsonlSink
from gpulens.trainer.timing import CudaTiming

LAG = 5  # the fake GPU runs this many device calls behind the host


class FakeGpu:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.clock = 0  # advances with every device call: time passes while the host works

    def tick(self, name: str) -> int:
        self.calls[name] += 1
        self.clock += 1
        return self.clock

    def blocking(self, name: str) -> None:
        self.calls["BLOCKING " + name] += 1


class FakeEvent:
    def __init__(self, gpu: FakeGpu, enable_timing: bool = False) -> None:
        assert enable_timing, "step boundaries need timing-enabled events"
        self.gpu, self.at = gpu, None
        gpu.calls["Event()"] += 1

    def record(self) -> None:
        self.at = self.gpu.tick("record")

    def query(self) -> bool:
        return self.gpu.tick("query") >= self.at + LAG

    def done(self) -> bool:
        return self.at is not None and self.gpu.clock >= self.at + LAG

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.done() and end.done(), "elapsed_time before both events completed would block"
        self.gpu.tick("elapsed_time")
        return float(end.at - self.at)  # ms

    def synchronize(self) -> None:
        self.gpu.blocking("Event.synchronize")

    def wait(self, stream: object = None) -> None:
        self.gpu.blocking("Event.wait")


class FakeHostCopy:
    """What `.to('cpu', non_blocking=True)` returns: valid only once the copy (ordered before the end
    event) ran."""

    def __init__(self, gpu: FakeGpu, value: Any, at: int) -> None:
        self.gpu, self.value, self.at = gpu, value, at

    def tolist(self) -> Any:
        assert self.gpu.clock >= self.at + LAG, "read a pinned copy before its step's end event completed"
        return self.value

    def __float__(self) -> float:
        return float(self.tolist())


class FakeCudaTensor:
    is_cuda = True
    shape = ()

    def __init__(self, gpu: FakeGpu, value: Any) -> None:
        self.gpu, self.value = gpu, value

    def detach(self) -> FakeCudaTensor:
        return self

    def numel(self) -> int:
        return 1

    def to(self, device: str, non_blocking: bool = False) -> FakeHostCopy:
        assert device == "cpu"
        if not non_blocking:
            self.gpu.blocking("to(cpu) blocking")
        return FakeHostCopy(self.gpu, self.value, self.gpu.tick("copy D2H async"))

    def item(self) -> float:
        self.gpu.blocking("item")
        return self.value

    __float__ = item


def fake_stack(gpu: FakeGpu) -> Any:
    """torch.stack on the device: one kernel launch, a tensor of the scalars (read later in one copy)."""

    def stack(tensors: list[FakeCudaTensor]) -> FakeCudaTensor:
        gpu.tick("stack kernel")
        return FakeCudaTensor(gpu, [t.value for t in tensors])

    return stack


def timing(gpu: FakeGpu) -> CudaTiming:
    return CudaTiming(fake_cuda(gpu), stack=fake_stack(gpu))


def fake_cuda(gpu: FakeGpu) -> SimpleNamespace:
    return SimpleNamespace(
        Event=lambda enable_timing=False: FakeEvent(gpu, enable_timing),
        synchronize=lambda device=None: gpu.blocking("cuda.synchronize"),
        is_available=lambda: True,
        is_initialized=lambda: True,
        current_device=lambda: 3,
        get_device_name=lambda device=None: "NVIDIA H100 80GB HBM3",
    )


def test_training_thread_makes_no_blocking_device_call_per_step(tmp_path: Path) -> None:
    gpu = FakeGpu()
    log = tmp_path / "steps.jsonl"
    # gap=inf: every step follows the last one closely (on a loaded machine a real gap could exceed 1 ms)
    monitor = StepMonitor(
        "j", "t", timing=timing(gpu), sinks=[JsonlSink(log)], env={}, report_interval=0, gap=math.inf
    )
    for i in range(100):
        with monitor.step(tokens=4096) as step:
            step.record(loss=FakeCudaTensor(gpu, 3.0 - i / 100), grad_norm=FakeCudaTensor(gpu, 1.0), lr=1e-3)
        assert len(monitor._reporter._pending) <= LAG  # figures arrive a few steps late, never pile up
    steps_before_close = gpu.calls.copy()
    monitor.close()

    assert not [name for name in gpu.calls if name.startswith("BLOCKING")]
    assert steps_before_close["record"] == 1 + 100  # the first step's start, then one end per step
    assert steps_before_close["stack kernel"] == 100  # loss and grad_norm stacked on the device ...
    assert steps_before_close["copy D2H async"] == 100  # ... and copied in one non_blocking copy
    assert gpu.calls["elapsed_time"] == 100
    assert gpu.calls["Event()"] <= LAG + 3  # events are pooled, not created per step
    records = [r for r in map(json.loads, log.read_text().splitlines()) if r["kind"] == "step"]
    assert [r["step"] for r in records] == list(range(100))
    assert records[42]["loss"] == pytest.approx(3.0 - 0.42) and records[42]["grad_norm"] == 1.0


def test_a_phase_or_a_gap_gives_the_next_step_a_start_event_and_events_are_still_pooled(
    tmp_path: Path,
) -> None:
    gpu = FakeGpu()
    log = tmp_path / "steps.jsonl"
    monitor = StepMonitor(
        "j", "t", timing=timing(gpu), sinks=[JsonlSink(log)], env={}, report_interval=0, gap=math.inf
    )
    for i in range(100):
        with monitor.step(tokens=4096) as step:
            step.record(loss=FakeCudaTensor(gpu, 2.0))
        if i % 10 == 9:
            with monitor.phase("checkpoint_save"):
                gpu.tick("host work while saving")
    monitor.close()
    assert not [name for name in gpu.calls if name.startswith("BLOCKING")]
    assert gpu.calls["record"] == 100 + 10  # one per step, plus a start after the first and each save
    assert gpu.calls["stack kernel"] == 0 and gpu.calls["copy D2H async"] == 100  # one tensor: no stack
    assert gpu.calls["Event()"] <= LAG + 4  # the events the chain leaves behind return to the pool too
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["kind"] for r in records].count("phase") == 10


def test_batched_reporting_polls_at_most_once_per_interval_and_never_blocks(tmp_path: Path) -> None:
    gpu = FakeGpu()
    log = tmp_path / "steps.jsonl"
    monitor = StepMonitor(
        "j",
        "t",
        timing=timing(gpu),
        sinks=[JsonlSink(log)],
        env={},
        report_interval=3600,
        gap=math.inf,
    )
    for _ in range(50):
        with monitor.step(tokens=4096) as step:
            step.record(loss=FakeCudaTensor(gpu, 2.0))
    assert (gpu.calls["record"], gpu.calls["copy D2H async"], gpu.calls["elapsed_time"]) == (51, 50, 0)
    assert gpu.calls["query"] <= 2  # one batch at the first step; the next is an hour away
    monitor.close()
    assert not [name for name in gpu.calls if name.startswith("BLOCKING")]
    assert len(log.read_text().splitlines()) == 1 + 50 + 1  # run start, steps, run end


def test_cuda_is_picked_when_torch_cuda_is_initialized_and_peak_comes_from_the_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gpu = FakeGpu()
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=fake_cuda(gpu)))
    log = tmp_path / "s.jsonl"
    monitor = StepMonitor(
        "j", "t", flops_per_token=1e9, precision="bf16", sinks=[JsonlSink(log)], env={}, report_interval=0
    )
    for _ in range(3):
        with monitor.step(tokens=1000):
            pass
    monitor.close()
    assert isinstance(monitor.timing, CudaTiming)
    record = json.loads(log.read_text().splitlines()[1])  # the first step, after the run start
    assert record["gpu"] == 3
    assert record["mfu"] == pytest.approx(1e9 * 1000 / record["step_seconds"] / 989.4e12)
    assert not [name for name in gpu.calls if name.startswith("BLOCKING")]


def test_tensors_the_device_cannot_stack_are_copied_one_by_one_without_raising(tmp_path: Path) -> None:
    """A loss and a grad norm on two GPUs (torch.stack refuses): each gets its own copy, nothing raises."""
    gpu = FakeGpu()

    def refuse(tensors: list[FakeCudaTensor]) -> FakeCudaTensor:
        raise RuntimeError("Expected all tensors to be on the same device")

    log = tmp_path / "steps.jsonl"
    monitor = StepMonitor(
        "j",
        "t",
        timing=CudaTiming(fake_cuda(gpu), stack=refuse),
        sinks=[JsonlSink(log)],
        env={},
        report_interval=0,
        gap=math.inf,
    )
    for _ in range(10):
        with monitor.step() as step:
            step.record(loss=FakeCudaTensor(gpu, 2.5), grad_norm=FakeCudaTensor(gpu, 0.5))
    monitor.close()
    assert gpu.calls["copy D2H async"] == 20 and not [n for n in gpu.calls if n.startswith("BLOCKING")]
    steps = [r for r in map(json.loads, log.read_text().splitlines()) if r["kind"] == "step"]
    assert [(r["loss"], r["grad_norm"]) for r in steps] == [(2.5, 0.5)] * 10


def test_the_default_device_stack_makes_one_float_vector_of_any_scalars() -> None:
    """What CudaTiming stacks on the GPU, checked with real torch on the CPU: 0-d and 1-element tensors
    of any dtype become one float32 vector, in order (the one tensor copied to the host per step)."""
    import torch

    from gpulens.trainer.timing import _default_stack

    stacked = _default_stack()(
        [torch.tensor(2.5), torch.tensor([0.5]), torch.tensor(3, dtype=torch.int64), torch.tensor(1.0).half()]
    )
    assert stacked.dtype == torch.float32 and stacked.tolist() == [2.5, 0.5, 3.0, 1.0]
