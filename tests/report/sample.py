"""A hand-built WeeklyReport for the renderer and delivery tests; its ledger is in the comments.

Week 2026-W47 (Mon 2026-11-16 .. Mon 2026-11-23), USD, amortized:
  search: direct 1,000.005 + shared 234.5678 = 1,234.5728 (waste 100.125, 150.5 GPU-hours)
          of it GPU 1,100.00, storage 100.00, other 34.5728 (shown 34.57)
  vision: direct 0 + shared 45.10 = 45.10 (waste 40.004, 20 GPU-hours), all GPU
  idle 70.3272, unallocated 12.00 (i-0abc 10.00, tax 2.00)   -> total 1,362.00
Previous week: search 1,000.00, vision 0 (absent), idle 100.00, unallocated 0 -> total 1,100.00
Bridge (amortized / billed): usage 1,300.00 / 1,300.00; SP/RI usage 50.00 / 0; commitment fees
  10.00 / 98.00; tax 2.00 / 2.00 -> 1,362.00 / 1,400.00, difference 38.00.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from gpulens.attribution.bridge import ROWS, BridgeLine, CostBridge
from gpulens.attribution.model import Allocation, DivergentRun, TeamCost, UnallocatedLine, UnderutilizedGpu
from gpulens.attribution.report.model import (
    DivergentSpend,
    FleetUsage,
    Freshness,
    IsoWeek,
    ReportOptions,
    WeeklyReport,
)

D = Decimal


def sample_bridge() -> CostBridge:
    figures = {
        "usage": (D("1300.00"), D("1300.00")),
        "commitment_usage": (D("50.00"), D("0")),
        "commitment_fees": (D("10.00"), D("98.00")),
        "tax": (D("2.00"), D("2.00")),
    }
    lines = tuple(
        BridgeLine(key, label, types if key in figures else (), *figures.get(key, (D(0), D(0))))
        for key, label, types in ROWS
    )
    return CostBridge("2026-W47", "USD", lines, D("1362.00"), D("1400.00"))


def sample_report(*, missing_days: tuple[date, ...] = ()) -> WeeklyReport:
    now = Allocation(
        period="2026-W47",
        currency="USD",
        basis="amortized",
        teams=(
            TeamCost("search", D("1000.005"), D("234.5678"), D("150.5"), D("100.125"), D("1100"), D("100")),
            TeamCost("vision", D("0"), D("45.10"), D("20"), D("40.004"), D("45.10")),
        ),
        idle=D("70.3272"),
        unallocated=D("12.00"),
        total=D("1362.00"),
        billed_total=D("1400.00"),
        unallocated_lines=(
            UnallocatedLine("i-0abc", "Usage", "AmazonEC2", D("10.00")),
            UnallocatedLine(None, "Tax", "AmazonEC2", D("2.00")),
        ),
    )
    before = Allocation(
        period="2026-W46",
        currency="USD",
        basis="amortized",
        teams=(TeamCost("search", D("1000"), D("0"), D("100"), D("10")),),
        idle=D("100"),
        unallocated=D("0"),
        total=D("1100"),
        billed_total=D("1100"),
    )
    under = (
        UnderutilizedGpu("node-a", "i-0gpu", 3, "vision", "job-7", 20.0, 0.11, D("40.004"), model="A100"),
        UnderutilizedGpu("node-a", "i-0gpu", 1, "search", "job-1", 30.0, 0.2, D("12.5"), model="A100"),
    )
    divergent = (
        DivergentSpend(
            DivergentRun("job-9", "search", "divergence", 1200), datetime(2026, 11, 20, 14, 0), D("321.987")
        ),
    )
    freshness = Freshness(
        datetime(2026, 11, 23, 6, 0),
        "2026-11",
        datetime(2026, 11, 22, 23, 0),
        datetime(2026, 11, 23, 0, 0),
        missing_days,
        (),
    )
    return WeeklyReport(
        IsoWeek(2026, 47),
        ReportOptions(),
        datetime(2026, 11, 23, 8, 0),
        now,
        before,
        FleetUsage(170.5, 0.42),
        FleetUsage(100.0, 0.5),
        under,
        divergent,
        freshness,
        bridge=sample_bridge(),
    )
