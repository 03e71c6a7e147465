"""Alerting rules (docs/design.md §7 semantics), each with summary, description, severity and runbook link."""

from __future__ import annotations

from dataclasses import dataclass

from gpulens import metrics as m
from gpulens.dashboards.rules.model import Alert, RuleGroup, Severity
from gpulens.dashboards.rules.promql import (
    GPU_KEY,
    JOB_KEY,
    RANK0,
    held_fraction,
    new_increase,
    sel,
    sm_activity,
)

HELD_BY_A_JOB = 'job_id!=""'
DEFAULT_RUNBOOK_BASE = "https://github.com/gpulens/gpulens/blob/main/docs/runbooks.md"


@dataclass(frozen=True)
class AlertOptions:
    """Thresholds and deployment details the alerts depend on.

    `sm_threshold` is docs/design.md §7's default (`metrics.SM_THRESHOLD_DEFAULT`); `agent_job` is a
    regex over the Prometheus scrape job(s) that scrape `gpulens agent`; `runbook_base` is where
    docs/runbooks.md is published.
    """

    runbook_base: str = DEFAULT_RUNBOOK_BASE
    # Matches `gpulens` (a plain scrape config), `gpulens-agent` and the Helm chart's ServiceMonitor
    # job, which is the agent Service's name: `<release>-gpulens-agent`.
    agent_job: str = "(.+-)?gpulens(-agent)?"
    sm_threshold: float = m.SM_THRESHOLD_DEFAULT
    held_fraction: float = 0.95  # "held for the hour", allowing for scrape jitter at the edges
    stall_minutes: int = 10
    step_regression_ratio: float = 1.25
    goodput_threshold: float = 0.5  # a job whose steps fill less of the last hour than this


def runbook(options: AlertOptions, alert: str) -> str:
    """The runbook entry of `alert`: a heading in docs/runbooks.md, anchored GitHub-style."""
    return f"{options.runbook_base}#{alert.lower()}"


def gpu_underutilized(o: AlertOptions) -> Alert:
    held = f"clamp({held_fraction('1h', HELD_BY_A_JOB)} >= {o.held_fraction}, 1, 1)"
    idle = f"(\n{sm_activity('1h')}\n) < {o.sm_threshold}"
    # The held side is 1 where the job held the GPU all hour; the product keeps the activity value.
    expr = f"{held}\n* on ({GPU_KEY}) group_left (source)\n(\n{idle}\n)"
    return Alert(
        "GpuUnderutilized",
        expr,
        "info",
        "GPU {{ $labels.gpu }} on {{ $labels.node }} held by {{ $labels.job_id }} but mostly idle",
        "Job {{ $labels.job_id }} (team {{ $labels.team }}) held GPU {{ $labels.gpu }} ({{ $labels.uuid }}) "
        "on {{ $labels.node }} for the last hour at a mean {{ $labels.source }} of "
        "{{ $value | humanizePercentage }}, below " + f"{o.sm_threshold:.0%}.",
        runbook(o, "GpuUnderutilized"),
        for_="5m",
    )


def _loss_anomaly(o: AlertOptions, name: str, kind: str, summary: str, severity: Severity) -> Alert:
    anomalies = new_increase(m.TRAIN_ANOMALIES.name, f'kind="{kind}"', "15m")
    expr = f"count by ({JOB_KEY}, kind) (\n{anomalies}\n)"
    return Alert(
        name,
        expr,
        severity,
        summary,
        "{{ $value }} rank(s) of job {{ $labels.job_id }} (team {{ $labels.team }}) reported a "
        "{{ $labels.kind }} loss anomaly in the last 15 minutes.",
        runbook(o, name),
    )


def training_loss_diverged(o: AlertOptions) -> Alert:
    return _loss_anomaly(
        o, "TrainingLossDiverged", "divergence", "Training loss of {{ $labels.job_id }} diverged", "warning"
    )


def training_loss_nan(o: AlertOptions) -> Alert:
    return _loss_anomaly(
        o, "TrainingLossNaN", "nan", "Training loss of {{ $labels.job_id }} is NaN", "critical"
    )


def training_stalled(o: AlertOptions) -> Alert:
    last = f"max by ({JOB_KEY}) ({m.TRAIN_LAST_STEP.name})"
    held = f"sum by ({JOB_KEY}) (rate({m.GPU_HELD_SECONDS.name}[5m])) > 0"
    expr = f"(time() - {last}) > {o.stall_minutes * 60}\nand on ({JOB_KEY})\n({held})"
    return Alert(
        "TrainingStalled",
        expr,
        "warning",
        "Job {{ $labels.job_id }} holds GPUs but made no step for " + f"{o.stall_minutes} minutes",
        "Job {{ $labels.job_id }} (team {{ $labels.team }}) still holds GPUs, but its last training step "
        "was {{ $value | humanizeDuration }} ago.",
        runbook(o, "TrainingStalled"),
        for_="2m",
    )


def _mean_step(window: str, offset: str = "") -> str:
    step, shift = m.TRAIN_STEP_SECONDS.name, f" offset {offset}" if offset else ""
    return (
        f"sum by ({JOB_KEY}) (rate({step}_sum[{window}]{shift}))\n"
        f"/\nsum by ({JOB_KEY}) (rate({step}_count[{window}]{shift}))"
    )


def step_time_regression(o: AlertOptions) -> Alert:
    # Now (10 min) against the hour that ended 30 minutes ago, so the regression itself does not
    # raise its own baseline before `for` has elapsed.
    expr = f"(\n{_mean_step('10m')}\n)\n> {o.step_regression_ratio} * (\n{_mean_step('1h', '30m')}\n)"
    return Alert(
        "StepTimeRegression",
        expr,
        "warning",
        "Step time of {{ $labels.job_id }} regressed",
        "Mean step time of job {{ $labels.job_id }} (team {{ $labels.team }}) over the last 10 minutes is "
        "{{ $value | humanizeDuration }}, more than " + f"{o.step_regression_ratio - 1:.0%}"
        " above its mean over the hour that ended 30 minutes ago.",
        runbook(o, "StepTimeRegression"),
        for_="10m",
    )


def training_goodput_low(o: AlertOptions) -> Alert:
    # Only jobs that were already stepping an hour ago: a job that started 10 minutes ago has not
    # had an hour to fill, and rate() over its short history would read low.
    goodput = "gpulens:job_train_goodput:ratio1h"
    running = f"max by ({JOB_KEY}) ({sel(m.TRAIN_STEPS.name, RANK0)} offset 1h)"
    expr = f"{goodput} < {o.goodput_threshold}\nand on ({JOB_KEY})\n{running}"
    return Alert(
        "TrainingGoodputLow",
        expr,
        "warning",
        "Job {{ $labels.job_id }} spent most of the last hour outside training steps",
        "Job {{ $labels.job_id }} (team {{ $labels.team }}) spent {{ $value | humanizePercentage }} of the "
        f"last hour in training steps (goodput), below {o.goodput_threshold:.0%}: the rest went to "
        "checkpoints, data waits, eval, restarts or nothing (gpulens:job_train_phase_seconds:ratio1h).",
        runbook(o, "TrainingGoodputLow"),
        for_="15m",
    )


def gpu_xid_non_recoverable(o: AlertOptions) -> Alert:
    # One alert per (GPU, XID, action): the remediation policy matches on `action` and `node`.
    events = new_increase(m.GPU_XID_ERRORS.name, 'recoverable="false"', "10m")
    expr = f"sum by ({GPU_KEY}, xid, action) (\n{events}\n)"
    return Alert(
        "GpuXidNonRecoverable",
        expr,
        "critical",
        "Non-recoverable XID {{ $labels.xid }} on GPU {{ $labels.gpu }} of {{ $labels.node }}",
        "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on {{ $labels.node }} raised XID {{ $labels.xid }} "
        "in the last 10 minutes; NVIDIA's XID catalog prescribes: {{ $labels.action }}.",
        runbook(o, "GpuXidNonRecoverable"),
    )


def gpu_lost(o: AlertOptions) -> Alert:
    return Alert(
        "GpuLost",
        f"{m.GPU_UP.name} == 0",
        "critical",
        "GPU {{ $labels.gpu }} on {{ $labels.node }} stopped answering",
        "The agent on {{ $labels.node }} can no longer read GPU {{ $labels.gpu }} ({{ $labels.uuid }}, "
        "{{ $labels.model }}): it has fallen off the bus or the driver lost it.",
        runbook(o, "GpuLost"),
        for_="1m",
    )


def agent_down(o: AlertOptions) -> Alert:
    up = f'up{{job=~"{o.agent_job}"}}'
    return Alert(
        "AgentDown",
        f"{up} == 0\nor\nabsent({up})",
        "warning",
        "gpulens agent down or missing",
        "{{ if $labels.instance }}Prometheus cannot scrape the gpulens agent {{ $labels.instance }} "
        "(job {{ $labels.job }}){{ else }}Prometheus has no target for the gpulens agent (job =~ "
        f"{o.agent_job}){{{{ end }}}}: GPU, XID and training metrics there are blind.",
        runbook(o, "AgentDown"),
        for_="3m",
    )


ALERTS = (
    gpu_underutilized,
    training_loss_diverged,
    training_loss_nan,
    training_stalled,
    step_time_regression,
    training_goodput_low,
    gpu_xid_non_recoverable,
    gpu_lost,
    agent_down,
)


def alert_groups(options: AlertOptions) -> tuple[RuleGroup, ...]:
    """GPU health and agent alerts apart from training-health alerts, so each routes as a group."""
    alerts = {make.__name__: make(options) for make in ALERTS}
    gpu = ("gpu_underutilized", "gpu_xid_non_recoverable", "gpu_lost", "agent_down")
    return (
        RuleGroup("gpulens-gpu-alerts", tuple(alerts[name] for name in gpu)),
        RuleGroup("gpulens-training-alerts", tuple(a for name, a in alerts.items() if name not in gpu)),
    )
