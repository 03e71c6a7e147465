"""Check dashboard JSON against the shipped schema and the layout rules a JSON Schema cannot state."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from gpulens.dashboards.grafana.model import GRID_COLUMNS

SCHEMA_PATH = Path(__file__).parent / "schema" / "dashboard.schema.json"
# Variables Grafana defines itself; any other `$name` in a query must be a template variable.
BUILTIN_VARIABLES = {
    "__rate_interval",
    "__interval",
    "__range",
    "__all",
    "__data",
    "__url_time_range",
    "__value",
    "__interval_ms",
    "__range_s",
}


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


def schema_errors(model: dict[str, Any]) -> list[str]:
    """Every violation of the dashboard schema, as 'path: message'."""
    validator = jsonschema.Draft202012Validator(schema())
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(model), key=lambda e: list(map(str, e.absolute_path)))
    ]


def layout_errors(model: dict[str, Any]) -> list[str]:
    """Panels that overflow the 24-column grid or overlap; duplicate panel ids or refIds."""
    errors: list[str] = []
    taken: set[tuple[int, int]] = set()
    ids: set[int] = set()
    for panel in model.get("panels", []):
        g, title = panel["gridPos"], panel.get("title", "?")
        if g["x"] + g["w"] > GRID_COLUMNS:
            errors.append(f"{title}: overflows the grid")
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        if cells & taken:
            errors.append(f"{title}: overlaps another panel")
        taken |= cells
        if panel["id"] in ids:
            errors.append(f"{title}: duplicate panel id {panel['id']}")
        ids.add(panel["id"])
        refs = [t["refId"] for t in panel.get("targets", [])]
        if len(refs) != len(set(refs)):
            errors.append(f"{title}: duplicate refId")
    return errors


def variable_errors(model: dict[str, Any]) -> list[str]:
    """`$name` references in queries and links that are neither template nor Grafana variables."""
    defined = {v["name"] for v in model["templating"]["list"]} | BUILTIN_VARIABLES
    text = json.dumps(model["panels"]) + json.dumps(model["annotations"]) + json.dumps(model["templating"])
    used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    return [f"undefined variable ${name}" for name in sorted(used - defined)]


def problems(model: dict[str, Any]) -> list[str]:
    return schema_errors(model) + layout_errors(model) + variable_errors(model)
