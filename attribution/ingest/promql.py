"""The PromQL that turns the agent's counters into hourly usage rollups, kept in one place.

`gpulens ingest usage --prometheus` evaluates these with `query_range` at a 1 h step; the recording
rules (`gpulens rules build`) record the same expressions, so dashboards and the warehouse agree.
Each query evaluated at time T covers the hour (T - 1h, T]; its rollup row is stamped T - 1h.
"""

from __future__ import annotations

# Seconds of the hour each GPU was held, per job (SPEC §3 gpulens_gpu_held_seconds_total).
HELD_SECONDS_PER_HOUR = (
    "sum by (node, gpu, uuid, model, job_id, team) (increase(gpulens_gpu_held_seconds_total[1h]))"
)
# Exact mean SM activity over the hour: the rate of its integral (SPEC §3). The agent keeps one
# integral per (gpu, job_id, team), so a job change splits the hour across series: they are summed
# (each holds only its own part of the hour), never averaged; clamp_max absorbs counter-reset jitter.
SM_ACTIVE_MEAN_PER_HOUR = (
    "clamp_max(sum by (node, gpu, uuid, model) (rate(gpulens_gpu_sm_active_seconds_total[1h])), 1)"
)
# The coarse fallback where no profiling metric exists (an A100 without DCGM): a gauge, so the mean
# is weighted by samples across the per-job series a job change creates, not an average of averages.
UTILIZATION_MEAN_PER_HOUR = (
    "sum by (node, gpu, uuid, model) (sum_over_time(gpulens_gpu_utilization_ratio[1h]))"
    " / sum by (node, gpu, uuid, model) (count_over_time(gpulens_gpu_utilization_ratio[1h]))"
)
# Which EC2 instance and cluster each node is: joins usage to CUR resource_id.
NODE_INFO = "max by (node, instance_id, instance_type, cluster) (gpulens_node_info)"

# Names under which `gpulens rules build` records the expressions above.
RECORDED = {
    "gpulens:gpu_held_seconds:increase1h": HELD_SECONDS_PER_HOUR,
    "gpulens:gpu_sm_active:mean1h": SM_ACTIVE_MEAN_PER_HOUR,
    "gpulens:gpu_utilization:mean1h": UTILIZATION_MEAN_PER_HOUR,
}
