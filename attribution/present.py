"""How figures are shown to people: one formatter for money, one for hours, one for counts.

The explorer, the weekly report, the CLI tables and the Grafana units all call these, so a figure
reads the same everywhere: money with its currency and two decimals (`$124,880.25`, `EUR 1,204.10`),
hours with one decimal and thousands separators (`17,508.0 h`), counts as whole numbers with
separators (`1,000,000`). Money stays `Decimal` until it gets here (docs/design.md §6).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
# Symbols for the currencies AWS bills in most often; any other shows its ISO code.
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
# Grafana's unit ids for the same currencies (Grafana "Currency" units); others fall back to a suffix.
GRAFANA_UNITS = {"USD": "currencyUSD", "EUR": "currencyEUR", "GBP": "currencyGBP", "JPY": "currencyJPY"}


def currency_symbol(currency: str) -> str:
    """`$` for USD, the ISO code followed by a space for a currency without a symbol here."""
    return SYMBOLS.get(currency.upper(), f"{currency.upper()} ")


def to_cents(amount: Decimal | float | int) -> Decimal:
    """Half-up to the cent: the one rounding rule for a single figure shown to a person."""
    return Decimal(str(amount)).quantize(CENT, rounding=ROUND_HALF_UP)


def format_money(amount: Decimal | float | int | None, currency: str = "USD", *, decimals: int = 2) -> str:
    """`$124,880.25`, `-$6.10`, `EUR 1,204.10`; `decimals=0` for headline cards (`$124,880`)."""
    if amount is None:
        return ""
    value = to_cents(amount)
    if decimals == 0:
        value = value.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    sign = "-" if value < 0 else ""
    return f"{sign}{currency_symbol(currency)}{abs(value):,.{decimals}f}"


def format_hours(hours: Decimal | float | int | None) -> str:
    """`17,508.0 h`: one decimal, thousands separators."""
    if hours is None:
        return ""
    return f"{float(hours):,.1f} h"


def format_count(count: Decimal | float | int | None) -> str:
    """`1,000,000`: a whole number with thousands separators."""
    if count is None:
        return ""
    return f"{round(float(count)):,}"


# A spreadsheet evaluates a cell that starts with one of these as a formula. Team names, job ids and
# resource ids come from free-form tags and labels that anyone who can tag a resource controls (CSV
# injection, OWASP): such text gets a leading apostrophe. Numbers are never passed through here.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(text: str) -> str:
    """Text for a csv cell that a spreadsheet shows as text, never runs as a formula (`'=HYPERLINK(..)`)."""
    return "'" + text if text.startswith(FORMULA_START) else text


def grafana_money_unit(currency: str) -> str:
    """The Grafana unit id that shows a series as money in `currency`."""
    return GRAFANA_UNITS.get(currency.upper(), f"suffix: {currency.upper()}")
