"""PromQL building blocks shared by the rules and the Grafana dashboards, so both mean the same thing.

Metric names come from the catalog (`gpulens.metrics`, docs/design.md §3); nothing here hard-codes
a metric name twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gpulens import metrics as m

# A GPU is (node, gpu, uuid) whichever job holds it: the job labels come and go with the mapping.
GPU_KEY = "node, gpu, uuid"
GPU_LABELS = "node, gpu, uuid, model"
JOB_KEY = "job_id, team"

# The trainer's time model as the agent exports it (docs/design.md §3, §8).
TRAIN_PHASE_SECONDS = m.TRAIN_PHASE_SECONDS.name
TRAIN_ATTEMPT = m.TRAIN_ATTEMPT.name
# Goodput is measured on rank 0, as the offline buckets are (docs/design.md §8): every rank runs the
# same steps, so summing ranks would count the wall clock world-size times.
RANK0 = 'rank="0"'

# Values of the `source` label that says which metric an SM-activity figure came from (docs/design.md §3:
# dashboards fall back to the coarse utilization where no profiling metric exists, and say so).
SOURCE_SM_ACTIVE = "sm_active"
SOURCE_UTILIZATION = "utilization_ratio"


def sel(metric: str, matchers: str = "") -> str:
    """`metric{matchers}`, or the bare name when there are no matchers."""
    return f"{metric}{{{matchers}}}" if matchers else metric


def join(*matchers: str) -> str:
    """Comma-joined label matchers, skipping empty ones."""
    return ", ".join(x for x in matchers if x)


def _labelled(expr: str, source: str) -> str:
    return f'label_replace({expr}, "source", "{source}", "", "")'


def sm_activity(window: str, matchers: str = "", by: str = GPU_LABELS) -> str:
    """Mean SM activity (0..1) over `window` per `by`, with `source` saying which metric it is.

    Where a GPU exports `gpulens_gpu_sm_active_seconds_total` its rate is the exact mean of
    sm_active over the window (docs/design.md §3). A GPU without a profiling metric (an A100 without DCGM)
    falls back to the mean of `gpulens_gpu_utilization_ratio`, labelled source="utilization_ratio".
    `by` must contain the GPU key so that the fallback only fills GPUs the first half lacks.
    """
    exact = f"sum by ({by}) (rate({sel(m.GPU_SM_ACTIVE_SECONDS.name, matchers)}[{window}]))"
    coarse = f"avg by ({by}) (avg_over_time({sel(m.GPU_UTILIZATION.name, matchers)}[{window}]))"
    return f"{_labelled(exact, SOURCE_SM_ACTIVE)}\nor on ({by})\n{_labelled(coarse, SOURCE_UTILIZATION)}"


def held_fraction(window: str, matchers: str = "") -> str:
    """Fraction (0..1) of `window` each GPU was held by each job, per (GPU, job_id, team)."""
    return f"sum by ({GPU_LABELS}, {JOB_KEY}) (rate({sel(m.GPU_HELD_SECONDS.name, matchers)}[{window}]))"


def new_increase(metric: str, matchers: str, window: str) -> str:
    """Series of counter `metric` that went up within `window`, including ones born inside it.

    `increase()` cannot see a counter's first sample, and the agent creates a labelled counter
    (an XID, an anomaly kind) on its first event, at 1. So a series that exists now but not
    `window` ago also counts, provided Prometheus was already scraping that target then
    (`up offset`), so a fresh Prometheus does not re-announce old events.
    """
    s = sel(metric, matchers)
    return (
        f"(increase({s}[{window}]) > 0)\n"
        f"or\n"
        f"((({s} > 0) unless {s} offset {window}) and on (instance, job) (up offset {window}))"
    )


HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def metric_names(exprs: Iterable[str]) -> set[str]:
    """Every gpulens_* metric name the PromQL `exprs` mention."""
    return set(re.findall(r"\bgpulens_[a-z_]+", " ".join(exprs)))


def unknown_metrics(exprs: Iterable[str]) -> set[str]:
    """Names in `exprs` that are neither catalog metrics (docs/design.md §3) nor a catalog histogram's
    series."""

    def known(name: str) -> bool:
        if name in m.BY_NAME:
            return True
        return any(
            name.endswith(s)
            and m.BY_NAME.get(name[: -len(s)], None) is not None
            and m.BY_NAME[name[: -len(s)]].type == "histogram"
            for s in HISTOGRAM_SERIES
        )

    return {name for name in metric_names(exprs) if not known(name)}


def step_time_fraction(window: str) -> str:
    """Fraction (0..1) of `window` rank 0 of each job spent inside training steps: online goodput.
    Offline goodput also moves redone steps to wasted progress; online, a step cannot yet know."""
    step = sel(f"{m.TRAIN_STEP_SECONDS.name}_sum", RANK0)
    return f"clamp_max(sum by ({JOB_KEY}) (rate({step}[{window}])), 1)"


def phase_fraction(window: str) -> str:
    """Fraction (0..1) of `window` rank 0 of each job spent in each phase (checkpoint_save, ...)."""
    return f"sum by ({JOB_KEY}, phase) (rate({sel(TRAIN_PHASE_SECONDS, RANK0)}[{window}]))"


def effective_mfu(window: str) -> str:
    """Wall-clock ("effective") MFU over `window`: step MFU x the fraction of wall time in steps, i.e.
    useful FLOPs over wall time, where step MFU is useful FLOPs over step time."""
    mfu = sel(m.TRAIN_MFU.name, RANK0)
    return (
        f"avg by ({JOB_KEY}) (avg_over_time({mfu}[{window}]))\n* on ({JOB_KEY})\n{step_time_fraction(window)}"
    )
