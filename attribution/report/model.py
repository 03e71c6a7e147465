"""The weekly report as plain data: what `build_weekly_report` returns and every renderer reads.

Money is `Decimal` in the billing currency, exactly as `allocate` returned it (docs/design.md, convention 7);
rounding to
the cent happens only when a renderer formats a cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from gpulens.attribution.bridge import CostBridge
from gpulens.attribution.goodput import GoodputReport
from gpulens.attribution.model import Allocation, Basis, DivergentRun, IdleMode, UnderutilizedGpu
from gpulens.errors import GpulensError
from gpulens.metrics import SM_THRESHOLD_DEFAULT

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True)
class IsoWeek:
    """One ISO 8601 week, Monday 00:00 UTC to the next Monday 00:00 UTC (end exclusive)."""

    year: int
    week: int

    @classmethod
    def parse(cls, text: str) -> IsoWeek:
        """`2026-W47` -> IsoWeek(2026, 47); anything else raises a GpulensError naming the flag."""
        match = _WEEK.match(text.strip())
        if not match:
            raise GpulensError(f"--week {text!r} is not an ISO week; write it as YYYY-Www, e.g. 2026-W47")
        year, week = int(match.group(1)), int(match.group(2))
        try:
            date.fromisocalendar(year, week, 1)
        except ValueError:
            raise GpulensError(f"--week {text!r}: {year} has no ISO week {week}") from None
        return cls(year, week)

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def start(self) -> datetime:
        """Monday 00:00 UTC, as a naive datetime (the warehouse stores UTC without a zone)."""
        return datetime.combine(date.fromisocalendar(self.year, self.week, 1), datetime.min.time())

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=7)

    def previous(self) -> IsoWeek:
        year, week, _ = (self.start - timedelta(days=7)).isocalendar()
        return IsoWeek(year, week)

    def days(self) -> tuple[date, ...]:
        return tuple(self.start.date() + timedelta(days=i) for i in range(7))


@dataclass(frozen=True)
class FleetUsage:
    """GPU time measured by the usage rollups (`gpu_usage_hourly`) in one week.

    `gpu_hours` is GPU-seconds / 3600 over every held GPU-hour, with or without a team;
    `sm_active` is the GPU-second-weighted mean SM activity (0..1), `None` where nothing was measured.
    """

    gpu_hours: float
    sm_active: float | None


@dataclass(frozen=True)
class DivergentSpend:
    """A divergent run and what its GPUs cost from the onset of the anomaly to the end of the week.

    `onset` is the timestamp of the anomalous step (`train_metrics.ts`), `None` when the run logged no
    times; `spend_after_onset` is `None` when it cannot be priced (no onset time, or no usage of the job).
    The spend runs from the onset's hour to the hour the episode ended (`ended`: the loss recovered, or
    the run stopped), else to the end of the week.
    """

    run: DivergentRun
    onset: datetime | None
    spend_after_onset: Decimal | None
    # When the spend stopped counting: the loss recovered, or the run's last step (docs/design.md §7);
    # None: still going at the end of the week.
    ended: datetime | None = None
    ended_by: str | None = None


@dataclass(frozen=True)
class Freshness:
    """How current the warehouse is, and which days of the week lack data.

    `last_delivery_at` is the newest `deliveries.ingested_at` (UTC); `newest_usage_hour` the newest
    `gpu_usage_hourly.hour` anywhere in the warehouse. `cur_missing_days` lists the days of the week with
    no CUR usage line, `usage_missing_days` those with no usage rollup.
    """

    last_delivery_at: datetime | None
    last_delivery_period: str | None
    newest_usage_hour: datetime | None
    newest_cur_usage_end: datetime | None
    cur_missing_days: tuple[date, ...]
    usage_missing_days: tuple[date, ...]

    @property
    def complete(self) -> bool:
        return not self.cur_missing_days and not self.usage_missing_days


@dataclass(frozen=True)
class ReportOptions:
    """How the week was allocated and flagged; printed in the methods note."""

    tag_key: str = "team"
    cluster_tag_key: str = "cluster"
    idle: IdleMode = "separate"
    basis: Basis = "amortized"
    sm_threshold: float = SM_THRESHOLD_DEFAULT
    top: int = 20


@dataclass(frozen=True)
class WeeklyReport:
    week: IsoWeek
    options: ReportOptions
    generated_at: datetime
    allocation: Allocation
    previous: Allocation
    usage: FleetUsage
    previous_usage: FleetUsage
    underutilized: tuple[UnderutilizedGpu, ...]
    divergent: tuple[DivergentSpend, ...]
    freshness: Freshness
    # What lost training time cost (docs/design.md §8): goodput buckets of the week's runs in money,
    # beside each team's GPU spend; None when built without it.
    lost: GoodputReport | None = None
    # The amortized-to-billed bridge of the week (attribution/bridge.py); None when built without it.
    bridge: CostBridge | None = None
    # The previous week's data coverage, for comparing per-day rates; None: taken as complete.
    previous_freshness: Freshness | None = None

    @property
    def currency(self) -> str:
        return self.allocation.currency

    @property
    def waste(self) -> Decimal:
        """Money paid for held but idle SMs this week: the teams' waste as `allocate` computed it."""
        return sum((t.waste for t in self.allocation.teams), Decimal(0))

    @property
    def is_empty(self) -> bool:
        """No CUR usage line and no GPU usage rollup on any day of the week: nothing to report."""
        return len(self.freshness.cur_missing_days) == 7 and len(self.freshness.usage_missing_days) == 7

    @property
    def cost_days(self) -> tuple[int, int]:
        """Days with CUR usage lines this week and the previous week (7 where coverage is not known)."""
        before = self.previous_freshness
        return 7 - len(self.freshness.cur_missing_days), 7 - len(before.cur_missing_days) if before else 7

    @property
    def incomplete_reasons(self) -> tuple[str, ...]:
        """One sentence per gap in the week's data; empty when the week is complete."""
        reasons = []
        if self.freshness.cur_missing_days:
            reasons.append(f"no CUR usage lines for {_days(self.freshness.cur_missing_days)}")
        if self.freshness.usage_missing_days:
            reasons.append(f"no GPU usage rollups for {_days(self.freshness.usage_missing_days)}")
        return tuple(reasons)


def _days(days: tuple[date, ...]) -> str:
    if len(days) == 7:
        return "the whole week"
    return ", ".join(d.strftime("%a %Y-%m-%d") for d in days)
