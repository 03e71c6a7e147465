"""Hourly GPU usage rollups for a `Scenario`, in the columns of docs/design.md §5 (what `ingest usage`
reads)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from gpulens.demo.scenario import Job, Node, Scenario

USAGE_COLUMNS = (
    "hour",
    "node",
    "instance_id",
    "cluster",
    "gpu",
    "gpu_uuid",
    "model",
    "job_id",
    "team",
    "gpu_seconds",
    "sm_active",
    "utilization",
)


def gpu_uuid(node: Node, gpu: int) -> str:
    """A stable, GPU-UUID-shaped id derived from the instance id (as nvidia-smi prints them)."""
    digits = (node.instance_id[2:] + f"{gpu:04x}" * 4)[:32]
    return f"GPU-{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:32]}"


def usage_table(scenario: Scenario) -> pa.Table:
    """One row per (hour, GPU, job) the job held the GPU; `sm_active` NULL where DCGM is absent."""
    rng = np.random.default_rng(scenario.seed + 1)
    columns: dict[str, list[object]] = {c: [] for c in USAGE_COLUMNS}
    for job in scenario.jobs:
        for node_name in job.nodes:
            _append_job_node(columns, scenario.node(node_name), job, rng)
    return pa.table(
        {
            **{c: columns[c] for c in USAGE_COLUMNS},
            "hour": pa.array(columns["hour"], pa.timestamp("us")),
            "gpu": pa.array(columns["gpu"], pa.int32()),
        }
    )


def _append_job_node(
    columns: dict[str, list[object]], node: Node, job: Job, rng: np.random.Generator
) -> None:
    hours = _hours(job.start, job.end)
    for gpu in job.gpus:
        # Busy jobs wander by a few points an hour; idle holders stay near their floor.
        spread = 0.06 if job.sm_active > 0.3 else 0.015
        sm = np.clip(rng.normal(job.sm_active, spread, len(hours)), 0.0, 1.0)
        # The coarse NVML counter says "a kernel ran": it reads far above SM activity.
        util = np.clip(sm * 1.35 + 0.08, 0.0, 1.0)
        for hour, s, u in zip(hours, sm, util, strict=True):
            columns["hour"].append(hour)
            columns["node"].append(node.name)
            columns["instance_id"].append(node.instance_id)
            columns["cluster"].append("train-east")
            columns["gpu"].append(gpu)
            columns["gpu_uuid"].append(gpu_uuid(node, gpu))
            columns["model"].append(node.itype.model)
            columns["job_id"].append(job.job_id)
            columns["team"].append(job.team)
            columns["gpu_seconds"].append(3600.0)
            columns["sm_active"].append(round(float(s), 4) if node.profiling else None)
            columns["utilization"].append(round(float(u), 4))


def _hours(start: datetime, end: datetime) -> list[datetime]:
    count = int((end - start).total_seconds() // 3600)
    return [start + timedelta(hours=h) for h in range(count)]
