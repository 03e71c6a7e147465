"""/cost: spend over time by team and category, drill-down to jobs and instances, unallocated resources.

URL: `?start=YYYY-MM-DD&end=YYYY-MM-DD&team=a,b&basis=amortized|billed&stack=category|team`
`&view=teams|jobs|idle|unallocated`.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pandas as pd
from dash import Dash, Input, Output, State, dcc, html, no_update

from gpulens.attribution.money import round_money, round_parts
from gpulens.attribution.present import csv_text, format_money
from gpulens.dashboards.explorer import figures, ids, urlstate, widgets
from gpulens.dashboards.explorer.queries import COMMITMENT_TYPES, GROUP_ORDER, CostFilter, Queries

GROUPS = GROUP_ORDER  # direct, shared, idle, unallocated: the parts of Total on the cards

VIEWS = (
    ("teams", "Teams"),
    ("jobs", "Jobs & instances"),
    ("idle", "Idle by instance"),
    ("unallocated", "Unallocated"),
)
VIEW_TITLES = {
    "teams": "Cost by team",
    "jobs": "Jobs and instances",
    "idle": "Idle GPU time by instance and day (paid for on shared nodes, held by no job)",
    "unallocated": "Unallocated spend by resource, line type and service, with what to do about each",
}
# The rows "(idle)" and "(unallocated)" of the team table drill into these views.
DRILL_VIEWS = {"(idle)": "idle", "(unallocated)": "unallocated"}
MONEY_COLUMNS = {"direct", "shared", "total", "gpu_cost", "storage", "waste", "cost"}
LABELS = {
    "team": "Team",
    "direct": "Direct",
    "shared": "Shared",
    "total": "Total",
    "gpu_cost": "of which GPU",
    "storage": "of which storage",
    "gpu_hours": "GPU hours",
    "waste": "Of which wasted",
    "job_id": "Job",
    "node": "Node",
    "instance_type": "Instance type",
    "resource_id": "Instance / resource",
    "category": "Category",
    "cost": "Cost",
    "days": "Days",
    "day": "Day",
    "line_item_type": "Line type",
    "service": "Service",
    "action": "What to do",
}
WASTE_HINT = (
    "Of the spend above: the cost of GPU time teams held but did not keep busy, cost x (1 - SM active), "
    "over all held time. Not the same as /utilization's waste on flagged GPUs (below the SM threshold)."
)


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
            widgets.teams_field(ids.COST_TEAMS, rng.teams, f.teams),
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
            widgets.url_note(ids.COST_URL_NOTE, ignored_params(params, rng.teams)),
            widgets.loading(
                html.Div(id=ids.COST_NOTE),
                html.Div(id=ids.COST_CARDS),
                widgets.panel("Spend per day", widgets.graph(ids.COST_CHART)),
                element_id=ids.COST_LOADING,
            ),
            widgets.panel(
                html.Span(id=ids.COST_TABLE_TITLE),
                widgets.radio(ids.COST_VIEW, list(VIEWS), state.view),
                widgets.loading(
                    widgets.table(ids.COST_TABLE, page_size=12, wrap=("resource_id", "action", "job_id"))
                ),
                dcc.Download(id=ids.COST_CSV),
                extra=html.Button("Download CSV", id=ids.COST_CSV_BUTTON, className="button"),
            ),
            html.P(
                "Click a team in the chart or the table to see its jobs and instances; click (idle) or "
                "(unallocated) to see what is behind them.",
                className="muted",
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


def ignored_params(params: Mapping[str, str], teams: tuple[str, ...]) -> list[str]:
    """URL values `state_from_params` could not use, worded for the page."""
    out = [
        f"{k}={params[k]} (not a date YYYY-MM-DD)"
        for k in ("start", "end")
        if k in params and urlstate.get_date(params, k, None) is None
    ]
    for key, choices in (
        ("basis", ("amortized", "billed")),
        ("stack", ("category", "team")),
        ("view", tuple(v for v, _ in VIEWS)),
    ):
        if key in params and params[key] not in choices:
            out.append(f"{key}={params[key]} (one of {', '.join(choices)})")
    unknown = urlstate.unknown_list_values(params, "team", teams)
    if unknown:
        out.append(f"team={','.join(unknown)} (no such team in the warehouse)")
    return out


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
    if state.view == "idle":
        return queries.idle(state.filter)
    if state.view == "unallocated":
        return queries.unallocated(state.filter)
    return queries.team_table(state.filter)


def render(queries: Queries, state: CostState) -> tuple[Any, ...]:
    """Rendered once per filter and warehouse version (see `Queries.memo`)."""
    return queries.memo(("cost", state), lambda: _render(queries, state))


def _render(queries: Queries, state: CostState) -> tuple[Any, ...]:
    """Billed note, cards, chart, table columns and rows, table title for one state."""
    rng = queries.data_range()
    totals = queries.cost_totals(state.filter)
    chart = figures.spend_stack(
        queries.spend_by_day(state.filter), stack=state.stack, currency=rng.currency, teams=rng.teams
    )
    df = table_frame(queries, state)
    columns = [_column(c, rng.currency) for c in df.columns]
    return (
        billed_note(queries, state),
        cards(queries.cost_parts(state.filter), totals["waste"], rng.currency),
        chart,
        columns,
        df.to_dict("records"),
        VIEW_TITLES[state.view],
    )


def cards(exact: dict[str, Decimal], waste: float, currency: str) -> html.Div:
    """Total and the four parts that add up to it, in one row, rounded together to whole units
    (`round_parts`: the parts shown add up to the total shown); waste apart, as part of that spend."""
    shown = dict(
        zip(GROUPS, round_parts([exact[g] for g in GROUPS], exact["total"], unit=Decimal(1)), strict=True)
    )
    totals = {**shown, "total": round_money(exact["total"], Decimal(1)), "waste": waste}

    def money(value: float | Decimal) -> str:
        return format_money(value, currency, decimals=0)

    parts = [
        widgets.stat("Direct", money(totals["direct"]), tone="direct", hint="resources tagged with the team"),
        widgets.stat(
            "Shared", money(totals["shared"]), tone="shared", hint="shared nodes split by GPU-seconds held"
        ),
        widgets.stat(
            "Idle",
            money(totals["idle"]),
            tone="idle",
            hint="GPU time paid for on shared nodes that no job held",
        ),
        widgets.stat(
            "Unallocated",
            money(totals["unallocated"]),
            tone="unallocated",
            hint="untagged resources, taxes, credits, commitment fees",
        ),
    ]
    return html.Div(
        className="card-groups",
        children=[
            html.Div(
                className="stats sum",
                children=[widgets.stat("Total", money(totals["total"]), tone="total"), *parts],
                title="Direct + Shared + Idle + Unallocated = Total",
            ),
            html.Div(
                className="stats apart",
                children=[
                    widgets.stat("Of which wasted", money(totals["waste"]), tone="waste", hint=WASTE_HINT),
                ],
            ),
        ],
    )


def billed_note(queries: Queries, state: CostState) -> Any:
    """Under Billed, why so much is unallocated and teams carry less: the commitment fees."""
    if state.filter.basis != "billed":
        return None
    currency = queries.data_range().currency
    unallocated = queries.unallocated(state.filter)
    fees = float(unallocated[unallocated.line_item_type.isin(COMMITMENT_TYPES)].cost.sum())
    total = queries.cost_totals(state.filter)["total"]
    share = f" ({fees / total:.0%} of this range's spend)" if total else ""
    return html.Div(
        id=ids.COST_BILLED_NOTE,
        className="note",
        children=[
            html.Strong("Billed is the invoice's view. "),
            f"Savings Plan and Reserved Instance commitments are billed as fees on the commitment itself, "
            f"which carries no team tag: {format_money(fees, currency)}{share} sits in unallocated. "
            "The usage they cover is billed to teams at $0 (the covered usage is negated), so teams look "
            "cheaper here. Amortized spreads each commitment over the usage it covered, which is who used "
            "it; only the unused part of a commitment stays unallocated there.",
        ],
    )


def _column(name: str, currency: str) -> dict[str, Any]:
    column: dict[str, Any] = {"name": LABELS.get(name, name), "id": name}
    if name in MONEY_COLUMNS:
        column.update(type="numeric", format=widgets.money_format(currency))
    elif name == "gpu_hours":
        column.update(type="numeric", format=widgets.ONE_DECIMAL)
    elif name == "days":
        column.update(type="numeric", format=widgets.INTEGER)
    return column


def csv_name(state: CostState) -> str:
    """`gpulens-cost-teams-amortized-20261001-20261031-all-teams.csv`: the view, the cost basis, the
    days and the teams it holds, so two downloads of different views never read as the same file."""
    f = state.filter
    teams = "-".join(f.teams) if f.teams and state.view in ("teams", "jobs") else "all-teams"
    return f"gpulens-cost-{state.view}-{f.basis}-{f.start:%Y%m%d}-{f.end:%Y%m%d}-{_file_safe(teams)}.csv"


def _file_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


def csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The table as saved: text cells that a spreadsheet would run as a formula (a tag value such as
    `=HYPERLINK(...)`) start with an apostrophe; numbers are untouched."""
    out = df.copy()
    for name in out.columns:
        # Text columns are `object` or pandas' `str` dtype, depending on the pandas version.
        if not pd.api.types.is_numeric_dtype(out[name]):
            out[name] = [csv_text(v) if isinstance(v, str) else v for v in out[name]]
    return out


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
        Output(ids.COST_NOTE, "children"),
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
        frame = csv_frame(table_frame(queries, state))
        return dcc.send_data_frame(frame.to_csv, csv_name(state), index=False)

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
        target = drill_target(click, cell, rows, view, queries.data_range().teams)
        if target in DRILL_VIEWS:
            return no_update, DRILL_VIEWS[target]
        return ([target], "jobs") if target else (no_update, no_update)


def drill_target(
    click: dict[str, Any] | None,
    cell: dict[str, Any] | None,
    rows: list[dict[str, Any]] | None,
    view: str,
    teams: tuple[str, ...],
) -> str | None:
    """The team a click on a chart bar (team mode) or a team-table row asks to drill into, or the
    label `(idle)` / `(unallocated)` of those rows (their own views)."""
    from dash import ctx

    if ctx.triggered_id == ids.COST_CHART and click:
        name = click["points"][0].get("customdata")
        if f"({name})" in DRILL_VIEWS:
            return f"({name})"
        return name if name in teams else None
    if ctx.triggered_id == ids.COST_TABLE and cell and rows and view == "teams":
        row = cell.get("row", -1)
        team = rows[row].get("team") if 0 <= row < len(rows) else None
        return team if team in teams or team in DRILL_VIEWS else None
    return None
