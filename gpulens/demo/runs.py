"""Trainer JSONL logs for a `Scenario`: the step records of docs/design.md §4, one file per run.

A record is written every 30 minutes of the run (as a trainer logging at a fixed interval would);
healthy curves decay with ~2% batch noise, which the docs/design.md §7 detector must not flag.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from gpulens.demo.scenario import P5, Job, Scenario
from gpulens.trainer.health import LossHealth

RECORD_EVERY_S = 1800
TOKENS_PER_STEP = 524_288


def write_runs(scenario: Scenario, out: Path) -> list[Path]:
    """One `<job_id>.jsonl` per job that trains; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, job in enumerate(scenario.jobs):
        if job.run == "none":
            continue
        path = out / f"{job.job_id}.jsonl"
        with path.open("w") as fh:
            for record in run_records(scenario, job, seed=run_seed(scenario, i)):
                fh.write(json.dumps(record) + "\n")
        written.append(path)
    return written


def run_seed(scenario: Scenario, index: int) -> int:
    """The noise seed of the scenario's `index`-th job's log."""
    return scenario.seed * 1000 + index


def run_records(scenario: Scenario, job: Job, *, seed: int) -> Iterator[dict[str, object]]:
    """The records of one run, rank 0: run start/end and phases, step records with the anomaly records
    the trainer's online detector (`gpulens.trainer.health`) emits; non-finite losses are `null`, as the
    trainer writes them."""
    rng = np.random.default_rng(seed)
    h100 = scenario.node(job.nodes[0]).itype is P5
    step_seconds = 0.9 if h100 else 1.6
    count = int((job.end - job.start).total_seconds() // RECORD_EVERY_S)
    losses = loss_curve(job, count, rng)
    t0 = job.start.replace(tzinfo=timezone.utc).timestamp()
    health = LossHealth()
    identity = {"v": 1, "job_id": job.job_id, "team": job.team, "rank": 0}
    steps = step_numbers(count, step_seconds)
    for slot in timeline(job, count):
        if slot.records:  # run start/end and phases: where the wall time went (docs/design.md §8)
            yield from ({**identity, **r} for r in slot.records)
        if slot.index is None:
            continue
        i = slot.index
        loss, step, ts = float(losses[i]), steps[i], round(t0 + slot.step_end, 3)
        yield {
            **identity,
            "kind": "step",
            "attempt": slot.attempt,
            "local_rank": 0,
            "gpu": 0,
            "step": step,
            "ts": ts,
            "step_seconds": round(float(rng.normal(step_seconds, step_seconds * 0.03)), 4),
            "tokens": TOKENS_PER_STEP,
            "loss": loss if math.isfinite(loss) else None,
            "mfu": round(float(np.clip(rng.normal(0.44 if h100 else 0.52, 0.015), 0, 1)), 4),
            # Derived without drawing from `rng`, so the loss noise (and the anomalies) stay as they were.
            "grad_norm": round(0.25 + 0.3 * loss, 4) if math.isfinite(loss) else None,
            "lr": round(
                3e-4 * min(1.0, (i + 1) / 10) * (0.1 + 0.9 * (1 + math.cos(math.pi * i / count)) / 2), 8
            ),
        }
        anomaly = health.observe(step, loss)
        if anomaly is not None:
            yield {
                **identity,
                "kind": "anomaly",
                "step": anomaly.step,
                "anomaly": anomaly.kind,
                "loss": anomaly.loss if math.isfinite(anomaly.loss) else None,
                "ts": ts,
            }


# Where a record's 30 minutes go besides steps (docs/design.md §8), by the index of its record: a
# data wait in every one, init before the first, eval every 8 hours, a checkpoint every 4 hours.
DATA_WAIT_S, INIT_S, EVAL_S, CHECKPOINT_S, LOAD_S = 120, 600, 600, 300, 300
RESTART_GAP_S = 900  # a crashed attempt: the scheduler notices, reschedules and the job starts again


def _before(i: int) -> list[tuple[str, int]]:
    found = [("init", INIT_S)] if i == 0 else []
    found.append(("data_wait", DATA_WAIT_S))
    if i % 16 == 15:
        found.append(("eval", EVAL_S))
    return found


def _after(i: int) -> list[tuple[str, int]]:
    return [("checkpoint_save", CHECKPOINT_S)] if i % 8 == 7 else []


def step_numbers(count: int, step_seconds: float) -> list[int]:
    """The step reached at the end of each record: the steps that fit in its 30 minutes after phases."""
    total, found = 0, []
    for i in range(count):
        busy = RECORD_EVERY_S - sum(s for _, s in _before(i) + _after(i))
        total += int(busy / step_seconds)
        found.append(total)
    return found


@dataclass(frozen=True)
class Slot:
    """One 30-minute slot of the run's wall clock: the loss index it logs (None: a restart), its attempt,
    when its step record ends (seconds from the job's start) and the other records it holds."""

    index: int | None
    attempt: int
    step_end: float
    records: tuple[dict[str, object], ...]


def timeline(job: Job, count: int) -> Iterator[Slot]:
    """The run's slots: attempt 1 from the start; a job with `crash_at` crashes in that slot without a
    clean end, restarts in the next (restart gap, init, checkpoint load) and, as attempt 2, redoes the
    records since its last checkpoint; every run that reaches the job's end ends cleanly."""
    t0 = job.start.replace(tzinfo=timezone.utc).timestamp()
    crash = _just_before_a_checkpoint(int(count * job.crash_at)) if job.crash_at is not None else None
    attempt, index = 1, 0
    yield Slot(
        None,
        1,
        0.0,
        (_run_start(1, t0, job),),
    )
    for w in range(count):
        w0 = w * RECORD_EVERY_S
        if crash is not None and w == crash and attempt == 1:
            attempt, index = 2, _last_checkpoint(index - 1) + 1
            start = w0 + RESTART_GAP_S
            yield Slot(None, 2, start, (
                _run_start(2, t0 + start, job),
                _phase("init", 2, t0 + start, INIT_S),
                _phase("checkpoint_load", 2, t0 + start + INIT_S, LOAD_S),
            ))  # fmt: skip
            continue
        records, t = [], w0
        for name, seconds in _before(index):
            records.append(_phase(name, attempt, t0 + t, seconds))
            t += seconds
        end = w0 + RECORD_EVERY_S - sum(s for _, s in _after(index))
        yield Slot(index, attempt, end, tuple(records))
        after = tuple(_phase(name, attempt, t0 + end, seconds) for name, seconds in _after(index))
        if after:
            yield Slot(None, attempt, end, after)
        index += 1
    end_ts = round(t0 + count * RECORD_EVERY_S, 3)
    yield Slot(
        None,
        attempt,
        count * RECORD_EVERY_S,
        ({"kind": "run", "event": "end", "attempt": attempt, "ts": end_ts},),
    )


def _run_start(attempt: int, ts: float, job: Job) -> dict[str, object]:
    world = 8 * len(job.nodes)
    return {"kind": "run", "event": "start", "attempt": attempt, "ts": round(ts, 3), "world_size": world}


def _just_before_a_checkpoint(slot: int) -> int:
    """The first slot from `slot` on whose previous slot is the last before a checkpoint: the crash
    that loses the most (seven records of progress, about 3.5 hours)."""
    return slot + (7 - slot % 8) % 8


def _last_checkpoint(index: int) -> int:
    """The last record index at or before `index` that wrote a checkpoint (-1: none)."""
    return next((i for i in range(index, -1, -1) if _after(i)), -1)


def _phase(name: str, attempt: int, start: float, seconds: float) -> dict[str, object]:
    return {
        "kind": "phase",
        "attempt": attempt,
        "phase": name,
        "start": round(start, 3),
        "end": round(start + seconds, 3),
    }


def loss_curve(job: Job, count: int, rng: np.random.Generator) -> np.ndarray:
    """Loss per record: exponential decay to a floor, then the job's failure mode after its onset."""
    x = np.arange(count, dtype=float)
    floor = rng.uniform(1.6, 2.4)
    loss = floor + rng.uniform(2.5, 4.0) * np.exp(-x / max(count / 6, 1.0))
    loss *= 1 + rng.normal(0, 0.02, count)
    onset = int(count * job.onset_fraction)
    if job.run == "diverge":
        # The loss climbs steadily from the onset: an unstable learning rate, never recovering.
        loss[onset:] *= 1 + 0.004 * np.arange(count - onset)
    elif job.run == "nan":
        loss[onset:] = np.nan
    return np.round(loss, 5)


def onset_time(job: Job) -> datetime:
    """When the job's divergence or NaN starts (what the training page costs from)."""
    return job.start + (job.end - job.start) * job.onset_fraction
