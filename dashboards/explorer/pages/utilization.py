"""/utilization: the underutilized (GPU, job) pairs of SPEC §7 and a heatmap of SM activity per GPU.

The table is `find_flags` (the function behind `gpulens flags`); the window ends at the newest usage
hour in the warehouse. URL: `?window=24h|7d|30d&threshold=0.25&model=all|a100|h100&team=a,b`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import Dash, Input, Output, dcc, html

from gpulens.dashboards.explorer import figures, ids, urlstate, widgets
from gpulens.dashboards.explorer.queries import Queries, UtilFilter

WINDOWS = {"24h": 24, "7d": 168, "30d": 720}
MODELS = (("all", "All GPUs"), ("a100", "A100"), ("h100", "H100"))
COLUMNS = [
    {"name": "Node", "id": "node"},
    {"name": "Instance", "id": "instance_id"},
    {"name": "GPU", "id": "gpu", "type": "numeric"},
    {"name": "Model", "id": "gpu_family"},
    {"name": "Team", "id": "team"},
    {"name": "Job", "id": "job_id"},
    {"name": "Hours held", "id": "hours", "type": "numeric", "format": widgets.ONE_DECIMAL},
    {"name": "Mean SM active", "id": "sm_active", "type": "numeric", "format": widgets.PERCENT},
    {"name": "Measured by", "id": "measure"},
    {"name": "Waste", "id": "waste", "type": "numeric", "format": widgets.MONEY},
]


def layout(queries: Queries, params: Mapping[str, str]) -> html.Div:
    rng = queries.data_range()
    if queries.counts()["gpu_usage_hourly"] == 0:
        return widgets.empty_state(
            ids.UTIL_EMPTY,
            "No GPU usage yet",
            [
                "gpulens ingest usage PATH/TO/usage.parquet",
                "gpulens ingest usage --prometheus http://PROMETHEUS:9090 --start 2026-10-01 --end 2026-11-01",
            ],
            note="Usage rollups are the hourly GPU-seconds and SM activity the agent exports (SPEC §5).",
        )
    f = filter_from_params(params, rng.teams)
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
                    options=[{"label": f"{t:.0%}", "value": t} for t in (0.1, 0.15, 0.25, 0.35, 0.5)],
                ),
            ),
            widgets.field("GPU", widgets.radio(ids.UTIL_MODEL, list(MODELS), f.model)),
            widgets.field(
                "Teams",
                dcc.Dropdown(
                    id=ids.UTIL_TEAMS,
                    options=list(rng.teams),
                    value=list(f.teams),
                    multi=True,
                    placeholder="all teams",
                ),
                width="wide",
            ),
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
            html.Div(id=ids.UTIL_SUMMARY, className="stats"),
            html.Div(id=ids.UTIL_NOTE),
            widgets.panel("Underutilized GPUs", widgets.table(ids.UTIL_TABLE, columns=COLUMNS, page_size=15)),
            widgets.panel("SM activity per GPU", dcc.Graph(id=ids.UTIL_HEATMAP, config=widgets.GRAPH_CONFIG)),
            *live,
        ]
    )


def filter_from_params(params: Mapping[str, str], teams: tuple[str, ...]) -> UtilFilter:
    window = urlstate.get_choice(params, "window", WINDOWS, "24h")
    return UtilFilter(
        WINDOWS[window],
        urlstate.get_float(params, "threshold", 0.25, 0.0, 1.0),
        urlstate.get_choice(params, "model", [m for m, _ in MODELS], "all"),
        tuple(urlstate.get_list(params, "team", teams)),
    )


def make_filter(window: str, threshold: float | None, model: str, teams: list[str] | None) -> UtilFilter:
    return UtilFilter(
        WINDOWS.get(window, 24),
        float(threshold if threshold is not None else 0.25),
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
        widgets.stat("Underutilized GPU-job pairs", f"{len(df)}", tone="idle"),
        widgets.stat("GPU hours held below threshold", f"{df.hours.sum():,.0f}"),
        widgets.stat("Waste in window", widgets.money(float(df.waste.sum()), rng.currency), tone="waste"),
        widgets.stat("Window ends", until, hint="the newest usage hour in the warehouse, as `gpulens flags`"),
    ]
    coarse = queries.coarse_nodes(f.window_hours)
    note = (
        html.Div(
            className="note",
            children=[
                html.Strong("Coarse utilization only: "),
                f"{', '.join(coarse)} {'reports' if len(coarse) == 1 else 'report'} no SM activity (an A100 without DCGM profiling). Their rows use NVML's "
                "utilization.gpu, which counts any running kernel and reads higher than SM activity; they are "
                "labelled 'utilization'.",
            ],
        )
        if coarse
        else None
    )
    heatmap = figures.sm_heatmap(queries.heatmap(f), threshold=f.sm_threshold)
    return cards, note, df.to_dict("records"), heatmap


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
        Output(ids.UTIL_TABLE, "data"),
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
