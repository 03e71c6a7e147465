"""The PromQL that turns the agent's counters into hourly usage rollups, kept in one place.

`gpulens ingest usage --prometheus` evaluates these with `query_range` at a 1 h step; the recording
rules (`gpulens rules build`) record the same expressions, so dashboards and the warehouse agree.
Each query evaluated at time T covers the hour (T - 1h, T]; its rollup row is stamped T - 1h.
"""

from __future__ import annotations

# Seconds of the hour each GPU was held, per job (docs/design.md §3 gpulens_gpu_held_seconds_total).
HELD_SECONDS_PER_HOUR = (
    "sum by (node, gpu, uuid, model, job_id, team) (increase(gpulens_gpu_held_seconds_total[1h]))"
)
# Exact mean SM activity over the hour: the rate of its integral (docs/design.md §3). The agent keeps one
# integral per (gpu, job_id, team), so a job change splits the hour across series: they are summed
# (each holds only its own part of the hour), never averaged; clamp_max absorbs counter-reset jitter.
SM_ACTIVE_MEAN_PER_HOUR = (
    "clamp_max(sum by (node, gpu, uuid, model) (rate(gpulens_gpu_sm_active_seconds_total[1h])), 1)"
)
# The job's own mean SM activity over the seconds it held the GPU (docs/design.md §5): the increase
# of the job-labelled integral over the increase of its held seconds. A job that held a GPU for 30
# minutes at 0.8, the GPU then free, is 0.8 here; the GPU's whole-hour mean above says 0.4. Both
# increases extrapolate alike, so the ratio is exact where the job starts or ends inside the hour.
_PER_JOB = "node, gpu, uuid, model, job_id, team"
SM_ACTIVE_MEAN_PER_JOB_HOUR = (
    f'clamp_max(sum by ({_PER_JOB}) (increase(gpulens_gpu_sm_active_seconds_total{{job_id!=""}}[1h]))'
    f" / (sum by ({_PER_JOB}) (increase(gpulens_gpu_held_seconds_total[1h])) > 0), 1)"
)
# The coarse fallback where no profiling metric exists (an A100 without DCGM): a gauge, so the mean
# is weighted by samples across the per-job series a job change creates, not an average of averages.
UTILIZATION_MEAN_PER_HOUR = (
    "sum by (node, gpu, uuid, model) (sum_over_time(gpulens_gpu_utilization_ratio[1h]))"
    " / sum by (node, gpu, uuid, model) (count_over_time(gpulens_gpu_utilization_ratio[1h]))"
)
# The same, over the samples the job's own series holds (the gauge carries the job labels).
UTILIZATION_MEAN_PER_JOB_HOUR = (
    f'sum by ({_PER_JOB}) (sum_over_time(gpulens_gpu_utilization_ratio{{job_id!=""}}[1h]))'
    f' / sum by ({_PER_JOB}) (count_over_time(gpulens_gpu_utilization_ratio{{job_id!=""}}[1h]))'
)
# Which EC2 instance and cluster each node is: joins usage to CUR resource_id.
NODE_INFO = "max by (node, instance_id, instance_type, cluster) (gpulens_node_info)"

# Names under which `gpulens rules build` records the expressions above.
RECORDED = {
    "gpulens:gpu_held_seconds:increase1h": HELD_SECONDS_PER_HOUR,
    "gpulens:gpu_sm_active:mean1h": SM_ACTIVE_MEAN_PER_HOUR,
    "gpulens:gpu_utilization:mean1h": UTILIZATION_MEAN_PER_HOUR,
    "gpulens:job_gpu_sm_active:mean1h": SM_ACTIVE_MEAN_PER_JOB_HOUR,
    "gpulens:job_gpu_utilization:mean1h": UTILIZATION_MEAN_PER_JOB_HOUR,
}
