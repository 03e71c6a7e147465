"""Zero host-device synchronizations per step, proved on a real GPU, and StepMonitor's overhead there.

Run once on a CUDA machine with only torch and gpulens installed
(`pip install --no-deps --no-build-isolation -e .`):

    python benchmarks/gpu/trainer_sync_check.py            # ~1 minute on an H100

1. `torch.cuda.set_sync_debug_mode("error")`, then 200 steps of the reference trainer's model on the GPU,
   instrumented with StepMonitor (loss and grad norm recorded as CUDA tensors, a NaN injected at step 150,
   three quarters of the way):
   any synchronizing CUDA call on the training thread raises, so finishing is the proof. The 200
   records (and the NaN, at exactly step 150) are then checked.
2. Per-step time, interleaved rounds of 50 steps, median of rounds, for: the bare loop; the loop under
   StepMonitor; and the naive timer (`torch.cuda.synchronize()` + `perf_counter` + `.item()` per step).
   Each round ends with one synchronize so that its wall time covers its GPU work.

Exits 0 after printing a table; without CUDA it says so and exits 0 (nothing to check); exits 1 if a check
fails. `--device cpu` runs the same code without the sync check (for the CPU test suite).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpulens.trainer.reference.run import Workload

SYNC_STEPS, ROUND, ROUNDS = 200, 50, 12


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (no sync check; for tests)")
    parser.add_argument("--steps", type=int, default=SYNC_STEPS, help="instrumented steps under sync debug")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timing rounds per variant")
    parser.add_argument("--round-steps", type=int, default=ROUND, help="steps per timing round")
    return parser.parse_args(argv)


def workload(device: str, seed: int = 0) -> Workload:
    from gpulens.trainer.reference.run import ReferenceConfig, Workload

    return Workload(ReferenceConfig(job_id="sync-check", team="gpulens", device=device, seed=seed))


def sync_check(device: str, steps: int, log: Path) -> list[str]:
    """Run `steps` instrumented steps under sync debug "error"; returns the problems found (empty = pass)."""
    import torch

    from gpulens.trainer import StepMonitor
    from gpulens.trainer.sinks import JsonlSink

    work = workload(device)
    for _ in range(3):  # warm-up: cuBLAS handles, allocator pools, kernels' first launch
        work.step()
    monitor = StepMonitor("sync-check", "gpulens", flops_per_token=work.shape.flops_per_token(), precision="fp32",
                          sinks=[JsonlSink(log)], env={})
    on_cuda = device.startswith("cuda")
    nan_at = steps * 3 // 4
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    index = -1
    try:
        for index in range(steps):
            with monitor.step(tokens=work.tokens_per_step, samples=work.config.batch, step=index) as step:
                loss, grad_norm = work.step(skip_update=index == nan_at)
                step.record(**work.figures(loss, grad_norm))
    except RuntimeError as exc:  # set_sync_debug_mode("error") raises RuntimeError at the synchronizing call
        frames = traceback.extract_tb(exc.__traceback__)[-4:]
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
        return [f"step {index}: {str(exc).splitlines()[0]} (at {where})"]
    finally:
        if on_cuda:
            torch.cuda.set_sync_debug_mode("default")
    monitor.close()
    return check_records(log, steps, on_cuda, nan_at, [(a.step, a.kind) for a in monitor.anomalies])


def check_records(log: Path, steps: int, on_cuda: bool, nan_at: int, anomalies: list[tuple[int, str]]) -> list[str]:
    records = [json.loads(line) for line in log.read_text().splitlines()]
    step_records = [r for r in records if r["kind"] == "step"]
    problems = []
    if [r["step"] for r in step_records] != list(range(steps)):
        problems.append(f"expected {steps} step records in order, got {len(step_records)}")
    if not all(r["step_seconds"] > 0 for r in step_records):
        problems.append("a step_seconds is not positive")
    if on_cuda and not all("mfu" in r for r in step_records):
        problems.append("no MFU: the GPU is not in the peak table (gpulens.trainer.mfu)")
    if (nan_at, "nan") not in anomalies:
        problems.append(f"the NaN injected at step {nan_at} was reported as {anomalies}")
    finite = [r["loss"] for r in step_records if r.get("loss") is not None]
    if not finite or not all(math.isfinite(v) for v in finite):
        problems.append("losses missing or non-finite")
    return problems


def timed_rounds(device: str, rounds: int, round_steps: int) -> dict[str, list[float]]:
    """Seconds per step of each variant, one figure per round, rounds interleaved."""
    import torch

    from gpulens.trainer import StepMonitor

    on_cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    work = workload(device, seed=1)
    nobody = Path(tempfile.gettempdir()) / "gpulens-sync-check-no-agent.sock"  # the drop path, as without an agent
    monitor = StepMonitor("overhead", "gpulens", flops_per_token=work.shape.flops_per_token(), precision="fp32",
                          socket=nobody, env={})
    naive_log: list[tuple[float, float]] = []
    monitor_events = StepMonitor("events", "gpulens", flops_per_token=work.shape.flops_per_token(),
                                 precision="fp32", socket=nobody, env={})
    monitor_ring = StepMonitor("ring", "gpulens", flops_per_token=work.shape.flops_per_token(), precision="fp32",
                               socket=nobody, env={}, timing=PinnedRingTiming()) if on_cuda else monitor

    def bare() -> None:
        work.step()

    def monitored() -> None:
        with monitor.step(tokens=work.tokens_per_step) as step:
            loss, grad_norm = work.step()
            step.record(loss=loss, grad_norm=grad_norm)

    def events_only() -> None:  # step boundaries alone: what the CUDA events cost
        with monitor_events.step(tokens=work.tokens_per_step):
            work.step()

    def ring() -> None:  # recorded tensors copied into a preallocated pinned ring instead of fresh pinned tensors
        with monitor_ring.step(tokens=work.tokens_per_step) as step:
            loss, grad_norm = work.step()
            step.record(loss=loss, grad_norm=grad_norm)

    def naive() -> None:
        t0 = time.perf_counter()
        loss, _ = work.step()
        sync()
        naive_log.append((time.perf_counter() - t0, loss.item()))

    variants: dict[str, Callable[[], None]] = {"bare loop": bare, "StepMonitor": monitored,
                                               "StepMonitor, events only": events_only,
                                               "StepMonitor, pinned ring": ring,
                                               "naive synchronize() timer": naive}
    for fn in variants.values():  # warm-up
        for _ in range(5):
            fn()
    sync()
    per_step: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(round_steps):
                fn()
            sync()
            per_step[name].append((time.perf_counter() - t0) / round_steps)
    for m in (monitor, monitor_events, monitor_ring):
        m.close()
    return per_step


def PinnedRingTiming() -> Any:  # noqa: N802 - a factory that imports torch only on the GPU path
    """A diagnostic variant of CudaTiming: copies land in a preallocated pinned ring (no allocator per value)."""
    import torch

    from gpulens.trainer.timing import CudaTiming, _scalar

    class _Ring(CudaTiming):
        def __init__(self) -> None:
            super().__init__()
            self._rings: dict[Any, Any] = {}
            self._next = 0

        def capture(self, value: Any) -> Any:
            tensor = _scalar(value)
            if not tensor.is_cuda:
                return tensor
            ring = self._rings.get(tensor.dtype)
            if ring is None:
                ring = self._rings[tensor.dtype] = torch.empty(1 << 16, dtype=tensor.dtype, pin_memory=True)
            self._next = (self._next + 1) & 0xFFFF
            slot = ring[self._next]
            slot.copy_(tensor.reshape(()), non_blocking=True)
            return slot

    return _Ring()


def table(per_step: dict[str, list[float]]) -> str:
    base = statistics.median(per_step["bare loop"])
    lines = ["| variant | per step, median of rounds | overhead vs bare |", "|---|---|---|"]
    for name, values in per_step.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median * 1e3:.3f} ms | {(median - base) * 1e6:+.1f} µs "
                     f"({(median / base - 1) * 100:+.1f} %) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        import torch
    except ImportError:
        print("trainer_sync_check: torch is not installed; nothing to check")
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("trainer_sync_check: no CUDA device available; this check needs an NVIDIA GPU (skipped)")
        return 0
    if args.device == "cpu":
        torch.set_num_threads(1)  # a shared CI machine: one thread keeps the figures steady
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"trainer_sync_check: torch {torch.__version__}, device {device_name}")
    with tempfile.TemporaryDirectory() as tmp:
        problems = sync_check(args.device, args.steps, Path(tmp) / "steps.jsonl")
    mode = 'set_sync_debug_mode("error")' if args.device.startswith("cuda") else "no sync debug (CPU)"
    print(f"{args.steps} instrumented steps under {mode}: "
          + (f"no synchronization raised; records and the NaN at step {args.steps * 3 // 4} checked" if not problems
             else "; ".join(problems)))
    print(table(timed_rounds(args.device, args.rounds, args.round_steps)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
