"""Team usage: GPU-hours held, SM activity while held, waste (held x (1 - SM activity)), and both in money
(x the price of a GPU-second, `gpulens prices`)."""

from __future__ import annotations

from gpulens import metrics as m
from gpulens.dashboards.grafana.common import (
    DOCS,
    GPU_SCOPE,
    LAST_VALUE,
    MONEY_UNIT,
    PRICES_HOW,
    RATIO_STEPS,
    SM_ACTIVITY_WHY,
    TEAM_UID,
    TRAINING_UID,
    activity_of_held,
    held,
    held_increase,
    idle_of_held,
    in_cluster,
    links,
    priced,
    variables,
)
from gpulens.dashboards.grafana.model import Dashboard, DataLink, Panel, Step, Target, row
from gpulens.dashboards.rules.promql import sel

W = "$__rate_interval"
# Waste is summed over 5-minute slices so that a GPU passed between teams is charged to whoever
# held it in each slice, not to the range's mean.
WASTE_STEP = "5m"
WASTE_STEP_SECONDS = 300
WASTE_WHY = (
    "Waste = GPU time held x (1 - mean SM activity), the cost report's definition (docs/design.md §6)."
)
BAR = {
    "displayMode": "gradient",
    "orientation": "horizontal",
    "showUnfilled": True,
    "reduceOptions": LAST_VALUE,
}


def gpu_hours(by: str) -> str:
    increase = in_cluster(f"increase({sel(m.GPU_HELD_SECONDS.name, GPU_SCOPE)}[$__range])")
    return f"sum by ({by}) ({increase}) / 3600"


def activity_while_held(by: str, window: str) -> str:
    return f"sum by ({by}) (\n{activity_of_held(window)}\n)\n/\nsum by ({by}) (\n{held(window)}\n)"


def wasted_hours(by: str) -> str:
    slices = f"sum_over_time((\n{idle_of_held(WASTE_STEP)}\n)[$__range:{WASTE_STEP}])"
    return f"sum by ({by}) (\n{slices}\n) * {WASTE_STEP_SECONDS} / 3600"


def spend(by: str) -> str:
    """Money: GPU-seconds held in the range x the price of a GPU-second."""
    return f"sum by ({by}) (\n{priced(held_increase('$__range'))}\n)"


def wasted_money(by: str) -> str:
    """Money: held x (1 - SM activity) x price, summed over 5-minute slices as the wasted hours are."""
    slices = f"sum_over_time((\n{priced(idle_of_held(WASTE_STEP))}\n)[$__range:{WASTE_STEP}])"
    return f"sum by ({by}) (\n{slices}\n) * {WASTE_STEP_SECONDS}"


def range_panels() -> tuple[Panel, ...]:
    """Per-team totals over the dashboard's time range."""
    return (
        row("In the selected time range"),
        Panel(
            "GPU-hours held, by team",
            "bargauge",
            "GPU-hours each team's jobs held GPUs in the time range "
            "(increase of gpulens_gpu_held_seconds_total): what the cost attribution splits shared nodes by.",
            (Target(gpu_hours("team"), "{{team}}", instant=True),),
            unit="h",
            min=0,
            width=8,
            options=BAR,
        ),
        Panel(
            "Wasted GPU-hours, by team",
            "bargauge",
            WASTE_WHY[:-1] + ", in GPU-hours: " + SM_ACTIVITY_WHY,
            (Target(wasted_hours("team"), "{{team}}", instant=True),),
            unit="h",
            min=0,
            width=8,
            options=BAR,
        ),
        Panel(
            "SM activity while held, by team",
            "bargauge",
            "Mean SM activity over the GPU time each team held, last 5 minutes: " + SM_ACTIVITY_WHY,
            (Target(activity_while_held("team", "5m"), "{{team}}", instant=True),),
            unit="percentunit",
            min=0,
            max=1,
            width=8,
            thresholds=RATIO_STEPS,
            options=BAR,
        ),
        money_by_team(
            "Spend, by team",
            f"GPU time each team held in the range x the price of a GPU-second {PRICES_HOW}.",
            spend("team"),
        ),
        money_by_team(
            "Waste in money, by team",
            f"Held x (1 - SM activity) x the price of a GPU-second {PRICES_HOW}, with " + SM_ACTIVITY_WHY,
            wasted_money("team"),
            thresholds=(Step("orange"),),
        ),
    )


def money_by_team(
    title: str, description: str, expr: str, thresholds: tuple[Step, ...] = Panel.thresholds
) -> Panel:
    """One bar of money per team over the time range (`expr` is by team)."""
    return Panel(
        title,
        "bargauge",
        description,
        (Target(expr, "{{team}}", instant=True),),
        unit=MONEY_UNIT,
        min=0,
        decimals=2,
        width=12,
        options=BAR,
        thresholds=thresholds,
    )


def trend_panels() -> tuple[Panel, ...]:
    return (
        row("Over time"),
        Panel(
            "GPUs held, by team",
            "timeseries",
            "GPUs held by each team's jobs (GPU-seconds held per second).",
            (Target(f"sum by (team) ({held(W)})", "{{team}}"),),
            min=0,
            width=12,
            custom={"fillOpacity": 60, "stacking": {"mode": "normal"}},
        ),
        Panel(
            "SM activity while held, by team",
            "timeseries",
            SM_ACTIVITY_WHY,
            (Target(activity_while_held("team", W), "{{team}}"),),
            unit="percentunit",
            min=0,
            max=1,
            width=12,
            thresholds=RATIO_STEPS,
            custom={"thresholdsStyle": {"mode": "dashed"}},
        ),
        Panel(
            "GPUs held but idle, by team",
            "timeseries",
            "Held GPUs x (1 - SM activity), the rate at which each team accrues waste in GPUs: "
            + SM_ACTIVITY_WHY,
            (Target(f"sum by (team) (\n{idle_of_held(W)}\n)", "{{team}}"),),
            min=0,
            width=12,
            custom={"fillOpacity": 60, "stacking": {"mode": "normal"}},
        ),
        Panel(
            "Spend rate, by team (per hour)",
            "timeseries",
            f"Money per hour each team's held GPUs cost at the price of a GPU-second {PRICES_HOW}.",
            (Target(f"sum by (team) (\n{priced(held(W))}\n) * 3600", "{{team}}"),),
            unit=MONEY_UNIT,
            min=0,
            width=12,
            custom={"fillOpacity": 60, "stacking": {"mode": "normal"}},
        ),
    )


def job_table() -> tuple[Panel, ...]:
    """One row per job: GPU-hours, waste and SM activity, merged from three instant queries."""
    return (
        row("Jobs"),
        Panel(
            "Jobs in the time range",
            "table",
            "Per job: GPU-hours held and wasted, their cost, and SM activity while held (last 5 minutes); "
            "click a job to open it; " + SM_ACTIVITY_WHY,
            (
                Target(gpu_hours("team, job_id"), instant=True, table=True),
                Target(wasted_hours("team, job_id"), instant=True, table=True),
                Target(activity_while_held("team, job_id", "5m"), instant=True, table=True),
                Target(spend("team, job_id"), instant=True, table=True),
                Target(wasted_money("team, job_id"), instant=True, table=True),
            ),
            width=24,
            height=10,
            links=(
                DataLink(
                    "Open job ${__data.fields.job_id}",
                    f"/d/{TRAINING_UID}?var-job_id=${{__data.fields.job_id}}&${{__url_time_range}}",
                ),
            ),
            transformations=(
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {
                            "Value #A": "GPU-hours held",
                            "Value #B": "wasted GPU-hours",
                            "Value #C": "SM activity",
                            "Value #D": "spend",
                            "Value #E": "waste in money",
                        },
                    },
                },
            ),
            overrides=(
                {
                    "matcher": {"id": "byName", "options": "SM activity"},
                    "properties": [
                        {"id": "unit", "value": "percentunit"},
                        {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                        {
                            "id": "thresholds",
                            "value": {
                                "mode": "absolute",
                                "steps": [
                                    {"color": "red", "value": None},
                                    {"color": "orange", "value": 0.25},
                                    {"color": "green", "value": 0.5},
                                ],
                            },
                        },
                    ],
                },
                {
                    "matcher": {"id": "byRegexp", "options": ".*GPU-hours.*"},
                    "properties": [{"id": "unit", "value": "h"}, {"id": "decimals", "value": 1}],
                },
                {
                    "matcher": {"id": "byRegexp", "options": "spend|waste in money"},
                    "properties": [{"id": "unit", "value": MONEY_UNIT}, {"id": "decimals", "value": 2}],
                },
            ),
            options={"sortBy": [{"displayName": "wasted GPU-hours", "desc": True}]},
        ),
    )


def dashboard() -> Dashboard:
    return Dashboard(
        TEAM_UID,
        "gpulens / Team usage",
        "GPU-hours each team held, how busy it kept them, and the waste: the usage side of cost attribution.",
        range_panels() + trend_panels() + job_table(),
        variables(),
        links=links(TEAM_UID),
        time_from="now-7d",
        refresh="5m",
        runbook=f"{DOCS}/dashboards.md#the-dashboards",
    )
