"""The amortized-to-billed bridge (attribution/bridge.py) on the ledger month of tests/fixtures/cur.

Ledger, 2026-10, USD (tests/fixtures/cur/build.py; amortized per docs/design.md §6):

  row               lines                                             billed     amortized
  1 usage           Usage 32 + 12 + 3 + 1.25 + 2                       50.25      50.25
  2 SP/RI usage     SavingsPlanCoveredUsage 32 (effective 20)          32.00      20.00
                    SavingsPlanNegation -32                           -32.00       0.00
                    DiscountedUsage 0 (effective 0.60)                  0.00       0.60   -> 0.00 / 20.60
  3 commitment fees SavingsPlanRecurringFee 25 (commitment 25, used 20) 25.00      5.00
                    SavingsPlanUpfrontFee 50                           50.00       0.00
                    RIFee 10 (unused upfront 1.50 + recurring 0.50)    10.00       2.00
                    Fee 100 of the reservation ri-1 (upfront)         100.00       0.00   -> 185.00 / 7.00
  4 other fees      Fee 5                                               5.00       5.00
  5 credits         Credit -1                                          -1.00      -1.00
  6 tax             Tax 4.10                                            4.10       4.10
                                                             total    243.35      85.95   difference 157.40
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.allocate import allocate, allocate_period
from gpulens.attribution.bridge import CostBridge, cost_bridge, period_bridge
from gpulens.attribution.model import InvariantViolation
from gpulens.attribution.warehouse import Warehouse
from gpulens.cli import main

LEDGER = Path(__file__).resolve().parents[1] / "fixtures" / "cur"
D = Decimal


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bridge") / "w.duckdb"
    assert main(["ingest", "cur", str(LEDGER / "ledger_cur2.csv"), "--warehouse", str(path)]) == 0
    return path


def _rows(bridge: CostBridge) -> dict[str, tuple[Decimal, Decimal]]:
    return {line.key: (line.billed, line.amortized) for line in bridge.lines}


def test_the_ledger_month_bridges_line_by_line(ledger: Path) -> None:
    with Warehouse(ledger).connect(read_only=True) as con:
        bridge = period_bridge(con, "2026-10")
    assert _rows(bridge) == {
        "usage": (D("50.25"), D("50.25")),
        "commitment_usage": (D("0.00"), D("20.60")),
        "commitment_fees": (D("185.00"), D("7.00")),
        "fees": (D("5.00"), D("5.00")),
        "credits": (D("-1.00"), D("-1.00")),
        "tax": (D("4.10"), D("4.10")),
        "other": (D("0"), D("0")),
    }
    assert (bridge.billed_total, bridge.amortized_total, bridge.difference) == (
        D("243.35"),
        D("85.95"),
        D("157.40"),
    )
    assert bridge.currency == "USD"
    fees = next(line for line in bridge.lines if line.key == "commitment_fees")
    assert fees.line_types == ("Fee", "RIFee", "SavingsPlanRecurringFee", "SavingsPlanUpfrontFee")


def test_the_two_totals_are_those_of_allocate(ledger: Path) -> None:
    """Scenario 2: a window that cuts month-long lines (one day of 31) is prorated exactly as
    `allocate` prorates it, for the whole month and for the day."""
    start, end = datetime(2026, 10, 1), datetime(2026, 10, 2)
    with Warehouse(ledger).connect(read_only=True) as con:
        month = period_bridge(con, "2026-10")
        day = cost_bridge(con, start, end)
        assert month.amortized_total == allocate_period(con, "2026-10").total
        assert month.billed_total == allocate_period(con, "2026-10", basis="billed").total
        assert day.amortized_total == allocate(con, start, end).total
        assert day.billed_total == allocate(con, start, end, basis="billed").total
    # the tax of the day: 4.10 x 1/31 = 0.1322580645 (DECIMAL(38,10), as allocate cuts it)
    assert _rows(day)["tax"] == (D("0.1322580645"), D("0.1322580645"))


def test_focus_exports_bridge_to_the_same_totals(tmp_path: Path) -> None:
    """Scenario 3: FOCUS states both views itself (BilledCost, EffectiveCost) under ChargeCategory
    (Usage, Purchase, Tax, Credit); the bridge keeps its totals equal to allocate's."""
    path = tmp_path / "focus.duckdb"
    assert main(["ingest", "cur", str(LEDGER / "ledger_focus.csv"), "--warehouse", str(path)]) == 0
    with Warehouse(path).connect(read_only=True) as con:
        bridge = period_bridge(con, "2026-10")
        assert bridge.amortized_total == allocate_period(con, "2026-10").total
        assert bridge.billed_total == allocate_period(con, "2026-10", basis="billed").total
    assert sum((line.difference for line in bridge.lines), D(0)) == bridge.difference


def test_a_bridge_that_does_not_add_up_is_refused() -> None:
    with pytest.raises(InvariantViolation, match="does not reconcile"):
        CostBridge("x", "USD", (), D("1.00"), D("0"))
