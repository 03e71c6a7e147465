"""A simulated fleet: N GPUs of one model driven by a scenario, deterministic for a seed.

It is a real backend (the demo, CI and newcomers run the same sampler, mappers and exposition as
production); readings are window means of a piecewise-constant signal (0.25 s steps) whose noise
is a pure hash of (seed, gpu, step, field), so a seed and a time give one answer. It is marked
`backend="sim"` in gpulens_agent_info so nobody mistakes it for hardware.

`--sim-mig 7:3g.40gb,2g.20gb,1g.10gb` splits GPU 7 into MIG instances, each a device of its own (as
NVML lists them): a `MIG-...` UUID, `mig` = profile/GPU-instance id, a share of the GPU's 7 slices,
and a small inference job of its own; like NVML, instances report no power, clock or temperature.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from gpulens.collector.backends.base import Capabilities, DeviceLost, GpuIdentity, GpuReading, XidEvent
from gpulens.collector.xid import loses_device
from gpulens.errors import GpulensError

STEP_SECONDS = 0.25  # resolution of the simulated signal
MIB = 1024 * 1024


@dataclass(frozen=True)
class SimModel:
    """Public datasheet figures: memory in bytes as NVML reports it, board power, max SM clock."""

    name: str
    memory_bytes: float
    tdp_watts: float
    max_sm_clock_hertz: float
    idle_watts: float


MODELS: dict[str, SimModel] = {
    "a100-40gb": SimModel("NVIDIA A100-SXM4-40GB", 40960 * MIB, 400.0, 1410e6, 55.0),
    "a100-80gb": SimModel("NVIDIA A100-SXM4-80GB", 81920 * MIB, 400.0, 1410e6, 60.0),
    "h100-sxm": SimModel("NVIDIA H100 80GB HBM3", 81559 * MIB, 700.0, 1980e6, 70.0),
}


@dataclass(frozen=True)
class Profile:
    """One GPU's simulated workload: mean ratios while active, and the duty cycle of activity."""

    kind: str
    sm_active: float
    sm_occupancy: float
    tensor_active: float
    dram_active: float
    memory_fraction: float
    job_id: str | None = None
    team: str | None = None
    duty: float = 1.0  # fraction of each 4 s period that is active (input-starved < 1)


BUSY = Profile("busy", 0.86, 0.42, 0.58, 0.38, 0.88, "sim-llm-pretrain", "ai-research")
IDLE = Profile("allocated_idle", 0.0, 0.0, 0.0, 0.0, 0.31, "sim-notebook", "search")
MEMBOUND = Profile("memory_bound", 0.62, 0.31, 0.06, 0.84, 0.71, "sim-embeddings", "recsys")
STARVED = Profile("input_starved", 0.83, 0.40, 0.52, 0.35, 0.64, "sim-vision", "vision", duty=0.3)
FREE = Profile("free", 0.0, 0.0, 0.0, 0.0, 0.0)
MIG_JOB = Profile("mig_inference", 0.55, 0.3, 0.35, 0.3, 0.5, "sim-mig", "inference")

SCENARIOS: dict[str, tuple[Profile, ...]] = {
    # A realistic 8-GPU node: one 4-GPU training job, one idle notebook, a memory-bound job,
    # an input-starved job and one free GPU; larger fleets repeat the pattern.
    "mixed": (BUSY, BUSY, BUSY, BUSY, IDLE, MEMBOUND, STARVED, FREE),
    "busy": (BUSY,),
    "idle": (IDLE,),
    "memory-bound": (MEMBOUND,),
    "input-starved": (STARVED,),
    "free": (FREE,),
}


MIG_SLICES = 7  # compute slices of an A100/H100 (nvmlDeviceGetMaxMigDeviceCount)


@dataclass(frozen=True)
class SimMig:
    """GPU `gpu` split into MIG instances of `profiles` (e.g. 3g.40gb: 3 slices, 40 GB)."""

    gpu: int
    profiles: tuple[str, ...]


def _slices(profile: str) -> int:
    head = profile.split("g.", 1)[0]
    return int(head) if head.isdigit() else 0


def parse_mig(text: str) -> SimMig:
    """`GPU:PROFILE,PROFILE...`, e.g. `7:3g.40gb,2g.20gb,1g.10gb,1g.10gb` (at most 7 slices in all)."""
    gpu, sep, rest = text.partition(":")
    profiles = tuple(p.strip() for p in rest.split(",") if p.strip())
    slices = [_slices(p) for p in profiles]
    if not sep or not gpu.isdigit() or not profiles or 0 in slices or sum(slices) > MIG_SLICES:
        raise GpulensError(
            f"--sim-mig {text!r}: expected GPU:PROFILE,... with at most {MIG_SLICES} slices in all, "
            "e.g. 7:3g.40gb,2g.20gb,1g.10gb,1g.10gb",
            field="--sim-mig",
        )
    return SimMig(int(gpu), profiles)


@dataclass(frozen=True)
class SimFault:
    """XID `xid` raised on GPU `gpu` `after` seconds after the backend started."""

    xid: int
    gpu: int
    after: float


def parse_fault(text: str) -> SimFault:
    """`XID:GPU:AFTER_SECONDS`, e.g. `79:3:5`."""
    parts = text.split(":")
    try:
        xid, gpu, after = int(parts[0]), int(parts[1]), float(parts[2])
        if len(parts) != 3 or xid < 0 or gpu < 0 or after < 0:
            raise ValueError(text)
    except (ValueError, IndexError):
        raise GpulensError(
            f"--sim-fault {text!r}: expected XID:GPU:AFTER_SECONDS, e.g. 79:3:5", field="--sim-fault"
        ) from None
    return SimFault(xid, gpu, after)


def _unit(seed: int, gpu: int, step: int, field: int) -> float:
    """A deterministic uniform number in [0, 1) from its coordinates (splitmix64)."""
    x = (seed * 0x9E3779B97F4A7C15 + gpu * 0xBF58476D1CE4E5B9 + step * 0x94D049BB133111EB + field) & (
        2**64 - 1
    )
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return ((x ^ (x >> 31)) >> 11) / float(2**53)


class SimBackend:
    """`gpus` simulated devices of `model` running `scenario`; `clock` is monotonic seconds."""

    name = "sim"

    def __init__(
        self,
        gpus: int = 8,
        model: str = "a100-80gb",
        seed: int = 0,
        scenario: str = "mixed",
        faults: Sequence[SimFault] = (),
        clock: Callable[[], float] = time.monotonic,
        mig: Sequence[SimMig] = (),
    ) -> None:
        if model not in MODELS:
            raise GpulensError(
                f"unknown --sim-model {model!r}; one of {', '.join(MODELS)}", field="--sim-model"
            )
        if scenario not in SCENARIOS:
            raise GpulensError(
                f"unknown --sim-scenario {scenario!r}; one of {', '.join(SCENARIOS)}", field="--sim-scenario"
            )
        if gpus < 1:
            raise GpulensError("--sim-gpus must be at least 1", field="--sim-gpus")
        self.model = MODELS[model]
        self.seed = seed
        self._clock = clock
        self._start = clock()
        self._last: dict[int, float] = {}
        self._energy: dict[int, float] = {}
        pattern = SCENARIOS[scenario]
        split = {m.gpu: m.profiles for m in mig if m.gpu < gpus}
        devices: list[GpuIdentity] = []
        profiles: list[Profile] = []
        for i in range(gpus):
            if i not in split:
                devices.append(GpuIdentity(i, self._uuid(i), self.model.name))
                profiles.append(pattern[i % len(pattern)])
                continue
            for gi, name in enumerate(split[i], start=1):
                uuid = "MIG" + self._uuid(1000 * (i + 1) + gi)[3:]
                devices.append(
                    GpuIdentity(i, uuid, self.model.name, f"{name}/{gi}", _slices(name) / MIG_SLICES)
                )
                profiles.append(replace(MIG_JOB, job_id=f"sim-mig-{i}-{gi}"))
        self._devices = tuple(devices)
        self._slot = {d.uuid: n for n, d in enumerate(devices)}  # noise coordinate and per-device state
        self._profiles = tuple(profiles)
        self._faults = sorted(faults, key=lambda f: f.after)
        self._fired: set[int] = set()
        self._lost: set[int] = set()
        self._profiling = True
        self._lock = threading.Lock()

    def _uuid(self, i: int) -> str:
        h = "".join(f"{int(_unit(self.seed, i, k, 99) * 65536):04x}" for k in range(8))
        return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def devices(self) -> Sequence[GpuIdentity]:
        return self._devices

    def capabilities(self) -> Capabilities:
        return Capabilities(profiling=True, energy=True, xid_events=True, ecc=True, processes=False)

    def set_profiling(self, enabled: bool) -> None:
        self._profiling = enabled

    def poll_xids(self) -> list[XidEvent]:
        elapsed = self._clock() - self._start
        events = []
        with self._lock:
            for n, fault in enumerate(self._faults):
                if n in self._fired or fault.after > elapsed or fault.gpu >= len(self._devices):
                    continue
                self._fired.add(n)
                events.append(XidEvent(fault.gpu, fault.xid, self._start + fault.after))
                if loses_device(fault.xid):
                    self._lost.add(fault.gpu)
        return events

    def _active(self, profile: Profile, gpu: int, step: int) -> float:
        """1.0 while the workload is busy in this step, 0 while it waits for input."""
        if profile.duty >= 1.0:
            return 1.0
        return 1.0 if (step % 16) < round(16 * profile.duty) else 0.0

    def _window_mean(self, gpu: int, base: float, field: int, t0: float, t1: float) -> float:
        """Mean of the simulated signal over [t0, t1): base x activity x (1 +- 5% noise), clamped."""
        profile = self._profiles[gpu]  # `gpu` is the device's slot (its position among the devices)
        if base <= 0.0:
            return 0.0
        first, last = (
            math.floor(t0 / STEP_SECONDS),
            max(math.ceil(t1 / STEP_SECONDS), math.floor(t0 / STEP_SECONDS) + 1),
        )
        total = 0.0
        for step in range(first, last):
            noise = 1.0 + 0.1 * (_unit(self.seed, gpu, step, field) - 0.5)
            total += min(1.0, base * self._active(profile, gpu, step) * noise)
        return total / (last - first)

    def read(self, device: GpuIdentity) -> GpuReading:
        if device.index in self._lost:
            raise DeviceLost(f"sim GPU {device.index} has fallen off the bus")
        i = self._slot[device.uuid]
        now = self._clock() - self._start
        t0 = self._last.get(i, max(0.0, now - 1.0))
        self._last[i] = now
        p = self._profiles[i]
        sm = self._window_mean(i, p.sm_active, 1, t0, now)
        util = self._window_mean(i, min(1.0, p.sm_active * 1.6), 2, t0, now)
        power = self.model.idle_watts + (self.model.tdp_watts - self.model.idle_watts) * (
            0.15 * p.memory_fraction + 0.8 * sm
        )
        self._energy[i] = self._energy.get(i, 0.0) + power * max(0.0, now - t0)
        reading = GpuReading(
            identity=device,
            utilization_ratio=util,
            memory_used_bytes=float(int(self.model.memory_bytes * p.memory_fraction)) or 0.0,
            memory_total_bytes=self.model.memory_bytes,
            power_watts=round(power, 3),
            energy_joules=round(self._energy[i], 3),
            temperature_celsius=float(round(32 + 45 * sm)),
            sm_clock_hertz=self.model.max_sm_clock_hertz if sm > 0 else 210e6,
            ecc_corrected=0.0,
            ecc_uncorrected=0.0,
            job_id=p.job_id,
            team=p.team,
        )
        if device.mig:  # as NVML: board-level fields belong to the parent GPU, not to an instance
            memory = float(int(self.model.memory_bytes * device.share))
            reading = replace(
                reading,
                utilization_ratio=None,
                memory_used_bytes=float(int(memory * p.memory_fraction)),
                memory_total_bytes=memory,
                power_watts=None,
                energy_joules=None,
                temperature_celsius=None,
                sm_clock_hertz=None,
                ecc_corrected=None,
                ecc_uncorrected=None,
            )
        if not self._profiling:
            return reading
        return replace(
            reading,
            sm_active_ratio=sm,
            sm_occupancy_ratio=self._window_mean(i, p.sm_occupancy, 3, t0, now),
            tensor_active_ratio=self._window_mean(i, p.tensor_active, 4, t0, now),
            dram_active_ratio=self._window_mean(i, p.dram_active, 5, t0, now),
        )

    def close(self) -> None:
        return None
