"""Rounding money for display, one rule everywhere (docs/attribution.md, "Rounding").

Amounts stay exact `Decimal`s until they are shown. A total is rounded to the cent half-up, and its
parts by the largest-remainder method, so that the parts shown add up to the total shown: 1/3 + 1/3
+ 1/3 of 1.00 is shown as 0.34 + 0.33 + 0.33, never 0.33 three times under a total of 1.00.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def round_money(value: Decimal, unit: Decimal = CENT) -> Decimal:
    """`value` to `unit`, halves away from zero (the rule invoices use)."""
    return value.quantize(unit, rounding=ROUND_HALF_UP)


def round_parts(
    values: Sequence[Decimal], total: Decimal | None = None, unit: Decimal = CENT
) -> list[Decimal]:
    """`values` rounded to `unit` so that they add up exactly to `total` rounded (`total` defaults to
    their sum): each part is first rounded down, then the units still missing go, one each, to the
    parts that lost most (ties: the larger part, then the earlier). A `total` that differs from the
    sum of the parts by more than rounding is honoured too (the difference lands on the largest
    remainders), so callers should pass the exact total the parts come from."""
    exact = [Decimal(v) for v in values]
    shown_total = round_money(sum(exact, Decimal(0)) if total is None else Decimal(total), unit)
    floors = [v.quantize(unit, rounding=ROUND_FLOOR) for v in exact]
    missing = int(((shown_total - sum(floors, Decimal(0))) / unit).to_integral_value())
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), -exact[i], i))
    out = list(floors)
    if not out:
        return out
    step = unit if missing >= 0 else -unit
    for k in range(abs(missing)):
        i = order[k % len(order)] if missing >= 0 else order[len(order) - 1 - (k % len(order))]
        out[i] += step
    return out
