"""The amortized-to-billed bridge (docs/design.md §6): why the amortized total and the invoice differ.

The same CUR lines, summed twice: as amortized (effective) cost and as billed (unblended) cost, per
kind of line. Each row is one kind; its two figures and their difference reconcile the two totals
line by line, to the cent (the rows add up to each total exactly; `CostBridge.__post_init__` checks).
A window other than a billing period takes the part of each line inside it, prorated by time, with
`allocate.window_lines`, so both totals are exactly those of `allocate` for the same window.

- usage: `Usage`, at on-demand rates in both views.
- commitment_usage: `SavingsPlanCoveredUsage`, `SavingsPlanNegation`, `DiscountedUsage`; amortized: the
  SP/RI effective cost; billed: the on-demand cost and its negation (SP), 0 (RI).
- commitment_fees: `SavingsPlanRecurringFee`, `SavingsPlanUpfrontFee`, `RIFee`, a reservation's `Fee`,
  FOCUS `Purchase`; amortized: the unused commitment only; billed: the fees as invoiced.
- fees (`Fee`), credits (`Credit`, `Refund`), tax (`Tax`): the same in both views.
- other: anything else (discounts, FOCUS `Adjustment`), as each view states it.

A `Fee` line whose amortized cost differs from its billed cost is a reservation's upfront fee (the
amortization table zeroes it, docs/design.md §6), so it counts with the commitment fees.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

import duckdb

from gpulens.attribution import allocate as alloc
from gpulens.attribution.model import InvariantViolation
from gpulens.errors import GpulensError

# (key, label, line item types) in the order a finance reader walks from usage to the invoice.
ROWS: Final = (
    ("usage", "Usage at on-demand rates", ("Usage",)),
    (
        "commitment_usage",
        "Usage covered by Savings Plans and RIs (effective cost)",
        ("SavingsPlanCoveredUsage", "SavingsPlanNegation", "DiscountedUsage"),
    ),
    (
        "commitment_fees",
        "Commitment fees (amortized: the unused commitment only)",
        ("SavingsPlanRecurringFee", "SavingsPlanUpfrontFee", "RIFee", "Purchase"),
    ),
    ("fees", "Other fees", ("Fee",)),
    ("credits", "Credits and refunds", ("Credit", "Refund")),
    ("tax", "Tax", ("Tax",)),
    ("other", "Discounts and other adjustments", ()),
)


@dataclass(frozen=True)
class BridgeLine:
    """One kind of line: its amortized and billed cost in the window (billing currency, unrounded)
    and the line item types found in it."""

    key: str
    label: str
    line_types: tuple[str, ...]
    amortized: Decimal
    billed: Decimal

    @property
    def difference(self) -> Decimal:
        """Billed minus amortized: what this kind adds on the way from the amortized total to the bill."""
        return self.billed - self.amortized


@dataclass(frozen=True)
class CostBridge:
    label: str
    currency: str
    lines: tuple[BridgeLine, ...]
    amortized_total: Decimal
    billed_total: Decimal

    def __post_init__(self) -> None:
        for name, total in (("amortized", self.amortized_total), ("billed", self.billed_total)):
            parts = sum((getattr(line, name) for line in self.lines), Decimal(0))
            if parts != total:
                raise InvariantViolation(
                    f"bridge for {self.label} does not reconcile: its {name} lines sum to {parts}, the "
                    f"total is {total}; this is a bug, please report it"
                )

    @property
    def difference(self) -> Decimal:
        return self.billed_total - self.amortized_total


def _bucket_sql() -> str:
    """The bridge row of a line of `_a_lines` (whose `cost` is amortized and `billed` unblended)."""
    whens = [
        f"WHEN line_item_type IN ({', '.join(repr(t) for t in types)}) THEN '{key}'"
        for key, _, types in ROWS
        if types and key != "fees"
    ]
    fee = "WHEN line_item_type = 'Fee' THEN CASE WHEN cost <> billed THEN 'commitment_fees' ELSE 'fees' END"
    return f"CASE {fee} {' '.join(whens)} ELSE 'other' END"


def bridge_lines(con: duckdb.DuckDBPyConnection, lines: str) -> tuple[BridgeLine, ...]:
    """Every row of `ROWS` (zero where the window has no such line) from an `_a_lines` table."""
    found = {
        key: (types, Decimal(amortized), Decimal(billed))
        for key, types, amortized, billed in con.execute(f"""
            SELECT {_bucket_sql()} AS bucket, list(DISTINCT line_item_type ORDER BY line_item_type),
                   sum(cost), sum(billed)
            FROM {lines} GROUP BY bucket""").fetchall()
    }
    zero = ((), Decimal(0), Decimal(0))
    return tuple(
        BridgeLine(
            key, label, tuple(found.get(key, zero)[0]), found.get(key, zero)[1], found.get(key, zero)[2]
        )
        for key, label, _ in ROWS
    )


def cost_bridge(
    con: duckdb.DuckDBPyConnection,
    start: datetime,
    end: datetime,
    *,
    label: str | None = None,
    currency: str | None = None,
) -> CostBridge:
    """The bridge of the UTC window [start, end): each line counts for the part of its usage window
    inside it, exactly as `allocate` counts it."""
    window = alloc.Window(alloc.naive_utc(start), alloc.naive_utc(end))
    return _bridge(con, window, currency, label or f"{window.start:%Y-%m-%d}/{window.end:%Y-%m-%d}")


def period_bridge(con: duckdb.DuckDBPyConnection, period: str, *, currency: str | None = None) -> CostBridge:
    """The bridge of billing period `YYYY-MM`: all its lines, whole (the invoice's total)."""
    return _bridge(con, alloc.month_window(period), currency, period)


def _bridge(
    con: duckdb.DuckDBPyConnection, window: alloc.Window, currency: str | None, label: str
) -> CostBridge:
    options = alloc.Options(basis="amortized", currency=currency)
    lines = alloc.window_lines(con, window, options)
    currencies = [r[0] for r in con.execute(f"SELECT DISTINCT currency FROM {lines} ORDER BY 1").fetchall()]
    if len(currencies) > 1:
        raise GpulensError(
            f"the window's lines are billed in {', '.join(currencies)}; bridge each currency apart",
            field="currency",
        )
    amortized, billed = con.execute(
        f"SELECT coalesce(sum(cost), 0), coalesce(sum(billed), 0) FROM {lines}"
    ).fetchone() or (0, 0)
    return CostBridge(
        label=label,
        currency=(currency or (currencies[0] if currencies else "USD")).upper(),
        lines=bridge_lines(con, lines),
        amortized_total=Decimal(amortized),
        billed_total=Decimal(billed),
    )
