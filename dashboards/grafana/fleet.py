"""Fleet overview: how many GPUs are busy, held but not busy, or idle; SM activity; who to look at."""

from __future__ import annotations

from gpulens import metrics as m
from gpulens.dashboards.grafana.common import (
    DOCS,
    FLEET_UID,
    GPU_SCOPE,
    LAST_VALUE,
    MONEY_UNIT,
    NODE,
    PRICES_HOW,
    RATIO_STEPS,
    RUNBOOKS,
    SM_ACTIVITY_WHY,
    STAT,
    TRAINING_UID,
    gpu_activity,
    held,
    idle_of_held,
    in_cluster,
    links,
    priced,
    variables,
)
from gpulens.dashboards.grafana.model import Dashboard, DataLink, Panel, Step, Target, Variable, row
from gpulens.dashboards.rules.promql import GPU_KEY, sel

W = "$__rate_interval"
NON_RECOVERABLE = f'{NODE}, recoverable="false"'
THRESHOLD = Variable(
    "threshold",
    "SM threshold",
    "custom",
    query=", ".join(str(t) for t in sorted({0.1, m.SM_THRESHOLD_DEFAULT, 0.5, 0.75})),
    default=str(m.SM_THRESHOLD_DEFAULT),
    description="Mean SM activity below which a held GPU counts as not busy (docs/design.md §7).",
)


def gpu_states(window: str) -> str:
    """One series per GPU state (busy, held not busy, idle, not answering), counting GPUs, over `window`."""
    activity, holding = gpu_activity(window), held(window)
    up, lost = (in_cluster(f"{sel(m.GPU_UP.name, GPU_SCOPE)} == {v}") for v in (1, 0))
    # A GPU that stopped answering may still be held; it counts as not answering, not as held.
    busy = f"(({activity}) >= $threshold) and on ({GPU_KEY}) ({holding}) and on ({GPU_KEY}) ({up})"
    lazy = f"(({activity}) < $threshold) and on ({GPU_KEY}) ({holding}) and on ({GPU_KEY}) ({up})"
    idle = f"({up}) unless on ({GPU_KEY}) ({holding})"
    parts = [
        f'label_replace({expr}, "state", "{state}", "", "")'
        for expr, state in (
            (busy, "busy"),
            (lazy, "held, not busy"),
            (idle, "idle (not held)"),
            (lost, "not answering"),
        )
    ]
    return "count by (state) (\n" + "\nor\n".join(parts) + "\n)"


def underutilized() -> str:
    """GPUs held by one job for the last hour with mean SM activity under $threshold (docs/design.md §7)."""
    holding = held("1h", ">= 0.95")  # held for the hour, allowing for scrape jitter (as the alert)
    return (
        f"({gpu_activity('1h')})\n* on ({GPU_KEY}) group_right (source)\nclamp({holding}, 1, 1)\n< $threshold"
    )


STATE_DESCRIPTION = (
    "GPUs by state, busy (held, at or above the SM threshold), held but not busy, idle (no job holds it) "
    "or not answering (gpulens_gpu_up 0), measured by " + SM_ACTIVITY_WHY
)
# Fixed colours per state, the same on every panel (green busy, orange held not busy, blue idle, red lost).
STATE_COLORS = {
    "busy": "green",
    "held, not busy": "orange",
    "idle (not held)": "blue",
    "not answering": "red",
}
STATE_OVERRIDES = tuple(
    {
        "matcher": {"id": "byName", "options": state},
        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
    }
    for state, color in STATE_COLORS.items()
)


def now_panels() -> tuple[Panel, ...]:
    """One-number answers for the last 5 minutes."""
    activity_now = gpu_activity("5m")
    return (
        row("Now"),
        Panel(
            "GPUs by state",
            "stat",
            STATE_DESCRIPTION,
            (Target(gpu_states("5m"), "{{state}}", instant=True),),
            width=10,
            height=5,
            options=STAT | {"textMode": "value_and_name"},
            thresholds=(Step("blue"),),
            overrides=STATE_OVERRIDES,
        ),
        Panel(
            "Fleet mean SM activity",
            "stat",
            "Mean over all selected GPUs, last 5 minutes: " + SM_ACTIVITY_WHY,
            (Target(f"avg(\n{activity_now}\n)", instant=True),),
            unit="percentunit",
            width=5,
            height=5,
            min=0,
            max=1,
            thresholds=RATIO_STEPS,
            options={"colorMode": "value", "graphMode": "area", "reduceOptions": LAST_VALUE},
        ),
        Panel(
            "GPUs not answering",
            "stat",
            "GPUs whose gpulens_gpu_up is 0 (fallen off the bus, driver lost them); GpuLost fires "
            f"after a minute ([runbook]({RUNBOOKS}#gpulost)).",
            (Target(f"sum(1 - ({in_cluster(sel(m.GPU_UP.name, NODE))}))", instant=True),),
            width=4,
            height=5,
            thresholds=(Step("green"), Step("red", 1)),
            no_value="0",
            options=STAT,
        ),
        Panel(
            "Non-recoverable XIDs",
            "stat",
            "XID events NVIDIA's catalog classes as not recoverable by the application, since each agent "
            f"started ([runbook]({RUNBOOKS}#gpuxidnonrecoverable)).",
            (Target(f"sum({in_cluster(sel(m.GPU_XID_ERRORS.name, NON_RECOVERABLE))})", instant=True),),
            width=5,
            height=5,
            thresholds=(Step("green"), Step("red", 1)),
            no_value="0",
            options=STAT,
        ),
        per_hour_stat(
            "GPU spend now (per hour)",
            f"Held GPUs x the price of a GPU-second of their instance type and team {PRICES_HOW}, per hour.",
            held("5m"),
            "blue",
        ),
        per_hour_stat(
            "Wasted now (per hour)",
            f"Held x (1 - SM activity) x the price of a GPU-second {PRICES_HOW}, per hour, with "
            + SM_ACTIVITY_WHY,
            idle_of_held("5m"),
            "orange",
        ),
    )


def per_hour_stat(title: str, description: str, gpus: str, color: str) -> Panel:
    """The fleet's money per hour now: the GPUs of `gpus` priced per GPU-second, summed, x 3600."""
    return Panel(
        title,
        "stat",
        description,
        (Target(f"sum(\n{priced(gpus)}\n) * 3600", instant=True),),
        unit=MONEY_UNIT,
        decimals=2,
        width=12,
        height=4,
        thresholds=(Step(color),),
        options=STAT | {"colorMode": "value"},
    )


def trend_panels() -> tuple[Panel, ...]:
    return (
        row("Over time"),
        Panel(
            "GPUs: busy vs held vs idle",
            "timeseries",
            STATE_DESCRIPTION,
            (Target(gpu_states(W), "{{state}}"),),
            width=12,
            custom={"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal"}, "lineWidth": 0},
            overrides=STATE_OVERRIDES,
        ),
        Panel(
            "SM activity across GPUs",
            "heatmap",
            "Distribution of per-GPU mean SM activity over time, a band near 0 being GPUs paid for and "
            "idle: " + SM_ACTIVITY_WHY,
            (Target(gpu_activity(W), "{{node}}/{{gpu}} ({{source}})"),),
            unit="percentunit",
            width=12,
            options={
                "calculate": True,
                "calculation": {"yBuckets": {"mode": "count", "value": "10"}},
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                "yAxis": {"unit": "percentunit", "min": 0, "max": 1},
                "cellGap": 1,
                "tooltip": {"show": True, "yHistogram": True},
            },
        ),
        Panel(
            "SM activity vs GPU utilization (fleet mean)",
            "timeseries",
            "The gap between the two lines is compute that utilization reports as used but no SM "
            "performs: " + SM_ACTIVITY_WHY,
            (
                Target(f"avg(\n{gpu_activity(W)}\n)", "SM activity"),
                Target(
                    f"avg({in_cluster(f'avg_over_time({sel(m.GPU_UTILIZATION.name, NODE)}[{W}])')})",
                    "GPU utilization (coarse)",
                ),
            ),
            unit="percentunit",
            min=0,
            max=1,
            width=24,
            thresholds=RATIO_STEPS,
            custom={"fillOpacity": 10, "thresholdsStyle": {"mode": "dashed"}},
        ),
    )


def attention_panels() -> tuple[Panel, ...]:
    """Where to look: underutilized GPUs and XID errors."""
    xid = m.GPU_XID_ERRORS.name
    return (
        row("Attention"),
        Panel(
            "Underutilized GPUs (last hour)",
            "table",
            "GPUs a job held for the whole last hour below the SM threshold, the rule GpuUnderutilized and "
            f"`gpulens flags` use ([runbook]({RUNBOOKS}#gpuunderutilized)); " + SM_ACTIVITY_WHY,
            (Target(underutilized(), instant=True, table=True),),
            unit="percentunit",
            width=14,
            height=9,
            thresholds=RATIO_STEPS,
            custom={"cellOptions": {"type": "color-text"}},
            links=(
                DataLink(
                    "Open job ${__data.fields.job_id}",
                    f"/d/{TRAINING_UID}?var-job_id=${{__data.fields.job_id}}&${{__url_time_range}}",
                ),
            ),
            transformations=(
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "uuid": True},
                        "renameByName": {"Value": "mean SM activity"},
                    },
                },
            ),
            options={"sortBy": [{"displayName": "mean SM activity", "desc": False}]},
        ),
        Panel(
            "XID errors",
            "timeseries",
            "XID events per GPU, by XID and the action NVIDIA's catalog prescribes (restart_app, reset_gpu, "
            f"reboot_node, investigate) ([runbook]({RUNBOOKS}#gpuxidnonrecoverable)).",
            (
                Target(
                    f"sum by (node, gpu, xid, action) ({in_cluster(f'increase({sel(xid, NODE)}[{W}])')})",
                    "{{node}}/{{gpu}} XID {{xid}} ({{action}})",
                ),
            ),
            width=10,
            height=9,
            custom={"drawStyle": "bars", "fillOpacity": 80},
        ),
    )


def dashboard() -> Dashboard:
    return Dashboard(
        FLEET_UID,
        "gpulens / Fleet overview",
        "How much of the fleet is doing work: GPUs busy, held but idle, or free; SM activity; XID errors.",
        now_panels() + trend_panels() + attention_panels(),
        (*variables(), THRESHOLD),
        links=links(FLEET_UID),
        time_from="now-6h",
        runbook=f"{DOCS}/dashboards.md#the-dashboards",
    )
