"""Training job: throughput, step time, MFU, goodput, loss with anomaly marks, and the job's GPUs."""

from __future__ import annotations

from gpulens import metrics as m
from gpulens.dashboards.grafana.common import (
    JOB,
    NODE,
    RATIO_STEPS,
    RUNBOOKS,
    SM_ACTIVITY_WHY,
    STAT,
    TRAINING_UID,
    activity_of_held,
    held,
    links,
    variables,
)
from gpulens.dashboards.grafana.model import Annotation, Dashboard, Panel, Step, Target, row
from gpulens.dashboards.rules.promql import RANK0, TRAIN_ATTEMPT, TRAIN_PHASE_SECONDS, join, new_increase, sel

W = "$__rate_interval"
TRAIN = f"{NODE}, {JOB}"
RANK_LEGEND = "{{job_id}} rank {{rank}}"
QUANTILES = (("p50", "0.5"), ("p90", "0.9"), ("p99", "0.99"))


def step_quantile(q: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (job_id, le) "
        f"(rate({m.TRAIN_STEP_SECONDS.name}_bucket{{{TRAIN}}}[{W}])))"
    )


def mean_step_by_rank() -> str:
    step = m.TRAIN_STEP_SECONDS.name
    return (
        f"sum by (job_id, rank) (rate({step}_sum{{{TRAIN}}}[{W}]))\n/\n"
        f"sum by (job_id, rank) (rate({step}_count{{{TRAIN}}}[{W}]))"
    )


def anomalies() -> Annotation:
    # A 2-minute window: the anomaly counter is born at 1 on its first event, which increase() alone
    # would miss; new_increase() counts a series that appears as well.
    expr = new_increase(m.TRAIN_ANOMALIES.name, TRAIN, "2m")
    return Annotation(
        "Loss anomalies",
        expr,
        "{{kind}} (rank {{rank}})",
        "Job {{job_id}} reported a {{kind}} loss anomaly (docs/design.md §7).",
    )


def throughput_panels() -> tuple[Panel, ...]:
    return (
        row("Throughput"),
        Panel(
            "Tokens per second",
            "timeseries",
            "Tokens processed per second, summed over the job's ranks.",
            (Target(f"sum by (job_id) (rate({sel(m.TRAIN_TOKENS.name, TRAIN)}[{W}]))", "{{job_id}}"),),
            unit="suffix: tok/s",
            min=0,
            width=8,
        ),
        Panel(
            "Steps per second",
            "timeseries",
            "Optimizer steps per second (mean over ranks). Zero while the job "
            "holds GPUs for 10 minutes raises TrainingStalled.",
            (Target(f"avg by (job_id) (rate({sel(m.TRAIN_STEPS.name, TRAIN)}[{W}]))", "{{job_id}}"),),
            unit="suffix: steps/s",
            min=0,
            width=8,
        ),
        Panel(
            "Time since last step",
            "stat",
            "Seconds since any rank of the job last completed a step; "
            "TrainingStalled fires at 10 minutes while the job still holds GPUs.",
            (
                Target(
                    f"time() - max by (job_id) ({sel(m.TRAIN_LAST_STEP.name, TRAIN)})",
                    "{{job_id}}",
                    instant=True,
                ),
            ),
            unit="s",
            width=8,
            thresholds=(Step("green"), Step("orange", 300), Step("red", 600)),
            options=STAT,
        ),
        Panel(
            "Step time quantiles",
            "timeseries",
            "Step time (CUDA events, no host sync) p50/p90/p99 over all ranks. A p99 far above p50 means "
            "stragglers or slow steps. Checkpoint saves, data waits and evaluation between steps are not "
            "part of a step: they show in Goodput buckets below.",
            tuple(Target(step_quantile(q), f"{{{{job_id}}}} {name}") for name, q in QUANTILES),
            unit="s",
            min=0,
            width=12,
        ),
        Panel(
            "Mean step time by rank",
            "timeseries",
            "One line per rank: a rank above the others is a straggler; "
            "its GPU or node is the place to look (Node & GPU). StepTimeRegression compares the job's mean "
            "with the hour before.",
            (Target(mean_step_by_rank(), RANK_LEGEND),),
            unit="s",
            min=0,
            width=12,
        ),
        Panel(
            "MFU",
            "timeseries",
            "Model FLOPs utilization per rank: achieved model FLOPs over the GPU's peak. Unlike SM "
            "activity it counts only useful math, so it is the efficiency figure for the run itself.",
            (Target(sel(m.TRAIN_MFU.name, TRAIN), RANK_LEGEND),),
            unit="percentunit",
            min=0,
            max=1,
            width=24,
            thresholds=(Step("red"), Step("orange", 0.2), Step("green", 0.35)),
        ),
    )


GOODPUT_COLORS = {
    "productive": "green",
    "checkpoint_save": "blue",
    "checkpoint_load": "light-blue",
    "data_wait": "orange",
    "eval": "purple",
    "init": "yellow",
    "other": "red",
}


def _color(name: str, color: str) -> dict[str, object]:
    return {
        "matcher": {"id": "byRegexp", "options": f".* {name}$"},
        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
    }


def step_fraction() -> str:
    """Fraction of wall time rank 0 spent in steps (online goodput, docs/design.md §8)."""
    step = sel(f"{m.TRAIN_STEP_SECONDS.name}_sum", join(TRAIN, RANK0))
    return f"clamp_max(sum by (job_id) (rate({step}[{W}])), 1)"


def phase_fraction() -> str:
    return f"sum by (job_id, phase) (rate({sel(TRAIN_PHASE_SECONDS, join(TRAIN, RANK0))}[{W}]))"


def step_mfu() -> str:
    return f"avg by (job_id) ({sel(m.TRAIN_MFU.name, join(TRAIN, RANK0))})"


def goodput_panels() -> tuple[Panel, ...]:
    return (
        row("Goodput"),
        Panel(
            "Goodput buckets",
            "timeseries",
            "Where rank 0's wall time went (docs/design.md §8): inside training steps (productive) or in "
            "each phase the trainer reported (checkpoint_save, checkpoint_load, data_wait, eval, init, "
            "others by name); the gap up to 100% is time nothing covers, restarts included. Online, a step "
            "that a restart will redo still counts as productive; `gpulens runs goodput` moves it to "
            "wasted progress afterwards. TrainingGoodputLow fires below 50% over an hour.",
            (
                Target(step_fraction(), "{{job_id}} productive"),
                Target(phase_fraction(), "{{job_id}} {{phase}}"),
            ),
            unit="percentunit",
            min=0,
            max=1,
            width=16,
            thresholds=(Step("red"), Step("orange", 0.5), Step("green", 0.8)),
            custom={"stacking": {"mode": "normal"}, "fillOpacity": 60, "lineWidth": 0},
            overrides=tuple(_color(name, color) for name, color in GOODPUT_COLORS.items()),
        ),
        Panel(
            "Attempt",
            "stat",
            "Which (re)start of the job is running: 1 for the first; each restart repeats the steps since "
            "the last checkpoint (from TORCHELASTIC_RESTART_COUNT, SLURM_RESTART_COUNT or the trainer).",
            (Target(f"max by (job_id) ({sel(TRAIN_ATTEMPT, TRAIN)})", "{{job_id}}", instant=True),),
            width=8,
            thresholds=(Step("green"), Step("orange", 2), Step("red", 4)),
            options=STAT,
        ),
        Panel(
            "Step MFU vs effective MFU",
            "timeseries",
            "Step MFU: useful model FLOPs over the time inside steps. Effective MFU: the same FLOPs over "
            "wall time (step MFU x the fraction of wall time in steps), so checkpoints, data waits and "
            "restarts lower it. A wide gap is time lost between steps, not slow math.",
            (
                Target(step_mfu(), "{{job_id}} step MFU"),
                Target(f"{step_mfu()}\n* on (job_id)\n{step_fraction()}", "{{job_id}} effective MFU"),
            ),
            unit="percentunit",
            min=0,
            max=1,
            width=24,
            thresholds=(Step("red"), Step("orange", 0.2), Step("green", 0.35)),
        ),
    )


def loss_panels() -> tuple[Panel, ...]:
    return (
        row("Loss"),
        Panel(
            "Loss",
            "timeseries",
            "Latest training loss per rank; red marks are loss anomalies the trainer's "
            "detector reported (nan, spike: >= 25% above baseline for 3 steps, divergence: >= 10% above the "
            "running minimum for 50 steps; docs/design.md §7).",
            (Target(sel(m.TRAIN_LOSS.name, TRAIN), RANK_LEGEND),),
            width=16,
            height=9,
        ),
        Panel(
            "Loss anomalies reported",
            "stat",
            "Anomaly episodes per kind since each agent started; nan and "
            "divergence raise TrainingLossNaN and TrainingLossDiverged.",
            (
                Target(
                    f"sum by (job_id, kind) ({sel(m.TRAIN_ANOMALIES.name, TRAIN)})",
                    "{{job_id}} {{kind}}",
                    instant=True,
                ),
            ),
            width=8,
            height=9,
            thresholds=(Step("green"), Step("red", 1)),
            no_value="0",
            options=STAT | {"textMode": "value_and_name"},
        ),
    )


def gpu_panels() -> tuple[Panel, ...]:
    return (
        row("The job's GPUs"),
        Panel(
            "SM activity of the job's GPUs",
            "timeseries",
            SM_ACTIVITY_WHY,
            (Target(activity_of_held(W), "{{job_id}} {{node}}/{{gpu}} ({{source}})"),),
            unit="percentunit",
            min=0,
            max=1,
            width=16,
            thresholds=RATIO_STEPS,
        ),
        Panel(
            "GPUs held",
            "timeseries",
            "GPUs the job held (GPU-seconds held per second).",
            (Target(f"sum by (job_id) ({held(W)})", "{{job_id}}"),),
            min=0,
            width=8,
        ),
    )


def dashboard() -> Dashboard:
    return Dashboard(
        TRAINING_UID,
        "gpulens / Training job",
        "One training job: tokens/s, step time, MFU, goodput, loss and its anomalies, and how busy its "
        "GPUs are.",
        throughput_panels() + goodput_panels() + loss_panels() + gpu_panels(),
        variables(all_jobs=False),
        annotations=(anomalies(),),
        links=links(TRAINING_UID),
        time_from="now-6h",
        refresh="30s",
        runbook=f"{RUNBOOKS}#trainingstalled",
    )
