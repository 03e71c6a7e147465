"""Node & GPU: every per-GPU signal of the selected nodes, from SM activity to XIDs and the agent."""

from __future__ import annotations

from gpulens import metrics as m
from gpulens.dashboards.grafana.common import (
    DOCS,
    GPU_SCOPE,
    LAST_VALUE,
    NODE,
    NODE_UID,
    RATIO_STEPS,
    RUNBOOKS,
    SM_ACTIVITY_WHY,
    gpu_activity,
    in_cluster,
    links,
    variables,
)
from gpulens.dashboards.grafana.model import Dashboard, Panel, Step, Target, row
from gpulens.dashboards.rules.promql import sel

W = "$__rate_interval"
GPU_LEGEND = "{{node}}/{{gpu}}"


def per_gpu(expr: str) -> str:
    """`expr` (carrying `node`) limited to the selected cluster."""
    return in_cluster(expr)


def gauge(metric: str) -> str:
    return per_gpu(sel(metric, GPU_SCOPE))


def rate_of(metric: str) -> str:
    return per_gpu(f"rate({sel(metric, GPU_SCOPE)}[{W}])")


def ratio_panel(title: str, description: str, expr: str, legend: str = GPU_LEGEND, width: int = 12) -> Panel:
    return Panel(
        title,
        "timeseries",
        description,
        (Target(expr, legend),),
        unit="percentunit",
        min=0,
        max=1,
        width=width,
        thresholds=RATIO_STEPS,
        custom={"fillOpacity": 5},
    )


def activity_panels() -> tuple[Panel, ...]:
    return (
        row("Activity"),
        ratio_panel("SM activity", SM_ACTIVITY_WHY, gpu_activity(W), GPU_LEGEND + " ({{source}})"),
        ratio_panel(
            "GPU utilization (coarse)",
            "NVML utilization.gpu, the fraction of time any kernel ran however few SMs it used, shown for "
            "comparison only: " + SM_ACTIVITY_WHY,
            per_gpu(f"avg_over_time({sel(m.GPU_UTILIZATION.name, GPU_SCOPE)}[{W}])"),
        ),
        ratio_panel(
            "Tensor pipe activity",
            "Mean fraction of cycles the tensor cores were busy (rate of "
            "gpulens_gpu_tensor_active_seconds_total); low with high SM activity means the math is not in "
            "tensor-core-friendly shapes or precisions.",
            rate_of(m.GPU_TENSOR_ACTIVE_SECONDS.name),
            width=8,
        ),
        ratio_panel(
            "DRAM bandwidth activity",
            "Mean fraction of cycles device memory was moving data (rate of "
            "gpulens_gpu_dram_active_seconds_total): near 1 means memory-bound.",
            rate_of(m.GPU_DRAM_ACTIVE_SECONDS.name),
            width=8,
        ),
        ratio_panel(
            "SM occupancy",
            "Resident warps over the SMs' maximum, mean over the agent's sampling "
            "window: low occupancy with high SM activity means too few warps to hide latency.",
            gauge(m.GPU_SM_OCCUPANCY.name),
            width=8,
        ),
    )


def device_panels() -> tuple[Panel, ...]:
    return (
        row("Memory, power, thermals"),
        Panel(
            "Memory used",
            "timeseries",
            "Device memory in use, against the installed total (dashed).",
            (
                Target(gauge(m.GPU_MEMORY_USED.name), GPU_LEGEND),
                Target(f"max by (node) ({gauge(m.GPU_MEMORY_TOTAL.name)})", "{{node}} total"),
            ),
            unit="bytes",
            min=0,
            width=12,
            overrides=(
                {
                    "matcher": {"id": "byRegexp", "options": ".* total"},
                    "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
                },
            ),
        ),
        Panel(
            "Power draw",
            "timeseries",
            "Board power (NVML reports milliwatts; gpulens converts to watts).",
            (Target(gauge(m.GPU_POWER.name), GPU_LEGEND),),
            unit="watt",
            min=0,
            width=12,
        ),
        Panel(
            "Temperature",
            "timeseries",
            "GPU die temperature; data-centre GPUs slow their clocks in the high 80s °C, so a rising "
            "temperature with a falling SM clock is thermal throttling.",
            (Target(gauge(m.GPU_TEMPERATURE.name), GPU_LEGEND),),
            unit="celsius",
            width=8,
            thresholds=(Step("green"), Step("orange", 80), Step("red", 88)),
            custom={"thresholdsStyle": {"mode": "line"}},
        ),
        Panel(
            "SM clock",
            "timeseries",
            "SM clock (NVML reports MHz; gpulens converts to hertz): drops under load mean power or thermal "
            "throttling.",
            (Target(gauge(m.GPU_SM_CLOCK.name), GPU_LEGEND),),
            unit="hertz",
            width=8,
        ),
        Panel(
            "Energy used in range",
            "stat",
            "Joules each node's GPUs consumed over the dashboard's time range "
            "(increase of gpulens_gpu_energy_joules_total).",
            (
                Target(
                    f"sum by (node) ({per_gpu(f'increase({sel(m.GPU_ENERGY.name, GPU_SCOPE)}[$__range])')})",
                    "{{node}}",
                    instant=True,
                ),
            ),
            unit="joule",
            width=8,
            options={"reduceOptions": LAST_VALUE},
        ),
    )


def health_panels() -> tuple[Panel, ...]:
    xid, ecc = m.GPU_XID_ERRORS.name, m.GPU_ECC_ERRORS.name
    agent_node = f"{m.AGENT_INFO.name}{{{NODE}}}"
    return (
        row("Health"),
        Panel(
            "GPU answering",
            "timeseries",
            "gpulens_gpu_up: 1 while the device answers, 0 once it stops (GpuLost fires after a minute at 0, "
            f"[runbook]({RUNBOOKS}#gpulost)).",
            (Target(gauge(m.GPU_UP.name), GPU_LEGEND),),
            min=0,
            max=1,
            width=8,
            thresholds=(Step("red"), Step("green", 1)),
            custom={"drawStyle": "line", "lineInterpolation": "stepAfter"},
        ),
        Panel(
            "XID errors",
            "timeseries",
            "XID events by XID and the action NVIDIA's catalog prescribes; recoverable=false ones raise "
            f"GpuXidNonRecoverable ([runbook]({RUNBOOKS}#gpuxidnonrecoverable)).",
            (
                Target(
                    "sum by (node, gpu, xid, recoverable, action) "
                    f"({per_gpu(f'increase({sel(xid, NODE)}[{W}])')})",
                    GPU_LEGEND + " XID {{xid}} {{action}}",
                ),
            ),
            width=8,
            custom={"drawStyle": "bars", "fillOpacity": 80},
        ),
        Panel(
            "ECC errors",
            "timeseries",
            "Corrected and uncorrected ECC errors; uncorrected ones kill the running job and usually come "
            "with an XID 48/94/95.",
            (
                Target(
                    f"sum by (node, gpu, type) ({per_gpu(f'increase({sel(ecc, NODE)}[{W}])')})",
                    GPU_LEGEND + " {{type}}",
                ),
            ),
            width=8,
            custom={"drawStyle": "bars", "fillOpacity": 80},
        ),
        Panel(
            "Agent sampling time (p99)",
            "timeseries",
            "Time the agent needs to sample every GPU once; it should stay far below its --interval.",
            (
                Target(
                    f"histogram_quantile(0.99, sum by (node, le) "
                    f"(rate({m.AGENT_SAMPLE_SECONDS.name}_bucket{{{NODE}}}[{W}])))",
                    "{{node}}",
                ),
            ),
            unit="s",
            width=12,
        ),
        Panel(
            "Trainer datagrams",
            "timeseries",
            "Trainer datagrams the agent received per second, by result; "
            "malformed ones are dropped (docs/design.md §4).",
            (
                Target(
                    f"sum by (node, result) (rate({m.AGENT_DATAGRAMS.name}[{W}])"
                    f" * on (instance) group_left (node) {agent_node})",
                    "{{node}} {{result}}",
                ),
            ),
            unit="reqps",
            width=12,
        ),
    )


def dashboard() -> Dashboard:
    return Dashboard(
        NODE_UID,
        "gpulens / Node & GPU",
        "Every per-GPU signal of the selected nodes: activity, memory, power, thermals, XID/ECC errors, "
        "agent.",
        activity_panels() + device_panels() + health_panels(),
        variables(all_nodes=False),
        links=links(NODE_UID),
        time_from="now-3h",
        runbook=f"{DOCS}/dashboards.md#the-dashboards",
    )
