"""The demo's simulated month: a fleet, its teams and the jobs that held its GPUs (pure, seeded).

Nothing here touches a file: `artifacts.py` turns a `Scenario` into the CUR export, usage rollups and
trainer logs a real deployment would produce. The same seed always gives the same month.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import numpy as np

Pricing = Literal["on_demand", "savings_plan", "reserved"]
RunKind = Literal["healthy", "diverge", "nan", "none"]

TEAMS: tuple[str, ...] = ("ai-research", "search", "vision", "speech")
CLUSTER = "train-east"
GPUS_PER_NODE = 8


@dataclass(frozen=True)
class InstanceType:
    name: str
    model: str
    on_demand_per_hour: float  # USD, us-east-1 list price used by the simulation


P4D = InstanceType("p4d.24xlarge", "NVIDIA A100-SXM4-40GB", 32.7726)
P5 = InstanceType("p5.48xlarge", "NVIDIA H100 80GB HBM3", 98.32)
# Outside the fleet (docs/attribution.md, "SageMaker" and "Capacity Blocks"): a SageMaker training job,
# whose agent reports the job's name as its instance id, and two p5 instances in a Capacity Block.
ML_P4D = InstanceType("ml.p4d.24xlarge", "NVIDIA A100-SXM4-40GB", 37.688)
SAGEMAKER_JOB = "ai-research-sm-finetune"
CAPACITY_BLOCK_DAYS = (23, 26)  # the block reserves two p5 from day 23 00:00 to day 26 00:00


@dataclass(frozen=True)
class Node:
    name: str
    instance_id: str
    itype: InstanceType
    pricing: Pricing
    team_tag: str | None  # as delivered in the CUR tag (not normalized), None when untagged
    profiling: bool  # False: an A100 without DCGM, only coarse utilization is measured


@dataclass(frozen=True)
class Job:
    job_id: str
    team: str
    nodes: tuple[str, ...]
    gpus: tuple[int, ...]  # GPU indices held on each of its nodes
    start: datetime  # UTC, on the hour
    end: datetime  # UTC, on the hour, exclusive
    sm_active: float  # mean SM activity while held, 0..1
    run: RunKind  # what its loss curve does; "none": a notebook or reservation, no training log
    onset_fraction: float = 0.5  # where in the run a divergence or NaN starts, 0..1
    crash_at: float | None = None  # where in the run attempt 1 crashes and restarts from a checkpoint, 0..1


@dataclass(frozen=True)
class Scenario:
    period: str  # YYYY-MM
    seed: int
    start: datetime
    end: datetime  # exclusive: the first hour of the next month
    nodes: tuple[Node, ...]
    jobs: tuple[Job, ...]
    managed: tuple[Node, ...] = ()  # hosts outside the fleet: the SageMaker job's, the Capacity Block's

    @property
    def hours(self) -> int:
        return int((self.end - self.start).total_seconds() // 3600)

    def node(self, name: str) -> Node:
        return next(n for n in (*self.nodes, *self.managed) if n.name == name)


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """First hour of `period` (YYYY-MM) and the first hour of the next month, naive UTC."""
    year, month = (int(p) for p in period.split("-"))
    start = datetime(year, month, 1)
    return start, start + timedelta(days=calendar.monthrange(year, month)[1])


def build_scenario(period: str = "2026-10", seed: int = 7) -> Scenario:
    """Sixteen nodes (ten p4d, six p5) in one cluster, four teams and about forty jobs."""
    rng = np.random.default_rng(seed)
    start, end = month_bounds(period)
    nodes = _fleet(rng)
    special = _special_jobs(start, end)
    jobs = _with_crash(special + _scheduled_jobs(rng, nodes, special, start, end))
    managed, managed_jobs = _managed(start)
    return Scenario(period, seed, start, end, nodes, tuple(jobs + managed_jobs), managed)


def _managed(start: datetime) -> tuple[tuple[Node, ...], list[Job]]:
    """A 20-hour SageMaker fine-tune for ai-research on day 10, and search's 60-hour pretraining run in
    a 72-hour Capacity Block of two p5 (the last 12 hours of the block stay idle)."""
    day = timedelta(days=1)
    sm = Node("sagemaker-algo-1", SAGEMAKER_JOB, ML_P4D, "on_demand", None, profiling=True)
    cb = tuple(
        Node(f"cb-0{i}", f"i-0cb10c400000000{i}", P5, "on_demand", None, profiling=True) for i in (1, 2)
    )
    block = start + CAPACITY_BLOCK_DAYS[0] * day
    jobs = [
        Job(SAGEMAKER_JOB, "ai-research", (sm.name,), tuple(range(8)), start + 9 * day,
            start + 9 * day + timedelta(hours=20), 0.71, "none"),
        Job("search-capacity-block", "search", tuple(n.name for n in cb), tuple(range(8)), block,
            block + timedelta(hours=60), 0.83, "none"),
    ]  # fmt: skip
    return (sm, *cb), jobs


def _with_crash(jobs: list[Job]) -> list[Job]:
    """The first healthy H100 job of four days or more crashes 60 % of the way in and resumes from its
    last checkpoint: the demo's restart, wasted progress and restart badput (docs/design.md §8)."""
    for i, job in enumerate(jobs):
        if job.run == "healthy" and job.nodes[0] >= "node-11" and job.end - job.start >= timedelta(days=4):
            return [*jobs[:i], replace(job, crash_at=0.6), *jobs[i + 1 :]]
    return jobs


def _fleet(rng: np.random.Generator) -> tuple[Node, ...]:
    """node-01..10 p4d (01-04 reserved, 05 without DCGM, 09-10 owned by vision), node-11..16 p5 on a Savings
    Plan."""
    nodes = []
    for i in range(1, 17):
        itype = P4D if i <= 10 else P5
        pricing: Pricing = "reserved" if i <= 4 else ("savings_plan" if i > 10 else "on_demand")
        # Vision tags its own nodes by hand, with the stray spaces and capitals real tags have.
        team_tag = " Vision " if i in (9, 10) else None
        instance_id = "i-0" + "".join(f"{b:02x}" for b in rng.integers(0, 256, 8))[:16]
        nodes.append(Node(f"node-{i:02d}", instance_id, itype, pricing, team_tag, profiling=i != 5))
    return tuple(nodes)


ALL_GPUS = tuple(range(GPUS_PER_NODE))


def _special_jobs(start: datetime, end: datetime) -> list[Job]:
    """The jobs the demo exists to show: a divergence, a NaN, GPUs held but idle."""
    day = timedelta(days=1)
    return [
        # A 2-node H100 run that diverges halfway and keeps burning money to the end of the month.
        Job(
            "llm-70b-pretrain",
            "ai-research",
            ("node-11", "node-12"),
            ALL_GPUS,
            start + 12 * day,
            end,
            0.71,
            "diverge",
            onset_fraction=0.45,
        ),
        # A run whose loss goes NaN; nobody notices for a while.
        Job(
            "asr-conformer-xl",
            "speech",
            ("node-03",),
            ALL_GPUS,
            start + 20 * day,
            start + 26 * day,
            0.64,
            "nan",
            onset_fraction=0.7,
        ),
        # Held but idle: a reservation nobody uses, on a shared node and on vision's own node.
        Job(
            "search-reserved-capacity", "search", ("node-08",), ALL_GPUS, start + 19 * day, end, 0.03, "none"
        ),
        Job("vision-notebook", "vision", ("node-10",), (0, 1, 2, 3), end - 7 * day, end, 0.06, "none"),
        Job("speech-debug", "speech", ("node-16",), (0, 1), end - 3 * day, end, 0.11, "none"),
    ]


def _scheduled_jobs(
    rng: np.random.Generator, nodes: tuple[Node, ...], special: list[Job], start: datetime, end: datetime
) -> list[Job]:
    """Back-to-back jobs of 4-12 days, with gaps, in the time the special jobs leave free on each node."""
    jobs: list[Job] = []
    for node in nodes:
        if node.name == "node-07":
            continue  # stays idle the whole month: paid for, held by no one
        for free_start, free_end in _free_spans(node.name, special, start, end):
            jobs.extend(_fill(rng, node, free_start, free_end, first=len(jobs) + 1))
    return jobs


def _free_spans(
    node: str, special: list[Job], start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    busy = sorted((j.start, j.end) for j in special if node in j.nodes)
    spans, t = [], start
    for b_start, b_end in busy:
        if b_start > t:
            spans.append((t, b_start))
        t = max(t, b_end)
    if t < end:
        spans.append((t, end))
    return spans


def _fill(rng: np.random.Generator, node: Node, start: datetime, end: datetime, first: int) -> list[Job]:
    jobs: list[Job] = []
    t = start + timedelta(hours=int(rng.integers(0, 48)))
    while t < end - timedelta(hours=12):
        stop = min(t + timedelta(hours=int(rng.integers(4 * 24, 12 * 24))), end)
        number = first + len(jobs)
        team = "vision" if node.team_tag else TEAMS[int(rng.integers(0, len(TEAMS)))]
        gpus = ALL_GPUS if rng.random() < 0.8 else (4, 5, 6, 7)
        name = f"{team.split('-')[0]}-{_NAMES[number % len(_NAMES)]}-{number:02d}"
        jobs.append(Job(name, team, (node.name,), gpus, t, stop, float(rng.uniform(0.45, 0.9)), "healthy"))
        t = stop + timedelta(hours=int(rng.integers(0, 36)))
    return jobs


_NAMES = (
    "bert-ft",
    "vit-l",
    "ranker",
    "whisper-ft",
    "moe-8x",
    "clip",
    "t5-xl",
    "dpo",
    "diffusion",
    "llama-sft",
)
