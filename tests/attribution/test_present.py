"""One formatter for money, hours and counts (attribution/present.py)."""

from __future__ import annotations

from decimal import Decimal

from gpulens.attribution.present import format_count, format_hours, format_money, grafana_money_unit


def test_money_has_its_currency_two_decimals_and_thousands() -> None:
    assert format_money(Decimal("124880.245")) == "$124,880.25"  # half-up at the cent
    assert format_money(Decimal("-6.1")) == "-$6.10"
    assert format_money(Decimal("1204.1"), "EUR") == "€1,204.10"
    assert format_money(Decimal("1204.1"), "CHF") == "CHF 1,204.10"
    assert format_money(Decimal("124880.5"), decimals=0) == "$124,881"
    assert format_money(None) == ""


def test_hours_and_counts() -> None:
    assert format_hours(17508) == "17,508.0 h"
    assert format_count(1000000) == "1,000,000"
    assert grafana_money_unit("usd") == "currencyUSD"
