"""What every gpulens dashboard shares: variables, links, matchers, per-GPU PromQL and wording."""

from __future__ import annotations

from gpulens import metrics as m
from gpulens.attribution.present import grafana_money_unit
from gpulens.dashboards.grafana.model import DashboardLink, Step, Variable
from gpulens.dashboards.rules.prices import PRICE_METRIC
from gpulens.dashboards.rules.promql import GPU_KEY, sel, sm_activity

# Stable UIDs: links, the Helm chart's sidecar and `push` all rely on them.
FLEET_UID = "gpulens-fleet"
NODE_UID = "gpulens-node"
TRAINING_UID = "gpulens-training"
TEAM_UID = "gpulens-team"

NODE = 'node=~"$node"'
JOB = 'team=~"$team", job_id=~"$job_id"'
GPU_SCOPE = f'{NODE}, gpu=~"$gpu", {JOB}'

DOCS = "https://github.com/gpulens/gpulens/blob/main/docs"
RUNBOOKS = f"{DOCS}/runbooks.md"
# One sentence and a link: the long explanation lives in docs/dashboards.md, not in every tooltip.
SM_ACTIVITY_WHY = (
    'SM activity, not "GPU utilization" (which reads 100% while one kernel runs on 1 of 132 SMs); GPUs '
    "without a profiling metric fall back to utilization, labelled source=utilization_ratio "
    f"([why]({DOCS}/dashboards.md#sm-activity-not-gpu-utilization))."
)

# Money in the dashboards: GPU time x `gpulens_gpu_price_per_second` (`gpulens prices`). The unit is
# the billing currency's; `CURRENCY` is the one the committed dashboards show.
CURRENCY = "USD"
MONEY_UNIT = grafana_money_unit(CURRENCY)
PRICES_HOW = f"([prices]({DOCS}/dashboards.md#money-in-grafana))"

LAST_VALUE = {"calcs": ["lastNotNull"], "fields": "", "values": False}
STAT = {"colorMode": "background", "graphMode": "none", "reduceOptions": LAST_VALUE}
RATIO_STEPS = (Step("red"), Step("orange", 0.25), Step("green", 0.5))


def variables(*, all_nodes: bool = True, all_jobs: bool = True) -> tuple[Variable, ...]:
    """datasource, cluster, node, gpu, team, job_id: regex matchers whose All is `.*`. A dashboard about
    one node or one job opens on the first value (`all_nodes=False`, `all_jobs=False`), not on All."""
    held = m.GPU_HELD_SECONDS.name
    info = m.NODE_INFO.name
    return (
        Variable(
            "datasource",
            "Prometheus",
            "datasource",
            description="The Prometheus that scrapes gpulens agents.",
        ),
        Variable(
            "cluster",
            "Cluster",
            query=f"label_values({info}, cluster)",
            description="Cluster of the node (gpulens agent --cluster), from gpulens_node_info.",
        ),
        Variable(
            "node",
            "Node",
            query=f'label_values({info}{{cluster=~"$cluster"}}, node)',
            all_by_default=all_nodes,
        ),
        Variable(
            "gpu",
            "GPU",
            query=f'label_values({m.GPU_UP.name}{{node=~"$node"}}, gpu)',
            description="GPU index on the selected node(s).",
        ),
        Variable(
            "team",
            "Team",
            query=f"label_values({held}, team)",
            description="Team of the job holding the GPU. All also shows GPUs no job holds.",
        ),
        Variable(
            "job_id",
            "Job",
            query=f'label_values({held}{{team=~"$team"}}, job_id)',
            all_by_default=all_jobs,
        ),
    )


def links(current_uid: str) -> tuple[DashboardLink, ...]:
    """Header links to the other gpulens dashboards (time range and variables carried over)."""
    every = (
        (FLEET_UID, "Fleet overview"),
        (NODE_UID, "Node & GPU"),
        (TRAINING_UID, "Training job"),
        (TEAM_UID, "Team usage"),
    )
    return tuple(DashboardLink(title, uid) for uid, title in every if uid != current_uid)


def in_cluster(expr: str) -> str:
    """Keep the series of `expr` (which must carry `node`) whose node is in the selected cluster(s)."""
    return f'({expr})\nand on (node) {m.NODE_INFO.name}{{cluster=~"$cluster"}}'


def gpu_activity(window: str) -> str:
    """Mean SM activity per GPU over `window`, falling back to utilization, labelled by `source`."""
    return in_cluster(sm_activity(window, GPU_SCOPE))


def held(window: str, condition: str = "> 0") -> str:
    """Fraction of `window` each GPU was held, per (GPU, job_id, team), where it meets `condition`."""
    rate = f"rate({sel(m.GPU_HELD_SECONDS.name, GPU_SCOPE)}[{window}])"
    return in_cluster(f"sum by (node, gpu, uuid, model, job_id, team) ({rate}) {condition}")


def activity_of_held(window: str) -> str:
    """Each held (GPU, job)'s SM activity: the GPU's activity carried onto the job's labels."""
    return f"({gpu_activity(window)})\n* on ({GPU_KEY}) group_right (source)\nclamp({held(window)}, 1, 1)"


def idle_of_held(window: str) -> str:
    """Per (GPU, job): held fraction x (1 - SM activity): GPUs held but not kept busy."""
    return f"(1 - ({gpu_activity(window)}))\n* on ({GPU_KEY}) group_right ()\n({held(window)})"


def with_instance_type(expr: str) -> str:
    """`expr` (carrying `node`) with the node's `instance_type` from gpulens_node_info."""
    info = f"max by (node, instance_type) ({m.NODE_INFO.name})"
    return f"({expr})\n* on (node) group_left (instance_type)\n{info}"


def priced(expr: str) -> str:
    """`expr` per (GPU, job) in GPU-seconds (or GPUs held) times the price of a GPU-second of the
    node's instance type for the job's team; where the team has no price of its own, the instance
    type's (`team=""`). Money per second for a rate, money for an increase."""
    typed = with_instance_type(expr)
    own = f"{typed}\n* on (instance_type, team) group_left (currency) {PRICE_METRIC}"
    fallback = f'{typed}\n* on (instance_type) group_left (currency) {PRICE_METRIC}{{team=""}}'
    return f"(\n{own}\n)\nor on (node, gpu, job_id, team)\n(\n{fallback}\n)"


def held_increase(window: str) -> str:
    """GPU-seconds each (GPU, job) was held over `window`."""
    increase = f"increase({sel(m.GPU_HELD_SECONDS.name, GPU_SCOPE)}[{window}])"
    return in_cluster(f"sum by (node, gpu, uuid, model, job_id, team) ({increase})")
