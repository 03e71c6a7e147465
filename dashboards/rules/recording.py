"""Recording rules: hourly usage rollups, SM-activity means, per-job step time, throughput and goodput.

The hourly usage rules are `gpulens.attribution.ingest.promql.RECORDED`, used as they are, so that
`gpulens ingest usage --prometheus` and these rules compute the same numbers.
"""

from __future__ import annotations

from gpulens import metrics as m
from gpulens.attribution.ingest.promql import RECORDED
from gpulens.dashboards.rules.model import Recording, RuleGroup
from gpulens.dashboards.rules.promql import (
    GPU_KEY,
    JOB_KEY,
    TRAIN_ATTEMPT,
    effective_mfu,
    held_fraction,
    phase_fraction,
    sm_activity,
    step_time_fraction,
)

HELD_1H = "gpulens:gpu_held_seconds:increase1h"
GPU_SM_5M = "gpulens:gpu_sm_active:mean5m"
GPU_HELD_5M = "gpulens:gpu_held:fraction5m"
STEP_QUANTILES = ("0.5", "0.9", "0.99")


def usage_group() -> RuleGroup:
    """GPU-seconds held per GPU and job, per team and per job, and SM activity, per hour."""
    rules = [Recording(name, expr) for name, expr in RECORDED.items()]
    rules.append(Recording("gpulens:team_gpu_held_seconds:increase1h", f"sum by (team) ({HELD_1H})"))
    rules.append(Recording("gpulens:job_gpu_held_seconds:increase1h", f"sum by ({JOB_KEY}) ({HELD_1H})"))
    return RuleGroup("gpulens-usage", tuple(rules), interval="1m")


def _held_weighted_mean(by: str) -> str:
    # Each GPU's SM activity weighted by the fraction of the window each job held it: the mean
    # over held time, whether or not the agent put job labels on the profiling counter.
    weighted = f"{GPU_SM_5M} * on ({GPU_KEY}) group_right {GPU_HELD_5M}"
    return f"sum by ({by}) ({weighted})\n/\nsum by ({by}) ({GPU_HELD_5M})"


def activity_group() -> RuleGroup:
    """Per-GPU, fleet (per cluster), team and job means of SM activity over 5 minutes (0..1)."""
    node_cluster = f"max by (node, cluster) ({m.NODE_INFO.name})"
    return RuleGroup(
        "gpulens-activity",
        (
            Recording(GPU_SM_5M, sm_activity("5m")),
            Recording(GPU_HELD_5M, f"{held_fraction('5m')} > 0"),
            Recording(
                "gpulens:cluster_sm_active:mean5m",
                f"avg by (cluster) ({GPU_SM_5M} * on (node) group_left (cluster) {node_cluster})",
            ),
            Recording("gpulens:team_sm_active:mean5m", _held_weighted_mean("team")),
            Recording("gpulens:job_sm_active:mean5m", _held_weighted_mean(JOB_KEY)),
        ),
    )


def training_group() -> RuleGroup:
    """Per-job step-time quantiles and mean (seconds), tokens/s and steps/s over 5 minutes."""
    step = m.TRAIN_STEP_SECONDS.name
    quantiles = tuple(
        Recording(
            "gpulens:job_train_step_seconds:quantile5m",
            f"histogram_quantile({q}, sum by ({JOB_KEY}, le) (rate({step}_bucket[5m])))",
            {"quantile": q},
        )
        for q in STEP_QUANTILES
    )
    return RuleGroup(
        "gpulens-training",
        (
            *quantiles,
            Recording(
                "gpulens:job_train_step_seconds:mean5m",
                f"sum by ({JOB_KEY}) (rate({step}_sum[5m]))\n/\nsum by ({JOB_KEY}) (rate({step}_count[5m]))",
            ),
            Recording(
                "gpulens:job_train_tokens:rate5m", f"sum by ({JOB_KEY}) (rate({m.TRAIN_TOKENS.name}[5m]))"
            ),
            Recording(
                "gpulens:job_train_steps:rate5m", f"sum by ({JOB_KEY}) (rate({m.TRAIN_STEPS.name}[5m]))"
            ),
        ),
    )


GOODPUT_1H = "gpulens:job_train_goodput:ratio1h"
GOODPUT_5M = "gpulens:job_train_goodput:ratio5m"
PHASES_5M = "gpulens:job_train_phase_seconds:ratio5m"
EFFECTIVE_MFU_5M = "gpulens:job_train_mfu_effective:ratio5m"
ATTEMPT = "gpulens:job_train_attempt:max"


def goodput_group() -> RuleGroup:
    """Online goodput (docs/design.md §8): the fraction of wall time rank 0 spent in steps and in
    each phase, effective MFU, and the attempt each job is on."""
    return RuleGroup(
        "gpulens-goodput",
        (
            Recording(GOODPUT_1H, step_time_fraction("1h")),
            Recording(GOODPUT_5M, step_time_fraction("5m")),
            Recording("gpulens:job_train_phase_seconds:ratio1h", phase_fraction("1h")),
            Recording(PHASES_5M, phase_fraction("5m")),
            Recording(EFFECTIVE_MFU_5M, effective_mfu("5m")),
            Recording(ATTEMPT, f"max by ({JOB_KEY}) ({TRAIN_ATTEMPT})"),
        ),
    )


def recording_groups() -> tuple[RuleGroup, ...]:
    return (usage_group(), activity_group(), training_group(), goodput_group())
