"""The plain data that crosses module boundaries in attribution: money results and flags.

Money is `Decimal` until presentation (docs/design.md, convention 7). `allocate.py` is the only place that
builds an
`Allocation`; the CLI, the explorer and the weekly report read it and never re-aggregate cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

from gpulens.errors import GpulensError
from gpulens.wire import AnomalyKind

Basis = Literal["amortized", "billed"]
IdleMode = Literal["separate", "share"]
Category = Literal["direct", "shared_gpu", "shared_other", "idle", "unallocated"]
CostKind = Literal["gpu", "storage", "other"]

CENT = Decimal("0.01")


class InvariantViolation(GpulensError):
    """teams + idle + unallocated differs from the period's total by a cent or more."""


@dataclass(frozen=True)
class TeamCost:
    team: str
    direct: Decimal
    shared: Decimal
    gpu_hours: Decimal
    waste: Decimal
    # Which part of direct + shared was GPU instance time (EC2, SageMaker, Capacity Blocks) and which
    # the storage behind it (FSx, S3, EFS): shown beside each other per team.
    gpu: Decimal = Decimal(0)
    storage: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.direct + self.shared


@dataclass(frozen=True)
class UnallocatedLine:
    """Unallocated spend of one resource (or of a line type where there is no resource id)."""

    resource_id: str | None
    line_item_type: str
    product_code: str | None
    cost: Decimal


@dataclass(frozen=True)
class Allocation:
    period: str
    currency: str
    basis: Basis
    teams: tuple[TeamCost, ...]
    idle: Decimal
    unallocated: Decimal
    total: Decimal
    billed_total: Decimal
    unallocated_lines: tuple[UnallocatedLine, ...] = ()

    def __post_init__(self) -> None:
        allocated = sum((t.total for t in self.teams), Decimal(0)) + self.idle + self.unallocated
        if abs(allocated - self.total) >= CENT:
            raise InvariantViolation(
                f"allocation for {self.period} does not reconcile: teams + idle + unallocated = "
                f"{allocated} but the total {self.basis} cost is {self.total}; this is a bug, please report "
                "it"
            )


@dataclass(frozen=True)
class UnderutilizedGpu:
    node: str | None
    instance_id: str | None
    gpu: int | None
    team: str | None
    job_id: str | None
    hours: float
    sm_active: float
    waste: Decimal
    measure: Literal["sm_active", "utilization"] = "sm_active"
    model: str | None = None


@dataclass(frozen=True)
class DivergentRun:
    job_id: str
    team: str | None
    kind: AnomalyKind
    step: int


@dataclass(frozen=True)
class Flags:
    underutilized: tuple[UnderutilizedGpu, ...]
    divergent_runs: tuple[DivergentRun, ...]
    currency: str = "USD"  # of `UnderutilizedGpu.waste`: the billing currency of the priced lines


@dataclass(frozen=True)
class DailyAllocation:
    """One row of the allocation: money (billing currency) and GPU-seconds per UTC day, team,
    category, job and resource. `team` is None for idle and unallocated."""

    day: date
    team: str | None
    category: Category
    job_id: str | None
    resource_id: str | None
    cost: Decimal
    waste: Decimal
    gpu_seconds: float
    cost_kind: CostKind = "other"
