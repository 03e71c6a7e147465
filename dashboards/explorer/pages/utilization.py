"""/utilization: the underutilized (GPU, job) pairs of docs/design.md §7 and a heatmap of SM activity per GPU.

The table is `find_flags` (the function behind `gpulens flags`); the window ends at the newest usage
hour in the warehouse. URL: `?window=24h|7d|30d&threshold=0.25&model=all|a100|h100&team=a,b`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pandas as pd
from dash import Dash, Input, Output, dcc, html

from gpulens.attribution.money import round_parts
from gpulens.attribution.present import format_hours, format_money
from gpulens.dashboards.explorer import figures, ids, urlstate, widgets
from gpulens.dashboards.explorer.queries import Queries, UtilFilter
from gpulens.metrics import SM_THRESHOLD_DEFAULT

WINDOWS = {"24h": 24, "7d": 168, "30d": 720}
MODELS = (("all", "All GPUs"), ("a100", "A100"), ("h100", "H100"))
THRESHOLDS = tuple(sorted({0.1, 0.15, SM_THRESHOLD_DEFAULT, 0.35, 0.5}))
MAX_GROUPS = 40  # groups sent to the browser, most waste first; a 30-day window of a big fleet has thousands
GROUP_KEY = ["node", "instance_id", "team", "job_id", "gpu_family", "measure"]
GROUP_HEAD = ("Node / instance", "Team", "Job", "GPUs", "Hours held", "Mean SM active", "Waste")
GPU_HEAD = ("GPU", "Model", "Hours held", "Mean SM active", "Measured by", "Waste")
HEATMAP_GAPS = (
    "Blank cells: no usage was recorded for that GPU in that time bucket (the node was not running, or "
    "its agent was not reporting). No data is not 0 % activity. Colours below the SM threshold (marked "
    "on the scale) are red."
)


def layout(queries: Queries, params: Mapping[str, str]) -> html.Div:
    rng = queries.data_range()
    if queries.counts()["gpu_usage_hourly"] == 0:
        return widgets.empty_state(
            ids.UTIL_EMPTY,
            "No GPU usage yet",
            [
                "gpulens ingest usage PATH/TO/usage.parquet",
                "gpulens ingest usage --prometheus http://PROMETHEUS:9090 "
                "--start 2026-10-01 --end 2026-11-01",
            ],
            note="Usage rollups are the hourly GPU-seconds and SM activity the agent exports "
            "(docs/design.md §5).",
        )
    f = filter_from_params(params, rng.teams)
    ignored = ignored_params(params, rng.teams)
    window = next(k for k, v in WINDOWS.items() if v == f.window_hours)
    controls = html.Div(
        className="filters",
        children=[
            widgets.field("Window", widgets.radio(ids.UTIL_WINDOW, [(k, k) for k in WINDOWS], window)),
            widgets.field(
                "SM threshold",
                dcc.Dropdown(
                    id=ids.UTIL_THRESHOLD,
                    clearable=False,
                    value=f.sm_threshold,
                    options=[{"label": f"{t:.0%}", "value": t} for t in THRESHOLDS],
                ),
            ),
            widgets.field("GPU", widgets.radio(ids.UTIL_MODEL, list(MODELS), f.model)),
            widgets.teams_field(ids.UTIL_TEAMS, rng.teams, f.teams),
        ],
    )
    live = []
    if queries.prometheus:
        live = [
            widgets.panel(
                "Live SM activity (Prometheus)",
                html.Div(id=ids.UTIL_LIVE),
                dcc.Interval(id=f"{ids.UTIL_LIVE}-tick", interval=5000),
            )
        ]
    return html.Div(
        [
            controls,
            widgets.url_note(ids.UTIL_URL_NOTE, ignored),
            widgets.loading(
                html.Div(id=ids.UTIL_SUMMARY, className="stats"),
                html.Div(id=ids.UTIL_NOTE),
                widgets.panel(
                    "Underutilized GPUs, by node and job (click a row for its GPUs)",
                    html.Div(id=ids.UTIL_TABLE, className="grouped"),
                ),
                widgets.panel(
                    "SM activity per GPU",
                    widgets.graph(ids.UTIL_HEATMAP),
                    html.P(HEATMAP_GAPS, className="muted"),
                ),
                element_id=ids.UTIL_LOADING,
            ),
            *live,
        ]
    )


def filter_from_params(params: Mapping[str, str], teams: tuple[str, ...]) -> UtilFilter:
    window = urlstate.get_choice(params, "window", WINDOWS, "24h")
    threshold = urlstate.get_float(params, "threshold", SM_THRESHOLD_DEFAULT, 0.0, 1.0)
    return UtilFilter(
        WINDOWS[window],
        threshold if threshold in THRESHOLDS else SM_THRESHOLD_DEFAULT,
        urlstate.get_choice(params, "model", [m for m, _ in MODELS], "all"),
        tuple(urlstate.get_list(params, "team", teams)),
    )


def ignored_params(params: Mapping[str, str], teams: tuple[str, ...]) -> list[str]:
    """URL values `filter_from_params` could not use, worded for the page."""
    out = []
    if "window" in params and params["window"] not in WINDOWS:
        out.append(f"window={params['window']} (one of {', '.join(WINDOWS)})")
    if "threshold" in params:
        try:
            known = float(params["threshold"]) in THRESHOLDS
        except ValueError:
            known = False
        if not known:
            shown = ", ".join(f"{t:g}" for t in THRESHOLDS)
            out.append(f"threshold={params['threshold']} (one of {shown})")
    if "model" in params and params["model"] not in {m for m, _ in MODELS}:
        out.append(f"model={params['model']} (one of {', '.join(m for m, _ in MODELS)})")
    unknown = urlstate.unknown_list_values(params, "team", teams)
    if unknown:
        out.append(f"team={','.join(unknown)} (no such team in the warehouse)")
    return out


def make_filter(window: str, threshold: float | None, model: str, teams: list[str] | None) -> UtilFilter:
    return UtilFilter(
        WINDOWS.get(window, 24),
        float(threshold if threshold is not None else SM_THRESHOLD_DEFAULT),
        model,
        tuple(sorted(teams or ())),
    )


def render(queries: Queries, f: UtilFilter) -> tuple[Any, ...]:
    """Rendered once per filter and warehouse version (see `Queries.memo`)."""
    return queries.memo(("utilization", f), lambda: _render(queries, f))


def _render(queries: Queries, f: UtilFilter) -> tuple[Any, ...]:
    """Summary cards, the coarse-utilization note, table rows and the heatmap for one filter."""
    rng = queries.data_range()
    df = queries.underutilized(f)
    until = f"{rng.newest_usage_hour:%Y-%m-%d %H:00} UTC" if rng.newest_usage_hour else "-"
    cards = [
        widgets.stat("Underutilized GPU-job pairs", f"{len(df):,}", tone="idle"),
        widgets.stat("GPU hours held below threshold", format_hours(float(df.hours.sum()))),
        widgets.stat(
            "Waste on flagged GPUs",
            format_money(sum(df.waste, Decimal(0)), rng.currency),
            tone="waste",
            hint="cost x (1 - SM active) of the flagged (GPU, job) pairs in the window only; /cost's "
            "'of which wasted' counts all held time in its date range",
        ),
        widgets.stat("Window ends", until, hint="the newest usage hour in the warehouse, as `gpulens flags`"),
    ]
    coarse = queries.coarse_nodes(f.window_hours)
    note = (
        html.Div(
            className="note",
            children=[
                html.Strong("Coarse utilization only: "),
                f"{', '.join(coarse)} {'reports' if len(coarse) == 1 else 'report'} no SM activity (an A100 "
                "without DCGM profiling). Their rows use NVML's utilization.gpu, which counts any running "
                "kernel and reads higher than SM activity; they are labelled 'utilization'.",
            ],
        )
        if coarse
        else None
    )
    heatmap = figures.sm_heatmap(queries.heatmap(f), threshold=f.sm_threshold)
    return cards, note, grouped_table(df, rng.currency), heatmap


@dataclass
class Group:
    """The flagged GPUs of one (node, instance, team, job, model, measure)."""

    node: str
    instance_id: str
    team: str
    job_id: str
    gpu_family: str
    measure: str
    gpus: list[dict[str, Any]] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return float(sum(g["hours"] for g in self.gpus))

    @property
    def waste(self) -> Decimal:
        return sum((g["waste"] for g in self.gpus), Decimal(0))

    @property
    def sm_active(self) -> float:
        """Hours-weighted mean SM activity of the group's GPUs."""
        hours = self.hours
        return sum(g["sm_active"] * g["hours"] for g in self.gpus) / hours if hours else 0.0


def groups(df: pd.DataFrame) -> list[Group]:
    """One group per (node, job), most waste first. Plain Python over the records: a 30-day window of a
    1,000-GPU fleet flags thousands of pairs, and pandas' per-group overhead would dominate."""
    found: dict[tuple[Any, ...], Group] = {}
    for row in df.to_dict("records"):
        key = tuple(row[k] for k in GROUP_KEY)
        if key not in found:
            found[key] = Group(*key)
        found[key].gpus.append(row)
    return sorted(found.values(), key=lambda g: (-g.waste, g.node))


def grouped_table(df: pd.DataFrame, currency: str) -> Any:
    """The flagged pairs grouped by node and job, each group a native expandable row (<details>)
    listing its GPUs, and the money total at the foot. A node of 8 idle GPUs is one row, not 8. Money
    is rounded with `round_parts`: the groups add up to the total shown, a group's GPUs to the group.
    The browser gets the `MAX_GROUPS` groups that waste most; the rest is one line."""
    if df.empty:
        return html.P("No GPU is below the threshold in this window.", className="muted")
    head = html.Div(className="grow head", children=[html.Span(h) for h in GROUP_HEAD])
    found = groups(df)
    total = sum((g.waste for g in found), Decimal(0))
    shown = round_parts([g.waste for g in found], total)
    rows: list[Any] = [
        _group_row(g, money, currency) for g, money in zip(found[:MAX_GROUPS], shown, strict=False)
    ]
    rest = found[MAX_GROUPS:]
    if rest:
        rows.append(
            _line(
                "grow more",
                f"… {len(rest):,} more groups with less waste (narrow the filters to see them)",
                sum(len(g.gpus) for g in rest),
                sum(g.hours for g in rest),
                format_money(sum(shown[MAX_GROUPS:], Decimal(0)), currency),
            )
        )
    foot = _line("grow foot", "Total", len(df), float(df.hours.sum()), format_money(total, currency))
    return [head, *rows, html.Div(foot, id=f"{ids.UTIL_TABLE}-total")]


def _line(class_name: str, label: str, gpus: int, hours: float, money: str) -> html.Div:
    """A line of the grouped table that is not a group: the rest, the total."""
    return html.Div(
        className=class_name,
        children=[
            html.Span(label),
            html.Span(""),
            html.Span(""),
            html.Span(f"{gpus:,}"),
            html.Span(format_hours(hours)),
            html.Span(""),
            html.Span(money, className="money"),
        ],
    )


def _group_row(g: Group, money: Decimal, currency: str) -> html.Details:
    gpus = sorted(g.gpus, key=lambda r: r["gpu"])
    summary = html.Summary(
        className="grow",
        children=[
            html.Span([html.Strong(g.node), html.Span(f" {g.instance_id}", className="muted")]),
            html.Span(g.team or ""),
            html.Span(g.job_id or "", className="job"),
            html.Span(f"{len(gpus)} × {g.gpu_family}"),
            html.Span(format_hours(g.hours)),
            html.Span(f"{g.sm_active:.1%}" + (" (util)" if g.measure == "utilization" else "")),
            html.Span(format_money(money, currency), className="money"),
        ],
    )
    shown = round_parts([r["waste"] for r in gpus], money)
    body = html.Table(
        className="gpus",
        children=[
            html.Thead(html.Tr([html.Th(h) for h in GPU_HEAD])),
            html.Tbody([_gpu_row(r, m, currency) for r, m in zip(gpus, shown, strict=True)]),
        ],
    )
    return html.Details([summary, body], className="group")


def _gpu_row(r: dict[str, Any], money: Decimal, currency: str) -> html.Tr:
    return html.Tr(
        className="gpu-row",
        children=[
            html.Td(str(r["gpu"]), className="gpu"),
            html.Td(r["model"]),
            html.Td(format_hours(r["hours"])),
            html.Td(f"{r['sm_active']:.1%}"),
            html.Td(r["measure"]),
            html.Td(format_money(money, currency), className="money"),
        ],
        **{"data-node": r["node"], "data-gpu": str(r["gpu"]), "data-job": r["job_id"]},
    )


def url_search(f: UtilFilter) -> str:
    window = next(k for k, v in WINDOWS.items() if v == f.window_hours)
    return urlstate.encode({"window": window, "threshold": f.sm_threshold, "model": f.model, "team": f.teams})


FILTERS = [
    Input(ids.UTIL_WINDOW, "value"),
    Input(ids.UTIL_THRESHOLD, "value"),
    Input(ids.UTIL_MODEL, "value"),
    Input(ids.UTIL_TEAMS, "value"),
]


def register(app: Dash, queries: Queries) -> None:
    @app.callback(
        Output(ids.UTIL_SUMMARY, "children"),
        Output(ids.UTIL_NOTE, "children"),
        Output(ids.UTIL_TABLE, "children"),
        Output(ids.UTIL_HEATMAP, "figure"),
        *FILTERS,
    )
    def _render(*values: Any) -> tuple[Any, ...]:
        return render(queries, make_filter(*values))

    @app.callback(Output(ids.URL, "search", allow_duplicate=True), *FILTERS, prevent_initial_call=True)
    def _url(*values: Any) -> str:
        return url_search(make_filter(*values))

    @app.callback(Output(ids.UTIL_LIVE, "children"), Input(f"{ids.UTIL_LIVE}-tick", "n_intervals"))
    def _live(_: int | None) -> Any:
        return live_table(queries)


def live_table(queries: Queries) -> Any:
    df = queries.live_sm()
    if df.empty:
        return html.P(f"No live data from {queries.prometheus} yet.", className="muted")
    df = df.assign(value=(df.value * 100).round(1))
    return widgets.table(
        f"{ids.UTIL_LIVE}-table",
        data=df.to_dict("records"),
        page_size=16,
        columns=[
            {"name": n, "id": i}
            for n, i in (
                ("Node", "node"),
                ("GPU", "gpu"),
                ("Job", "job_id"),
                ("Team", "team"),
                ("Now (%)", "value"),
                ("Measured by", "measure"),
            )
        ],
    )
