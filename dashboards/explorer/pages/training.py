"""/training: runs with their loss curves, anomalies marked, step time and MFU beside them.

Runs with an anomaly (the `divergent_runs` of `gpulens flags`) come first, with the money the job was
allocated from the onset day on.
URL: `?team=a,b&run=JOB_ID&compare=A,B&x=step|time&scale=linear|log&smooth=0.6`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update

from gpulens.dashboards.explorer import figures, ids, urlstate, widgets
from gpulens.dashboards.explorer.figures import CurveOptions
from gpulens.dashboards.explorer.queries import Queries

SMOOTHING = (0.0, 0.6, 0.9, 0.99)  # TensorBoard's slider: the EMA weight
MAX_COMPARE = 5


def columns(currency: str) -> list[dict[str, Any]]:
    """The runs table's columns; money in the billing currency."""
    money = widgets.money_format(currency)
    return [{**c, "format": money} if c["id"] == "cost_after_onset" else c for c in COLUMNS]


COLUMNS: list[dict[str, Any]] = [
    {"name": "Run", "id": "job_id"},
    {"name": "Team", "id": "team"},
    {"name": "Anomalies", "id": "anomalies"},
    {"name": "Onset step", "id": "onset_step", "type": "numeric", "format": widgets.INTEGER},
    {"name": "Cost since onset", "id": "cost_after_onset", "type": "numeric"},
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
    options = curve_options(params)
    compare = [c for c in urlstate.get_list(params, "compare", runs.job_id) if c != run][:MAX_COMPARE]
    ignored = [
        f"{key}={','.join(bad)} (no such {what})"
        for key, allowed, what in (
            ("team", rng.teams, "team in the warehouse"),
            ("run", runs.job_id, "run for these teams"),
            ("compare", runs.job_id, "run for these teams"),
        )
        if (bad := urlstate.unknown_list_values(params, key, allowed))
    ]
    controls = html.Div(
        className="filters",
        children=[
            widgets.teams_field(ids.TRAIN_TEAMS, rng.teams, teams),
            widgets.field(
                "Run",
                dcc.Dropdown(id=ids.TRAIN_RUN, options=list(runs.job_id), value=run, clearable=False),
                width="wide",
            ),
            widgets.field(
                "Overlay runs",
                widgets.multi_select(ids.TRAIN_COMPARE, runs.job_id, compare, "compare with ..."),
                width="wide",
            ),
        ],
    )
    curve_controls = html.Div(
        className="filters train-controls",
        children=[
            widgets.field(
                "X axis",
                widgets.radio(ids.TRAIN_XAXIS, [("step", "Step"), ("time", "Wall clock")], options.x),
            ),
            widgets.field(
                "Loss scale",
                widgets.radio(ids.TRAIN_YSCALE, [("linear", "Linear"), ("log", "Log")], _scale(options)),
            ),
            widgets.field(
                "Smoothing",
                widgets.radio(
                    ids.TRAIN_SMOOTH,
                    [(f"{w:g}", "off" if w == 0 else f"{w:g}") for w in SMOOTHING],
                    f"{options.smooth:g}",
                ),
            ),
        ],
    )
    return html.Div(
        [
            controls,
            widgets.url_note(ids.TRAIN_URL_NOTE, ignored),
            widgets.panel(
                "Runs (anomalies first)",
                widgets.table(
                    ids.TRAIN_TABLE,
                    columns=columns(rng.currency),
                    page_size=10,
                    style_data_conditional=_highlight(),
                ),
            ),
            goodput_panels(),
            curve_controls,
            widgets.loading(
                widgets.two_columns(
                    widgets.panel(
                        "Loss (anomaly where detected; last good step = the loss minimum before it)",
                        widgets.graph(ids.TRAIN_LOSS),
                    ),
                    widgets.panel("Step time and MFU", widgets.graph(ids.TRAIN_PERF)),
                ),
                widgets.panel("Gradient norm and learning rate", widgets.graph(ids.TRAIN_OPTIMIZER)),
                element_id=ids.TRAIN_LOADING,
            ),
        ]
    )


def goodput_panels() -> html.Div:
    """Goodput (docs/design.md §8): the selected run's wall time by bucket with its badput in money and
    step vs effective MFU, and the fleet's badput by team and cause."""
    return widgets.two_columns(
        widgets.panel(
            "Goodput of the run: where its wall time went and what the lost time cost",
            widgets.graph(ids.TRAIN_GOODPUT),
        ),
        widgets.panel("Badput by team and cause", widgets.graph(ids.TRAIN_BADPUT)),
    )


def render_goodput(queries: Queries, teams: tuple[str, ...], run: str | None) -> tuple[Any, Any]:
    currency = queries.data_range().currency
    runs = queries.goodput(teams)
    chosen = runs[runs.job_id == run]
    bar = (
        figures.goodput_bar(chosen.iloc[0].to_dict(), currency=currency)
        if len(chosen)
        else figures.empty("No run, phase or timed step records for this run")
    )
    return bar, figures.badput_by_team(runs, currency=currency)


def _highlight() -> list[dict[str, Any]]:
    return [{"if": {"filter_query": '{anomalies} != ""'}, "backgroundColor": "#fef2f2", "color": "#991b1b"}]


def curve_options(params: Mapping[str, str]) -> CurveOptions:
    smooth = urlstate.get_float(params, "smooth", 0.0, 0.0, 0.99)
    return CurveOptions(
        x=urlstate.get_choice(params, "x", ("step", "time"), "step"),
        log=urlstate.get_choice(params, "scale", ("linear", "log"), "linear") == "log",
        smooth=smooth if smooth in SMOOTHING else 0.0,
    )


def make_options(x: str | None, scale: str | None, smooth: str | None) -> CurveOptions:
    try:
        weight = float(smooth or 0)
    except ValueError:
        weight = 0.0
    return CurveOptions(
        x=x if x in ("step", "time") else "step",
        log=scale == "log",
        smooth=weight if weight in SMOOTHING else 0.0,
    )


def _scale(options: CurveOptions) -> str:
    return "log" if options.log else "linear"


def render(
    queries: Queries,
    teams: tuple[str, ...],
    run: str | None,
    compare: tuple[str, ...] = (),
    options: CurveOptions = CurveOptions(),
) -> tuple[Any, ...]:
    """Rendered once per filter and warehouse version (see `Queries.memo`)."""
    return queries.memo(
        ("training", teams, run, compare, options), lambda: _render(queries, teams, run, compare, options)
    )


def _render(
    queries: Queries, teams: tuple[str, ...], run: str | None, compare: tuple[str, ...], options: CurveOptions
) -> tuple[Any, ...]:
    """Table rows, run options, the selected run, its loss, step-time/MFU and grad-norm/lr figures."""
    runs = queries.runs(teams)
    choices = list(runs.job_id)
    if run not in choices:
        run = choices[0] if choices else None
    if run is None:
        blank = figures.empty("No runs for these teams")
        return [], choices, None, blank, blank, blank
    rows = runs.drop(columns=["started", "last_seen", "flagged"]).astype(object)
    rows = rows.where(rows.notna(), None)
    curve = queries.curve(run)
    # Overlaid runs may belong to teams outside the filter: a comparison is chosen by name.
    others = {job: queries.curve(job) for job in compare if job != run}
    return (
        rows.to_dict("records"),
        choices,
        run,
        figures.loss_curve(curve, queries.anomalies(run), job_id=run, options=options, others=others),
        figures.step_perf(curve, job_id=run, options=options),
        figures.optimizer(curve, job_id=run, options=options),
    )


CURVE_INPUTS = [
    Input(ids.TRAIN_TEAMS, "value"),
    Input(ids.TRAIN_RUN, "value"),
    Input(ids.TRAIN_COMPARE, "value"),
    Input(ids.TRAIN_XAXIS, "value"),
    Input(ids.TRAIN_YSCALE, "value"),
    Input(ids.TRAIN_SMOOTH, "value"),
]


def register(app: Dash, queries: Queries) -> None:
    @app.callback(
        Output(ids.TRAIN_TABLE, "data"),
        Output(ids.TRAIN_RUN, "options"),
        Output(ids.TRAIN_RUN, "value"),
        Output(ids.TRAIN_LOSS, "figure"),
        Output(ids.TRAIN_PERF, "figure"),
        Output(ids.TRAIN_OPTIMIZER, "figure"),
        *CURVE_INPUTS,
    )
    def _render(
        teams: list[str] | None,
        run: str | None,
        compare: list[str] | None,
        x: str | None,
        scale: str | None,
        smooth: str | None,
    ) -> tuple[Any, ...]:
        others = tuple(sorted(compare or ()))[:MAX_COMPARE]
        return render(queries, tuple(sorted(teams or ())), run, others, make_options(x, scale, smooth))

    @app.callback(
        Output(ids.TRAIN_GOODPUT, "figure"),
        Output(ids.TRAIN_BADPUT, "figure"),
        Input(ids.TRAIN_TEAMS, "value"),
        Input(ids.TRAIN_RUN, "value"),
    )
    def _goodput(teams: list[str] | None, run: str | None) -> tuple[Any, Any]:
        return render_goodput(queries, tuple(sorted(teams or ())), run)

    @app.callback(Output(ids.URL, "search", allow_duplicate=True), *CURVE_INPUTS, prevent_initial_call=True)
    def _url(
        teams: list[str] | None,
        run: str | None,
        compare: list[str] | None,
        x: str | None,
        scale: str | None,
        smooth: str | None,
    ) -> str:
        options = make_options(x, scale, smooth)
        return urlstate.encode(
            {
                "team": sorted(teams or ()),
                "run": run,
                "compare": sorted(compare or ()),
                "x": None if options.x == "step" else options.x,
                "scale": None if not options.log else "log",
                "smooth": options.smooth or None,
            }
        )

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
