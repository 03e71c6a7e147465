"""/training: runs with their loss curves, anomalies marked, step time and MFU beside them.

Runs with an anomaly (the `divergent_runs` of `gpulens flags`) come first, with the money the job was
allocated from the onset day on. URL: `?team=a,b&run=JOB_ID`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update

from gpulens.dashboards.explorer import figures, ids, urlstate, widgets
from gpulens.dashboards.explorer.queries import Queries

COLUMNS = [
    {"name": "Run", "id": "job_id"},
    {"name": "Team", "id": "team"},
    {"name": "Anomalies", "id": "anomalies"},
    {"name": "Onset step", "id": "onset_step", "type": "numeric", "format": widgets.INTEGER},
    {"name": "Cost since onset", "id": "cost_after_onset", "type": "numeric", "format": widgets.MONEY},
    {"name": "Steps", "id": "steps", "type": "numeric", "format": widgets.INTEGER},
    {"name": "Last loss", "id": "last_loss", "type": "numeric", "format": widgets.number(3).nully("NaN")},
    {"name": "Step time (s)", "id": "step_seconds", "type": "numeric", "format": widgets.number(3)},
    {"name": "MFU", "id": "mfu", "type": "numeric", "format": widgets.PERCENT},
]


def layout(queries: Queries, params: Mapping[str, str]) -> html.Div:
    rng = queries.data_range()
    if queries.counts()["train_metrics"] == 0:
        return widgets.empty_state(
            ids.TRAIN_EMPTY,
            "No training runs yet",
            [
                "gpulens ingest runs PATH/TO/run.jsonl ...      # the trainer's JSONL log (--log FILE)",
                "gpulens ingest runs losses.csv                 # or CSV: step,loss[,job_id,team,ts]",
            ],
        )
    teams = urlstate.get_list(params, "team", rng.teams)
    runs = queries.runs(tuple(sorted(teams)))
    run = (
        params.get("run")
        if params.get("run") in set(runs.job_id)
        else (runs.job_id.iloc[0] if len(runs) else None)
    )
    controls = html.Div(
        className="filters",
        children=[
            widgets.field(
                "Teams",
                dcc.Dropdown(
                    id=ids.TRAIN_TEAMS,
                    options=list(rng.teams),
                    value=teams,
                    multi=True,
                    placeholder="all teams",
                ),
                width="wide",
            ),
            widgets.field(
                "Run",
                dcc.Dropdown(id=ids.TRAIN_RUN, options=list(runs.job_id), value=run, clearable=False),
                width="wide",
            ),
        ],
    )
    return html.Div(
        [
            controls,
            widgets.panel(
                "Runs (anomalies first)",
                widgets.table(
                    ids.TRAIN_TABLE, columns=COLUMNS, page_size=10, style_data_conditional=_highlight()
                ),
            ),
            html.Div(
                className="two-col",
                children=[
                    widgets.panel("Loss", dcc.Graph(id=ids.TRAIN_LOSS, config=widgets.GRAPH_CONFIG)),
                    widgets.panel(
                        "Step time and MFU", dcc.Graph(id=ids.TRAIN_PERF, config=widgets.GRAPH_CONFIG)
                    ),
                ],
            ),
        ]
    )


def _highlight() -> list[dict[str, Any]]:
    return [{"if": {"filter_query": '{anomalies} != ""'}, "backgroundColor": "#fef2f2", "color": "#991b1b"}]


def render(queries: Queries, teams: tuple[str, ...], run: str | None) -> tuple[Any, ...]:
    """Rendered once per filter and warehouse version (see `Queries.memo`)."""
    return queries.memo(("training", teams, run), lambda: _render(queries, teams, run))


def _render(queries: Queries, teams: tuple[str, ...], run: str | None) -> tuple[Any, ...]:
    """Table rows, run options, the selected run, its loss figure and its step-time/MFU figure."""
    runs = queries.runs(teams)
    options = list(runs.job_id)
    if run not in options:
        run = options[0] if options else None
    if run is None:
        blank = figures.empty("No runs for these teams")
        return [], options, None, blank, blank
    rows = runs.drop(columns=["started", "last_seen", "flagged"]).astype(object)
    rows = rows.where(rows.notna(), None)
    curve = queries.curve(run)
    return (
        rows.to_dict("records"),
        options,
        run,
        figures.loss_curve(curve, queries.anomalies(run), job_id=run),
        figures.step_perf(curve, job_id=run),
    )


def register(app: Dash, queries: Queries) -> None:
    @app.callback(
        Output(ids.TRAIN_TABLE, "data"),
        Output(ids.TRAIN_RUN, "options"),
        Output(ids.TRAIN_RUN, "value"),
        Output(ids.TRAIN_LOSS, "figure"),
        Output(ids.TRAIN_PERF, "figure"),
        Input(ids.TRAIN_TEAMS, "value"),
        Input(ids.TRAIN_RUN, "value"),
    )
    def _render(teams: list[str] | None, run: str | None) -> tuple[Any, ...]:
        return render(queries, tuple(sorted(teams or ())), run)

    @app.callback(
        Output(ids.URL, "search", allow_duplicate=True),
        Input(ids.TRAIN_TEAMS, "value"),
        Input(ids.TRAIN_RUN, "value"),
        prevent_initial_call=True,
    )
    def _url(teams: list[str] | None, run: str | None) -> str:
        return urlstate.encode({"team": sorted(teams or ()), "run": run})

    @app.callback(
        Output(ids.TRAIN_RUN, "value", allow_duplicate=True),
        Input(ids.TRAIN_TABLE, "active_cell"),
        State(ids.TRAIN_TABLE, "derived_viewport_data"),
        prevent_initial_call=True,
    )
    def _pick(cell: dict[str, Any] | None, rows: list[dict[str, Any]] | None) -> Any:
        if not cell or not rows or not 0 <= cell.get("row", -1) < len(rows):
            return no_update
        return rows[cell["row"]]["job_id"]
