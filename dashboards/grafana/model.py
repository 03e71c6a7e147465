"""A small typed model of Grafana's dashboard JSON (schemaVersion 39, Grafana 10.x/11.x).

Only what gpulens' dashboards use: Prometheus targets, a handful of panel types, query/custom/
datasource variables, Prometheus annotations and links. Each dataclass renders itself with
`to_json()`; `Dashboard.to_json()` assigns panel ids and lays panels out on Grafana's 24-column grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 39
GRID_COLUMNS = 24
# Every query goes to the Prometheus data source the `datasource` variable points at; `push
# --datasource-uid` sets that variable's current value.
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}

PanelType = Literal["timeseries", "stat", "heatmap", "table", "bargauge", "text", "row"]
Json = dict[str, Any]
# Time series legends as a table with mean / last / max per series, as NVIDIA's DCGM dashboard (12239)
# shows them: which GPU is the outlier is read off the legend, not by hovering.
TABLE_LEGEND: Json = {
    "displayMode": "table",
    "placement": "bottom",
    "calcs": ["mean", "lastNotNull", "max"],
    "sortBy": "Mean",
    "sortDesc": True,
}


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel; `instant` for tables and stats that show one value per series."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False

    def to_json(self, ref_id: str) -> Json:
        return {
            "datasource": DATASOURCE,
            "refId": ref_id,
            "expr": self.expr,
            "legendFormat": self.legend,
            "range": not self.instant,
            "instant": self.instant,
            "format": "table" if self.table else "time_series",
        }


@dataclass(frozen=True)
class Step:
    """A threshold step: from `value` upwards (None: the base step) the colour is `color`."""

    color: str
    value: float | None = None


@dataclass(frozen=True)
class DataLink:
    title: str
    url: str

    def to_json(self) -> Json:
        return {"title": self.title, "url": self.url}


@dataclass(frozen=True)
class Panel:
    """A panel. `width`/`height` are grid units; `options`/`custom` are the type's own settings."""

    title: str
    type: PanelType
    description: str
    targets: tuple[Target, ...] = ()
    unit: str = "none"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    thresholds: tuple[Step, ...] = (Step("green"),)
    options: Mapping[str, Any] = field(default_factory=dict)
    custom: Mapping[str, Any] = field(default_factory=dict)
    links: tuple[DataLink, ...] = ()
    overrides: tuple[Mapping[str, Any], ...] = ()
    transformations: tuple[Mapping[str, Any], ...] = ()
    no_value: str | None = None

    def _field_defaults(self) -> Json:
        defaults: Json = {
            "unit": self.unit,
            "thresholds": {
                "mode": "absolute",
                "steps": [{"color": s.color, "value": s.value} for s in self.thresholds],
            },
            "custom": dict(self.custom),
        }
        for key in ("min", "max", "decimals"):
            if getattr(self, key) is not None:
                defaults[key] = getattr(self, key)
        if self.links:
            defaults["links"] = [link.to_json() for link in self.links]
        if self.no_value is not None:
            defaults["noValue"] = self.no_value
        return defaults

    def to_json(self, panel_id: int, grid: Json) -> Json:
        out: Json = {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "gridPos": grid,
        }
        if self.type in ("row", "text"):
            return out | (
                {"options": dict(self.options)} if self.type == "text" else {"collapsed": False, "panels": []}
            )
        options = dict(self.options)
        if self.type == "timeseries":
            options["legend"] = TABLE_LEGEND | dict(options.get("legend", {}))
        return out | {
            "datasource": DATASOURCE,
            "targets": [t.to_json(chr(ord("A") + i)) for i, t in enumerate(self.targets)],
            "fieldConfig": {"defaults": self._field_defaults(), "overrides": list(self.overrides)},
            "options": options,
            "transformations": list(self.transformations),
        }


def row(title: str) -> Panel:
    """A full-width section header."""
    return Panel(title, "row", "", width=GRID_COLUMNS, height=1)


@dataclass(frozen=True)
class Variable:
    """A template variable. Query variables are regex matchers: multi-select, with All meaning `.*`
    (so `label=~"$var"` also matches series where the label is absent, such as unmapped GPUs).
    `all_by_default=False` opens the dashboard on the first value instead of All: a per-node or per-job
    dashboard must not draw every GPU of a fleet of hundreds before anyone picks one."""

    name: str
    label: str
    kind: Literal["query", "custom", "datasource"] = "query"
    query: str = ""
    default: str = ""
    description: str = ""
    all_by_default: bool = True

    def to_json(self) -> Json:
        out: Json = {
            "name": self.name,
            "label": self.label,
            "type": self.kind,
            "description": self.description,
            "hide": 0,
            "skipUrlSync": False,
        }
        if self.kind == "datasource":
            return out | {"query": "prometheus", "current": {}, "regex": "", "refresh": 1, "options": []}
        if self.kind == "custom":
            values = [v.strip() for v in self.query.split(",")]
            return out | {
                "query": self.query,
                "multi": False,
                "includeAll": False,
                "current": {"text": self.default, "value": self.default, "selected": True},
                "options": [{"text": v, "value": v, "selected": v == self.default} for v in values],
            }
        return out | {
            "datasource": DATASOURCE,
            "query": {"query": self.query, "refId": f"{self.name}-query"},
            "definition": self.query,
            "refresh": 2,
            "regex": "",
            "sort": 1,
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            # An empty current value makes Grafana select the first value the query returns.
            "current": {"text": ["All"], "value": ["$__all"], "selected": True}
            if self.all_by_default
            else {},
            "options": [],
        }


@dataclass(frozen=True)
class Annotation:
    """Events drawn on time series: one mark wherever the PromQL `expr` returns a value."""

    name: str
    expr: str
    title: str
    text: str
    color: str = "red"

    def to_json(self) -> Json:
        return {
            "name": self.name,
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": self.color,
            "expr": self.expr,
            "step": "60s",
            "titleFormat": self.title,
            "textFormat": self.text,
            "useValueForTime": False,
        }


BUILTIN_ANNOTATION: Json = {
    "name": "Annotations & Alerts",
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "type": "dashboard",
}


@dataclass(frozen=True)
class DashboardLink:
    """A link in the dashboard header to another dashboard, keeping time range and variables."""

    title: str
    uid: str

    def to_json(self) -> Json:
        return {
            "title": self.title,
            "type": "link",
            "url": f"/d/{self.uid}",
            "icon": "dashboard",
            "tooltip": f"Open {self.title}",
            "keepTime": True,
            "includeVars": True,
            "asDropdown": False,
            "targetBlank": False,
            "tags": [],
        }


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...]
    tags: tuple[str, ...] = ("gpulens",)
    annotations: tuple[Annotation, ...] = ()
    links: tuple[DashboardLink, ...] = ()
    time_from: str = "now-6h"
    refresh: str = "1m"
    # Appended as a markdown link to every panel description that has none of its own.
    runbook: str = ""

    def to_json(self) -> Json:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": True,
            "graphTooltip": 1,
            "timezone": "utc",
            "refresh": self.refresh,
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "templating": {"list": [v.to_json() for v in self.variables]},
            "annotations": {"list": [BUILTIN_ANNOTATION, *(a.to_json() for a in self.annotations)]},
            "links": [link.to_json() for link in self.links],
            "panels": [with_link(p, self.runbook) for p in layout(self.panels)],
        }


def with_link(panel: Json, url: str) -> Json:
    """The panel with `[Runbook](url)` after its description, unless the description links already."""
    text = panel.get("description", "")
    if not url or not text or "](" in text:
        return panel
    return panel | {"description": f"{text} [Runbook]({url})"}


def layout(panels: Sequence[Panel]) -> list[Json]:
    """Flow panels left to right on the 24-column grid, wrapping to a new line when full."""
    out: list[Json] = []
    x = y = line_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > GRID_COLUMNS or panel.type == "row":
            x, y, line_height = 0, y + line_height, 0
        out.append(panel.to_json(panel_id, {"x": x, "y": y, "w": panel.width, "h": panel.height}))
        x, line_height = x + panel.width, max(line_height, panel.height)
    return out
