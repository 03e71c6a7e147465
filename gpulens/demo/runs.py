"""Trainer JSONL logs for a `Scenario`: the step records of SPEC §4, one file per run.

A record is written every 30 minutes of the run (as a trainer logging at a fixed interval would);
healthy curves decay with ~2% batch noise, which the SPEC §7 detector must not flag.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
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
    """The step records of one run, rank 0, in step order, with the anomaly records the trainer's
    online detector (`gpulens.trainer.health`) emits; non-finite losses are `null`, as the trainer writes them."""
    rng = np.random.default_rng(seed)
    h100 = scenario.node(job.nodes[0]).itype is P5
    step_seconds = 0.9 if h100 else 1.6
    steps_per_record = int(RECORD_EVERY_S / step_seconds)
    count = int((job.end - job.start).total_seconds() // RECORD_EVERY_S)
    losses = loss_curve(job, count, rng)
    t0 = job.start.replace(tzinfo=timezone.utc).timestamp()
    health = LossHealth()
    for i in range(count):
        loss, step, ts = float(losses[i]), (i + 1) * steps_per_record, round(t0 + (i + 1) * RECORD_EVERY_S, 3)
        identity = {"v": 1, "job_id": job.job_id, "team": job.team, "rank": 0}
        yield {
            **identity,
            "kind": "step",
            "local_rank": 0,
            "gpu": 0,
            "step": step,
            "ts": ts,
            "step_seconds": round(float(rng.normal(step_seconds, step_seconds * 0.03)), 4),
            "tokens": TOKENS_PER_STEP,
            "loss": loss if math.isfinite(loss) else None,
            "mfu": round(float(np.clip(rng.normal(0.44 if h100 else 0.52, 0.015), 0, 1)), 4),
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
