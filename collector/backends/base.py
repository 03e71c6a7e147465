"""The backend seam: identities, one reading per device per tick, XID events, typed failures.

Every optional field is `float | None`: None means the device does not support it or the read
failed this tick, and the exporter omits the series (never 0, never NaN). Units are base units,
converted once by the backend that read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gpulens.errors import GpulensError

# NVML and DCGM report "blank" values as sentinels near 2**63 (DCGM_INT64_BLANK = 0x7ffffff0 for
# int32, 0x7ffffffffffffff0 for int64; DCGM_FP64_BLANK = 140737488355328.0). Anything this large
# is not a measurement.
BLANK_THRESHOLD = 1.0e14


class DeviceLost(Exception):
    """The whole device stopped answering (fallen off the bus): the sampler exports gpulens_gpu_up 0."""


class BackendUnavailable(GpulensError):
    """The backend cannot start here (no driver, no library, no GPU): one line for the user."""


@dataclass(frozen=True)
class GpuIdentity:
    """A device as found at startup. `index` is NVML's index; `model` its marketing name.

    A MIG instance is a device of its own: `index` is its parent GPU's index, `uuid` the instance's
    own `MIG-...` UUID (what the kubelet and CUDA_VISIBLE_DEVICES name), `mig` its profile and
    GPU-instance id (`3g.40gb/1`), and `share` its slices over the parent's (3/7): the GPU time it
    holds counts as that share of the whole GPU (docs/agent.md, MIG). `uuid` is the sampler's key.
    """

    index: int
    uuid: str
    model: str
    mig: str = ""
    share: float = 1.0


@dataclass(frozen=True)
class GpuReading:
    """Every field of one device for one tick. Ratios are 0..1 means over the window ending now."""

    identity: GpuIdentity
    up: bool = True
    utilization_ratio: float | None = None
    sm_active_ratio: float | None = None
    sm_occupancy_ratio: float | None = None
    tensor_active_ratio: float | None = None
    dram_active_ratio: float | None = None
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    power_watts: float | None = None
    energy_joules: float | None = None  # cumulative since the driver loaded
    temperature_celsius: float | None = None
    sm_clock_hertz: float | None = None
    ecc_corrected: float | None = None  # cumulative
    ecc_uncorrected: float | None = None  # cumulative
    pids: tuple[int, ...] = ()  # compute processes running on the device
    job_id: str | None = None
    team: str | None = None


@dataclass(frozen=True)
class XidEvent:
    """One XID reported by the driver for device `gpu` at monotonic time `t` (seconds)."""

    gpu: int
    xid: int
    t: float = 0.0


@dataclass(frozen=True)
class Capabilities:
    """What the backend probed once at startup; published as labels of gpulens_agent_info."""

    profiling: bool = False  # SM active/occupancy, tensor, DRAM (DCGM 1002-1005 or GPM)
    energy: bool = False
    xid_events: bool = False
    ecc: bool = False
    processes: bool = False  # readings carry the pids of the compute processes (trust, job mapping)
    extra: tuple[str, ...] = field(default=())

    def names(self) -> tuple[str, ...]:
        flags = ("profiling", "energy", "xid_events", "ecc", "processes")
        return tuple(n for n in flags if getattr(self, n)) + self.extra


class GpuBackend(Protocol):
    """What the sampler needs of a backend; nvml, dcgm and sim implement it."""

    name: str

    def devices(self) -> Sequence[GpuIdentity]: ...

    def read(self, device: GpuIdentity) -> GpuReading: ...

    def poll_xids(self) -> list[XidEvent]: ...

    def capabilities(self) -> Capabilities: ...

    def set_profiling(self, enabled: bool) -> None: ...

    def close(self) -> None: ...


def clean(value: float | int | None, scale: float = 1.0) -> float | None:
    """`value * scale` as a float, or None for a missing or blank (sentinel) value."""
    if value is None:
        return None
    v = float(value)
    if v != v or abs(v) >= BLANK_THRESHOLD:
        return None
    return v * scale


def ratio(value: float | None, percent: bool = True) -> float | None:
    """A percentage (or a 0..1 value) clamped into 0..1; None stays None."""
    if value is None:
        return None
    v = value / 100.0 if percent else value
    return min(max(v, 0.0), 1.0)
