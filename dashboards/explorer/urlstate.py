"""Filters in the URL: parsing a query string into typed values and back (one place for every page).

Nothing parsed here reaches SQL as text: values are validated (dates, numbers, known choices) and
then passed to `queries` as bound parameters.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import date


def parse(search: str | None) -> dict[str, str]:
    """`?a=1&b=x` -> {"a": "1", "b": "x"}; the last value wins; blank values are dropped."""
    pairs = urllib.parse.parse_qsl((search or "").lstrip("?"), keep_blank_values=False)
    return dict(pairs)


def encode(values: Mapping[str, object]) -> str:
    """{"team": ["a", "b"], "start": date} -> `?team=a,b&start=2026-10-01`; empty values are left out."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None or value == "" or value == [] or value == ():
            continue
        if isinstance(value, (list, tuple)):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = str(value)
    return "?" + urllib.parse.urlencode(out, safe=",:") if out else ""


def get_date(params: Mapping[str, str], key: str, default: date | None) -> date | None:
    try:
        return date.fromisoformat(params[key])
    except (KeyError, ValueError):
        return default


def get_list(params: Mapping[str, str], key: str, allowed: Iterable[str]) -> list[str]:
    """A comma-separated list, keeping only values in `allowed` (unknown teams are ignored)."""
    known = set(allowed)
    return [v for v in params.get(key, "").split(",") if v in known]


def get_choice(params: Mapping[str, str], key: str, choices: Iterable[str], default: str) -> str:
    value = params.get(key, default)
    return value if value in set(choices) else default


def get_float(params: Mapping[str, str], key: str, default: float, lo: float, hi: float) -> float:
    try:
        value = float(params[key])
    except (KeyError, ValueError):
        return default
    return value if lo <= value <= hi else default


def unknown_list_values(params: Mapping[str, str], key: str, allowed: Iterable[str]) -> list[str]:
    """The values of a comma-separated list in the URL that `get_list` drops, to say so on the page."""
    known = set(allowed)
    return [v for v in params.get(key, "").split(",") if v and v not in known]


def ignored_note(ignored: Iterable[str]) -> str:
    """One sentence naming the URL values that were not used: `?team=nosuchteam` must not pass silently."""
    items = list(ignored)
    if not items:
        return ""
    return "Ignored from the URL: " + "; ".join(items) + ". Showing the defaults for those instead."
