"""/cost: spend over time by team and category, drill-down to jobs and instances, unallocated resources.

URL: `?start=YYYY-MM-DD&end=YYYY-MM-DD&team=a,b&basis=amortized|billed&stack=category|team&view=teams|jobs|unallocated`.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
from dash import Dash, Input, Output, State, dcc, html, no_update

from gpulens.dashboards.explorer import figures, ids, urlstate, widgets
from gpulens.dashboards.explorer.queries import CostFilter, Queries

VIEWS = (("teams", "Teams"), ("jobs", "Jobs & instances"), ("unallocated", "Unallocated resources"))
VIEW_TITLES = {
    "teams": "Cost by team",
    "jobs": "Jobs and instances",
    "unallocated": "Unallocated spend by resource (tag these to allocate them)",
}
MONEY_COLUMNS = {"direct", "shared", "total", "waste", "cost"}
LABELS = {
    "team": "Team",
    "direct": "Direct",
    "shared": "Shared",
    "total": "Total",
    "gpu_hours": "GPU hours",
    "waste": "Waste",
    "job_id": "Job",
    "resource_id": "Instance / resource",
    "category": "Category",
    "cost": "Cost",
    "days": "Days",
}


@dataclass(frozen=True)
class CostState:
    filter: CostFilter
    stack: str
    view: str


def layout(queries: Queries, params: Mapping[str, str]) -> html.Div:
    rng = queries.data_range()
    if queries.counts()["allocations"] == 0:
        return widgets.empty_state(
            ids.COST_EMPTY,
            "No allocated cost yet",
            [
                "gpulens ingest cur PATH/TO/CUR/BILLING_PERIOD=YYYY-MM/",
                "gpulens ingest usage PATH/TO/usage.parquet      # GPU-seconds per job, for shared nodes",
                "gpulens attribute --period YYYY-MM",
            ],
            note="The cost page reads the allocations `gpulens attribute` writes.",
        )
    state = state_from_params(params, rng.first_day, rng.last_day, rng.teams)
    f = state.filter
    period = f"{f.start:%Y-%m}" if (f.start.day == 1 and f.end == _month_end(f.start)) else None
    controls = html.Div(
        className="filters",
        children=[
            widgets.field(
                "Period",
                dcc.Dropdown(
                    id=ids.COST_PERIOD,
                    options=list(rng.periods),
                    value=period,
                    clearable=True,
                    placeholder="custom",
                ),
            ),
            widgets.field(
                "Date range",
                dcc.DatePickerRange(
                    id=ids.COST_RANGE,
                    start_date=f.start,
                    end_date=f.end,
                    min_date_allowed=rng.first_day,
                    max_date_allowed=rng.last_day,
                    display_format="YYYY-MM-DD",
                ),
            ),
            widgets.field(
                "Teams",
                dcc.Dropdown(
                    id=ids.COST_TEAMS,
                    options=list(rng.teams),
                    value=list(f.teams),
                    multi=True,
                    placeholder="all teams",
                ),
                width="wide",
            ),
            widgets.field(
                "Cost",
                widgets.radio(ids.COST_BASIS, [("amortized", "Amortized"), ("billed", "Billed")], f.basis),
            ),
            widgets.field(
                "Stack by",
                widgets.radio(ids.COST_STACK, [("category", "Category"), ("team", "Team")], state.stack),
            ),
        ],
    )
    return html.Div(
        [
            controls,
            html.Div(id=ids.COST_CARDS, className="stats"),
            widgets.panel("Spend per day", dcc.Graph(id=ids.COST_CHART, config=widgets.GRAPH_CONFIG)),
            widgets.panel(
                html.Span(id=ids.COST_TABLE_TITLE),
                widgets.radio(ids.COST_VIEW, list(VIEWS), state.view),
                widgets.table(ids.COST_TABLE, page_size=12),
                dcc.Download(id=ids.COST_CSV),
                extra=html.Button("Download CSV", id=ids.COST_CSV_BUTTON, className="button"),
            ),
            html.P(
                "Click a team in the chart or the table to see its jobs and instances.", className="muted"
            ),
        ]
    )


def state_from_params(
    params: Mapping[str, str], first: date | None, last: date | None, teams: tuple[str, ...]
) -> CostState:
    """Validated filters from the URL; by default the newest full month held."""
    default_start = date(last.year, last.month, 1) if last else date.today()
    start = urlstate.get_date(params, "start", default_start) or default_start
    end = urlstate.get_date(params, "end", last) or start
    f = CostFilter(
        start=min(start, end),
        end=max(start, end),
        teams=tuple(urlstate.get_list(params, "team", teams)),
        basis=urlstate.get_choice(params, "basis", ("amortized", "billed"), "amortized"),
    )
    return CostState(
        f,
        urlstate.get_choice(params, "stack", ("category", "team"), "category"),
        urlstate.get_choice(params, "view", [v for v, _ in VIEWS], "teams"),
    )


def _month_end(day: date) -> date:
    return date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])


def make_state(
    start: str | None, end: str | None, teams: list[str] | None, basis: str, stack: str, view: str
) -> CostState:
    s = date.fromisoformat(str(start)[:10]) if start else date.today()
    e = date.fromisoformat(str(end)[:10]) if end else s
    return CostState(CostFilter(min(s, e), max(s, e), tuple(sorted(teams or ())), basis), stack, view)


def table_frame(queries: Queries, state: CostState) -> pd.DataFrame:
    """The rows the table on screen shows (and the CSV download holds)."""
    if state.view == "jobs":
        return queries.team_jobs(state.filter)
    if state.view == "unallocated":
        return queries.unallocated(state.filter)
    return queries.team_table(state.filter)


def render(queries: Queries, state: CostState) -> tuple[Any, ...]:
    """Rendered once per filter and warehouse version (see `Queries.memo`)."""
    return queries.memo(("cost", state), lambda: _render(queries, state))


def _render(queries: Queries, state: CostState) -> tuple[Any, ...]:
    """Cards, chart, table columns and rows, table title for one state."""
    rng = queries.data_range()
    totals = queries.cost_totals(state.filter)
    cards = [
        widgets.stat("Total", widgets.money(totals["total"], rng.currency)),
        widgets.stat("Direct", widgets.money(totals["direct"], rng.currency), tone="direct"),
        widgets.stat("Shared", widgets.money(totals["shared"], rng.currency), tone="shared"),
        widgets.stat(
            "Idle",
            widgets.money(totals["idle"], rng.currency),
            tone="idle",
            hint="GPU time paid for on shared nodes that no job held",
        ),
        widgets.stat(
            "Unallocated",
            widgets.money(totals["unallocated"], rng.currency),
            tone="unallocated",
            hint="untagged resources, taxes, unused commitments",
        ),
        widgets.stat(
            "Waste",
            widgets.money(totals["waste"], rng.currency),
            tone="waste",
            hint="cost of GPU time held but not kept busy: cost x (1 - SM active)",
        ),
    ]
    chart = figures.spend_stack(
        queries.spend_by_day(state.filter), stack=state.stack, currency=rng.currency, teams=rng.teams
    )
    df = table_frame(queries, state)
    columns = [_column(c) for c in df.columns]
    return cards, chart, columns, df.to_dict("records"), VIEW_TITLES[state.view]


def _column(name: str) -> dict[str, Any]:
    column: dict[str, Any] = {"name": LABELS.get(name, name), "id": name}
    if name in MONEY_COLUMNS:
        column.update(type="numeric", format=widgets.MONEY)
    elif name in ("gpu_hours", "days"):
        column.update(type="numeric", format=widgets.ONE_DECIMAL)
    return column


def csv_name(state: CostState) -> str:
    f = state.filter
    return f"gpulens-cost-{state.view}-{f.start:%Y%m%d}-{f.end:%Y%m%d}.csv"


def url_search(state: CostState) -> str:
    f = state.filter
    return urlstate.encode(
        {
            "start": f.start,
            "end": f.end,
            "team": f.teams,
            "basis": f.basis,
            "stack": state.stack,
            "view": state.view,
        }
    )


FILTER_PROPS = (
    (ids.COST_RANGE, "start_date"),
    (ids.COST_RANGE, "end_date"),
    (ids.COST_TEAMS, "value"),
    (ids.COST_BASIS, "value"),
    (ids.COST_STACK, "value"),
    (ids.COST_VIEW, "value"),
)
FILTERS = [Input(i, p) for i, p in FILTER_PROPS]


def register(app: Dash, queries: Queries) -> None:
    @app.callback(
        Output(ids.COST_CARDS, "children"),
        Output(ids.COST_CHART, "figure"),
        Output(ids.COST_TABLE, "columns"),
        Output(ids.COST_TABLE, "data"),
        Output(ids.COST_TABLE_TITLE, "children"),
        *FILTERS,
    )
    def _render(*values: Any) -> tuple[Any, ...]:
        return render(queries, make_state(*values))

    @app.callback(Output(ids.URL, "search", allow_duplicate=True), *FILTERS, prevent_initial_call=True)
    def _url(*values: Any) -> str:
        return url_search(make_state(*values))

    @app.callback(
        Output(ids.COST_CSV, "data"),
        Input(ids.COST_CSV_BUTTON, "n_clicks"),
        *[State(i, p) for i, p in FILTER_PROPS],
        prevent_initial_call=True,
    )
    def _csv(_: int, *values: Any) -> dict[str, Any]:
        state = make_state(*values)
        return dcc.send_data_frame(table_frame(queries, state).to_csv, csv_name(state), index=False)

    @app.callback(
        Output(ids.COST_RANGE, "start_date"),
        Output(ids.COST_RANGE, "end_date"),
        Input(ids.COST_PERIOD, "value"),
        prevent_initial_call=True,
    )
    def _period(period: str | None) -> tuple[Any, Any]:
        if not period:
            return no_update, no_update
        start = date.fromisoformat(f"{period}-01")
        return start, _month_end(start)

    @app.callback(
        Output(ids.COST_TEAMS, "value"),
        Output(ids.COST_VIEW, "value"),
        Input(ids.COST_CHART, "clickData"),
        Input(ids.COST_TABLE, "active_cell"),
        State(ids.COST_TABLE, "derived_viewport_data"),
        State(ids.COST_VIEW, "value"),
        prevent_initial_call=True,
    )
    def _drill(
        click: dict[str, Any] | None,
        cell: dict[str, Any] | None,
        rows: list[dict[str, Any]] | None,
        view: str,
    ) -> tuple[Any, Any]:
        team = drill_target(click, cell, rows, view, queries.data_range().teams)
        return ([team], "jobs") if team else (no_update, no_update)


def drill_target(
    click: dict[str, Any] | None,
    cell: dict[str, Any] | None,
    rows: list[dict[str, Any]] | None,
    view: str,
    teams: tuple[str, ...],
) -> str | None:
    """The team a click on a chart bar (team mode) or a team-table row asks to drill into."""
    from dash import ctx

    if ctx.triggered_id == ids.COST_CHART and click:
        name = click["points"][0].get("customdata")
        return name if name in teams else None
    if ctx.triggered_id == ids.COST_TABLE and cell and rows and view == "teams":
        row = cell.get("row", -1)
        team = rows[row].get("team") if 0 <= row < len(rows) else None
        return team if team in teams else None
    return None
