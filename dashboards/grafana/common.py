"""What every gpulens dashboard shares: variables, links, matchers, per-GPU PromQL and wording."""

from __future__ import annotations

from gpulens import metrics as m
from gpulens.dashboards.grafana.model import DashboardLink, Step, Variable
from gpulens.dashboards.rules.promql import GPU_KEY, sel, sm_activity

# Stable UIDs: links, the Helm chart's sidecar and `push` all rely on them.
FLEET_UID = "gpulens-fleet"
NODE_UID = "gpulens-node"
TRAINING_UID = "gpulens-training"
TEAM_UID = "gpulens-team"

NODE = 'node=~"$node"'
JOB = 'team=~"$team", job_id=~"$job_id"'
GPU_SCOPE = f"{NODE}, {JOB}"

SM_ACTIVITY_WHY = (
    "SM activity (DCGM_FI_PROF_SM_ACTIVE / GPM SM utilization) is the fraction of the GPU's streaming "
    "multiprocessors that had work resident, averaged over time; gpulens takes the rate of its integral, "
    'so the mean is exact at any scrape interval. "GPU utilization" (nvidia-smi, NVML utilization.gpu) '
    "only says whether any kernel was running: one small kernel on 1 of 132 SMs reads 100%. A GPU can "
    "show 100% utilization with 90% of its compute idle, so SM activity is what tells busy from held. "
    "GPUs without a profiling metric (an A100 without DCGM) fall back to utilization and are labelled "
    "source=utilization_ratio: read those as an upper bound."
)

LAST_VALUE = {"calcs": ["lastNotNull"], "fields": "", "values": False}
STAT = {"colorMode": "background", "graphMode": "none", "reduceOptions": LAST_VALUE}
RATIO_STEPS = (Step("red"), Step("orange", 0.25), Step("green", 0.5))


def variables() -> tuple[Variable, ...]:
    """datasource, cluster, node, team, job_id: regex matchers whose All is `.*`."""
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
        Variable("node", "Node", query=f'label_values({info}{{cluster=~"$cluster"}}, node)'),
        Variable(
            "team",
            "Team",
            query=f"label_values({held}, team)",
            description="Team of the job holding the GPU. All also shows GPUs no job holds.",
        ),
        Variable("job_id", "Job", query=f'label_values({held}{{team=~"$team"}}, job_id)'),
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
