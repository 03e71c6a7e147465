"""Zero host-device synchronizations per step, proved on a real GPU, and StepMonitor's overhead there.

Run once on a CUDA machine with only torch and gpulens installed
(`pip install --no-deps --no-build-isolation -e .`):

    python benchmarks/gpu/trainer_sync_check.py            # ~1 minute on an H100

1. `torch.cuda.set_sync_debug_mode("error")`, then 200 steps of the reference trainer's model on the GPU,
   instrumented with StepMonitor (loss and grad norm recorded as CUDA tensors and copied in one batch,
   one CUDA event per step, batches through `monitor.data()`, a phase every 50 steps, a NaN injected at
   step 150, three quarters of the way):
   any synchronizing CUDA call on the training thread raises, so finishing is the proof. The 200
   records (and the NaN, at exactly step 150) are then checked.
2. Per-step time of four variants: the bare loop; the loop under StepMonitor (loss and grad norm
   recorded); StepMonitor's step boundaries alone (events only); and the naive timer
   (`torch.cuda.synchronize()` + `perf_counter` + `.item()` per step). First a few seconds of every
   variant in turn, so that GPU clocks, the allocators' caches and the event pool are warm; then 40
   rounds of 20 steps, the variants interleaved and their order rotated every round. Each round ends
   with one synchronize, so its wall time covers its GPU work. Reported per variant: median and
   interquartile range (IQR) of the rounds, and the overhead against the bare loop of the same round
   (paired, so drift between rounds cancels).
3. Host time: perf_counter around every StepMonitor call (`step()`/enter, `record()`, exit) of the
   timed rounds, per step. It is the CPU work the instrumentation adds to the training thread; an
   overhead in (2) far above it is GPU-timing noise (or device-side cost), not host work.

Exits 0 after printing the tables; without CUDA it says so and exits 0 (nothing to check); exits 1 if a
check fails. `--device cpu` runs the same code without the sync check (for the CPU test suite).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpulens.trainer.reference.run import Workload

SYNC_STEPS, ROUND, ROUNDS, WARMUP_SECONDS = 200, 20, 40, 5.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (no sync check; for tests)")
    parser.add_argument("--steps", type=int, default=SYNC_STEPS, help="instrumented steps under sync debug")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timing rounds per variant")
    parser.add_argument("--round-steps", type=int, default=ROUND, help="steps per timing round")
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=None,
        help=f"seconds of every variant in turn before timing ({WARMUP_SECONDS:g} on CUDA, 0 on the CPU)",
    )
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
        work.step(work.batch())
    monitor = StepMonitor(
        "sync-check",
        "gpulens",
        flops_per_token=work.shape.flops_per_token(),
        precision="fp32",
        sinks=[JsonlSink(log)],
        env={},
    )
    on_cuda = device.startswith("cuda")
    nan_at = steps * 3 // 4
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    index = -1
    inputs = monitor.data(work.batch() for _ in range(steps))  # data waits timed as phases: host clock only
    try:
        for index, batch in enumerate(inputs):
            if index % 50 == 49:
                with monitor.phase(
                    "checkpoint_save"
                ):  # a phase breaks the chain: the next step records a start
                    pass
            with monitor.step(tokens=work.tokens_per_step, samples=work.config.batch, step=index) as step:
                loss, grad_norm = work.step(batch, skip_update=index == nan_at)
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


def check_records(
    log: Path, steps: int, on_cuda: bool, nan_at: int, anomalies: list[tuple[int, str]]
) -> list[str]:
    records = [json.loads(line) for line in log.read_text().splitlines()]
    step_records = [r for r in records if r["kind"] == "step"]
    problems = []
    if [r["step"] for r in step_records] != list(range(steps)):
        problems.append(f"expected {steps} step records in order, got {len(step_records)}")
    if not all(r["step_seconds"] > 0 for r in step_records):
        problems.append("a step_seconds is not positive")
    saves = [r for r in records if r["kind"] == "phase" and r["phase"] == "checkpoint_save"]
    if len(saves) != steps // 50:
        problems.append(f"expected {steps // 50} checkpoint_save phases, got {len(saves)}")
    if on_cuda and not all("mfu" in r for r in step_records):
        problems.append("no MFU: the GPU is not in the peak table (gpulens.trainer.mfu)")
    if (nan_at, "nan") not in anomalies:
        problems.append(f"the NaN injected at step {nan_at} was reported as {anomalies}")
    finite = [r["loss"] for r in step_records if r.get("loss") is not None]
    if not finite or not all(math.isfinite(v) for v in finite):
        problems.append("losses missing or non-finite")
    return problems


Variant = Callable[[], float]  # runs one step; returns the seconds spent inside StepMonitor's calls


def timed_rounds(
    device: str, rounds: int, round_steps: int, warmup: float
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per step of each variant, one figure per round (rounds interleaved, order rotated), and the
    host seconds spent inside StepMonitor calls, one figure per step."""
    import torch

    from gpulens.trainer import StepMonitor

    on_cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    clock = time.perf_counter
    work = workload(device, seed=1)
    nobody = (
        Path(tempfile.gettempdir()) / "gpulens-sync-check-no-agent.sock"
    )  # the drop path, as without an agent
    monitor = StepMonitor(
        "overhead",
        "gpulens",
        flops_per_token=work.shape.flops_per_token(),
        precision="fp32",
        socket=nobody,
        env={},
    )
    monitor_events = StepMonitor(
        "events",
        "gpulens",
        flops_per_token=work.shape.flops_per_token(),
        precision="fp32",
        socket=nobody,
        env={},
    )
    naive_log: list[tuple[float, float]] = []

    def bare() -> float:
        work.step(work.batch())
        return 0.0

    def monitored() -> float:
        t0 = clock()
        step = monitor.step(tokens=work.tokens_per_step).__enter__()
        t1 = clock()
        loss, grad_norm = work.step(work.batch())
        t2 = clock()
        step.record(loss=loss, grad_norm=grad_norm)
        step.__exit__(None, None, None)
        return clock() - t2 + t1 - t0

    def events_only() -> float:  # step boundaries alone: what the CUDA events cost
        t0 = clock()
        step = monitor_events.step(tokens=work.tokens_per_step).__enter__()
        t1 = clock()
        work.step(work.batch())
        t2 = clock()
        step.__exit__(None, None, None)
        return clock() - t2 + t1 - t0

    def naive() -> float:
        t0 = clock()
        loss, _ = work.step(work.batch())
        sync()
        naive_log.append((clock() - t0, loss.item()))
        return 0.0

    variants: dict[str, Variant] = {
        "bare loop": bare,
        "StepMonitor": monitored,
        "StepMonitor, events only": events_only,
        "naive synchronize() timer": naive,
    }
    names = list(variants)
    deadline = clock() + warmup
    for lap in itertools.count():  # warm-up: GPU clocks up, caching allocators and the event pool filled
        for fn in variants.values():
            for _ in range(5):
                fn()
        sync()
        if lap >= 1 and clock() >= deadline:
            break
    per_step: dict[str, list[float]] = {name: [] for name in names}
    host: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (
            names[r % len(names) :] + names[: r % len(names)]
        ):  # rotated: no variant always goes first
            fn, inside = variants[name], host[name]
            t0 = clock()
            for _ in range(round_steps):
                inside.append(fn())
            sync()
            per_step[name].append((clock() - t0) / round_steps)
    for m in (monitor, monitor_events):
        m.close()
    return per_step, {name: values for name, values in host.items() if any(values)}


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def table(per_step: dict[str, list[float]], host: dict[str, list[float]]) -> str:
    bare = per_step["bare loop"]
    n = len(bare)
    lines = [
        f"| variant | per step, median of {n} rounds | IQR of rounds | overhead vs bare, paired median "
        "[IQR] | host time in StepMonitor calls per step: median, mean [IQR] |",
        "|---|---|---|---|---|",
    ]
    for name, values in per_step.items():
        q1, median, q3 = quartiles(values)
        d1, d2, d3 = quartiles([v - b for v, b in zip(values, bare, strict=True)])
        base = statistics.median(bare)
        inside = host.get(name)
        if inside:
            h1, h2, h3 = quartiles(inside)
            host_cell = (
                f"{h2 * 1e6:.1f} µs, {statistics.fmean(inside) * 1e6:.1f} µs [{h1 * 1e6:.1f}–{h3 * 1e6:.1f}]"
            )
        else:
            host_cell = "—"
        lines.append(
            f"| {name} | {median * 1e3:.3f} ms | {q1 * 1e3:.3f}–{q3 * 1e3:.3f} ms "
            f"({(q3 - q1) / median * 100:.1f} %) | {d2 * 1e6:+.1f} µs ({d2 / base * 100:+.1f} %) "
            f"[{d1 * 1e6:+.1f}, {d3 * 1e6:+.1f}] | {host_cell} |"
        )
    q1, _, q3 = quartiles(bare)
    lines.append("")
    lines.append(
        f"GPU-timing noise: the bare loop's rounds spread {(q3 - q1) * 1e6:.0f} µs (IQR). Host work "
        "StepMonitor adds per step is the mean host column (it includes the batched reporting); "
        "a paired overhead well above it, inside the noise, is not host work."
    )
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
    print(
        f"{args.steps} instrumented steps under {mode}: "
        + (
            f"no synchronization raised; records and the NaN at step {args.steps * 3 // 4} checked"
            if not problems
            else "; ".join(problems)
        )
    )
    warmup = (
        args.warmup_seconds
        if args.warmup_seconds is not None
        else (WARMUP_SECONDS if args.device.startswith("cuda") else 0.0)
    )
    print(
        f"timing: {args.rounds} rounds x {args.round_steps} steps per variant after {warmup:g} s of warm-up; "
        f"records encoded with {'orjson' if importlib.util.find_spec('orjson') else 'the json module'}"
    )
    print(table(*timed_rounds(args.device, args.rounds, args.round_steps, warmup)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
