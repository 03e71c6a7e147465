"""The metric catalog (docs/design.md §3): one tuple of specs that exposition, dashboards and rules import.

`source` names the NVML function, DCGM field or GPM metric the value comes from; units are base
units, converted once at the backend boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["gauge", "counter", "histogram", "info"]

# A MIG instance's series also carry `mig` (profile/GPU-instance id, e.g. "3g.40gb/1"), and `uuid` is
# the instance's own MIG-... UUID (docs/agent.md, MIG).
GPU_LABELS: tuple[str, ...] = ("node", "gpu", "uuid", "model")
MIG_LABEL = "mig"
JOB_LABELS: tuple[str, ...] = ("job_id", "team")
TRAIN_LABELS: tuple[str, ...] = ("node", "job_id", "team", "rank", "gpu")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: MetricType
    unit: str
    labels: tuple[str, ...]
    help: str
    source: str


def _gpu(
    name: str, type_: MetricType, unit: str, help_: str, source: str, extra: tuple[str, ...] = ()
) -> MetricSpec:
    return MetricSpec(name, type_, unit, GPU_LABELS + extra, help_, source)


GPU_UP = _gpu(
    "gpulens_gpu_up",
    "gauge",
    "",
    "1 while the device answers, 0 once it stops (fallen off the bus, XID 79).",
    "nvmlDeviceGetHandleByIndex / DCGM health",
)
GPU_UTILIZATION = _gpu(
    "gpulens_gpu_utilization_ratio",
    "gauge",
    "ratio",
    "Fraction of the window in which any kernel ran (coarse; not SM activity).",
    "nvmlDeviceGetUtilizationRates.gpu / DCGM_FI_DEV_GPU_UTIL (203)",
)
GPU_SM_ACTIVE = _gpu(
    "gpulens_gpu_sm_active_ratio",
    "gauge",
    "ratio",
    "Mean fraction of SMs with at least one warp resident over the window.",
    "DCGM_FI_PROF_SM_ACTIVE (1002) / GPM NVML_GPM_METRIC_SM_UTIL",
)
# A (GPU, job) pair whose mean SM activity over its held time stays below this is underutilized
# (docs/design.md §7): the one default behind `flags`, the report, the explorer, the alert rules
# and the fleet dashboard's threshold variable.
SM_THRESHOLD_DEFAULT = 0.25
GPU_SM_OCCUPANCY = _gpu(
    "gpulens_gpu_sm_occupancy_ratio",
    "gauge",
    "ratio",
    "Mean resident warps over the SMs' maximum over the window.",
    "DCGM_FI_PROF_SM_OCCUPANCY (1003) / GPM NVML_GPM_METRIC_SM_OCCUPANCY",
)
GPU_TENSOR_ACTIVE = _gpu(
    "gpulens_gpu_tensor_active_ratio",
    "gauge",
    "ratio",
    "Mean fraction of cycles the tensor pipes were active over the window.",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE (1004) / GPM NVML_GPM_METRIC_ANY_TENSOR_UTIL",
)
GPU_DRAM_ACTIVE = _gpu(
    "gpulens_gpu_dram_active_ratio",
    "gauge",
    "ratio",
    "Mean fraction of cycles device memory was sending or receiving data over the window.",
    "DCGM_FI_PROF_DRAM_ACTIVE (1005) / GPM NVML_GPM_METRIC_DRAM_BW_UTIL",
)
GPU_MEMORY_USED = _gpu(
    "gpulens_gpu_memory_used_bytes", "gauge", "bytes", "Device memory in use.", "nvmlDeviceGetMemoryInfo.used"
)
GPU_MEMORY_TOTAL = _gpu(
    "gpulens_gpu_memory_total_bytes",
    "gauge",
    "bytes",
    "Device memory installed.",
    "nvmlDeviceGetMemoryInfo.total",
)
GPU_POWER = _gpu(
    "gpulens_gpu_power_watts",
    "gauge",
    "watts",
    "Board power draw (NVML reports milliwatts).",
    "nvmlDeviceGetPowerUsage",
)
GPU_ENERGY = _gpu(
    "gpulens_gpu_energy_joules_total",
    "counter",
    "joules",
    "Energy consumed while the agent watched, per job holding the GPU (NVML reports millijoules).",
    "nvmlDeviceGetTotalEnergyConsumption deltas",
)
GPU_TEMPERATURE = _gpu(
    "gpulens_gpu_temperature_celsius",
    "gauge",
    "celsius",
    "GPU die temperature.",
    "nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU)",
)
GPU_SM_CLOCK = _gpu(
    "gpulens_gpu_sm_clock_hertz",
    "gauge",
    "hertz",
    "SM clock (NVML reports MHz).",
    "nvmlDeviceGetClockInfo(NVML_CLOCK_SM)",
)
GPU_UTILIZATION_SECONDS = _gpu(
    "gpulens_gpu_utilization_seconds_total",
    "counter",
    "seconds",
    "Integral of utilization over time: rate() over any window is its exact mean (the fallback where "
    "no profiling ratio exists, e.g. an A100 without DCGM).",
    "integral of gpulens_gpu_utilization_ratio (NVML utilization samples over each window)",
)
GPU_SM_ACTIVE_SECONDS = _gpu(
    "gpulens_gpu_sm_active_seconds_total",
    "counter",
    "seconds",
    "Integral of sm_active over time: rate() over any window is its exact mean.",
    "integral of gpulens_gpu_sm_active_ratio",
)
GPU_TENSOR_ACTIVE_SECONDS = _gpu(
    "gpulens_gpu_tensor_active_seconds_total",
    "counter",
    "seconds",
    "Integral of tensor_active over time: rate() over any window is its exact mean.",
    "integral of gpulens_gpu_tensor_active_ratio",
)
GPU_DRAM_ACTIVE_SECONDS = _gpu(
    "gpulens_gpu_dram_active_seconds_total",
    "counter",
    "seconds",
    "Integral of dram_active over time: rate() over any window is its exact mean.",
    "integral of gpulens_gpu_dram_active_ratio",
)
GPU_HELD_SECONDS = _gpu(
    "gpulens_gpu_held_seconds_total",
    "counter",
    "seconds",
    "Seconds the GPU was held by the job: hourly usage rollups are its increase() per hour.",
    "job mapping",
    JOB_LABELS,
)
GPU_XID_ERRORS = _gpu(
    "gpulens_gpu_xid_errors_total",
    "counter",
    "",
    "XID events, classified by NVIDIA's XID catalog.",
    "nvmlEventSetWait (nvmlEventTypeXidCriticalError)",
    ("xid", "recoverable", "action"),
)
GPU_ECC_ERRORS = _gpu(
    "gpulens_gpu_ecc_errors_total",
    "counter",
    "",
    "ECC errors while the agent watched, by type (corrected, uncorrected), per job holding the GPU.",
    "nvmlDeviceGetTotalEccErrors(NVML_VOLATILE_ECC) deltas",
    ("type",),
)

TRAIN_STEP_SECONDS = MetricSpec(
    "gpulens_train_step_seconds",
    "histogram",
    "seconds",
    TRAIN_LABELS,
    "Training step wall time, from CUDA events (no host sync).",
    "trainer datagram step_seconds",
)
TRAIN_STEPS = MetricSpec(
    "gpulens_train_steps_total", "counter", "", TRAIN_LABELS, "Training steps completed.", "trainer datagrams"
)
TRAIN_TOKENS = MetricSpec(
    "gpulens_train_tokens_total", "counter", "", TRAIN_LABELS, "Tokens processed.", "trainer datagram tokens"
)
TRAIN_LOSS = MetricSpec(
    "gpulens_train_loss", "gauge", "", TRAIN_LABELS, "Latest training loss.", "trainer datagram loss"
)
TRAIN_MFU = MetricSpec(
    "gpulens_train_mfu_ratio",
    "gauge",
    "ratio",
    TRAIN_LABELS,
    "Model FLOPs utilization of the latest step.",
    "trainer datagram mfu",
)
TRAIN_LAST_STEP = MetricSpec(
    "gpulens_train_last_step_timestamp_seconds",
    "gauge",
    "seconds",
    TRAIN_LABELS,
    "Unix time of the latest step.",
    "trainer datagram ts",
)
TRAIN_ATTEMPT = MetricSpec(
    "gpulens_train_attempt",
    "gauge",
    "",
    TRAIN_LABELS,
    "The latest attempt (1 = first start, then one more per restart) a record of this rank carried.",
    "trainer datagram attempt (step, phase, run records)",
)
TRAIN_PHASE_SECONDS = MetricSpec(
    "gpulens_train_phase_seconds_total",
    "counter",
    "seconds",
    TRAIN_LABELS + ("phase",),
    "Seconds spent in non-training phases (init, checkpoint_load, checkpoint_save, data_wait, eval, other).",
    "trainer phase datagrams (end - start)",
)
TRAIN_ANOMALIES = MetricSpec(
    "gpulens_train_loss_anomalies_total",
    "counter",
    "",
    TRAIN_LABELS + ("kind",),
    "Loss anomalies (nan, spike, divergence), one per episode.",
    "trainer anomaly datagrams",
)

AGENT_INFO = MetricSpec(
    "gpulens_agent_info",
    "info",
    "",
    ("version", "backend", "node", "capabilities", "profiling", "trust"),
    'The agent\'s version, backend (backend="sim" is a simulated fleet, not hardware), probed capabilities, '
    "profiler-lock state and how trainer datagrams are verified (trust: pid, uid or off).",
    "agent",
)
NODE_INFO = MetricSpec(
    "gpulens_node_info",
    "info",
    "",
    ("node", "instance_id", "instance_type", "cluster"),
    "Which cloud instance and cluster this node is: joins GPU usage to CUR resource_id.",
    "agent flags --instance-id/--instance-type/--cluster",
)
AGENT_SAMPLE_SECONDS = MetricSpec(
    "gpulens_agent_sample_seconds",
    "histogram",
    "seconds",
    ("node",),
    "Time to sample every GPU once.",
    "agent sampler",
)
AGENT_DATAGRAMS = MetricSpec(
    "gpulens_agent_datagrams_total",
    "counter",
    "",
    ("result",),
    "Trainer datagrams received, by result (ok, malformed, rejected: the sender may not speak for the GPU, "
    "over_limit: beyond the job label sets exported per node).",
    "agent socket",
)

METRICS: tuple[MetricSpec, ...] = (
    GPU_UP,
    GPU_UTILIZATION,
    GPU_SM_ACTIVE,
    GPU_SM_OCCUPANCY,
    GPU_TENSOR_ACTIVE,
    GPU_DRAM_ACTIVE,
    GPU_MEMORY_USED,
    GPU_MEMORY_TOTAL,
    GPU_POWER,
    GPU_ENERGY,
    GPU_TEMPERATURE,
    GPU_SM_CLOCK,
    GPU_UTILIZATION_SECONDS,
    GPU_SM_ACTIVE_SECONDS,
    GPU_TENSOR_ACTIVE_SECONDS,
    GPU_DRAM_ACTIVE_SECONDS,
    GPU_HELD_SECONDS,
    GPU_XID_ERRORS,
    GPU_ECC_ERRORS,
    TRAIN_STEP_SECONDS,
    TRAIN_STEPS,
    TRAIN_TOKENS,
    TRAIN_LOSS,
    TRAIN_MFU,
    TRAIN_LAST_STEP,
    TRAIN_ANOMALIES,
    TRAIN_ATTEMPT,
    TRAIN_PHASE_SECONDS,
    AGENT_INFO,
    NODE_INFO,
    AGENT_SAMPLE_SECONDS,
    AGENT_DATAGRAMS,
)

BY_NAME: dict[str, MetricSpec] = {m.name: m for m in METRICS}
