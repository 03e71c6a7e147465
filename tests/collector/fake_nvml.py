"""A fake `pynvml` module for the NVML backend's seam: the same names, scripted answers.

Only NVML itself is faked (it has no file form); everything above the backend runs for real.
Devices are `FakeGpu` records; a test flips `lost`, adds to `unsupported`, or pushes XID events
(or an `NVMLError` the event wait raises). A GPU in MIG mode lists `FakeMig` instances; their handles
are (gpu, slot) tuples. `open_error` makes nvmlDeviceGetHandleByIndex fail for that GPU.
"""

from __future__ import annotations

import queue
import types
from dataclasses import dataclass, field

import pynvml as real

# Constants copied from the real module so the backend sees the same values it would in production.
CONSTANTS = {name: getattr(real, name) for name in dir(real) if name.startswith(("NVML_", "nvmlEventType"))}


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FakeMig:
    uuid: str
    profile: str = "3g.40gb"
    gi: int = 1
    slices: int = 3
    mem_used: int = 5 * 2**30
    mem_total: int = 40 * 2**30
    pids: tuple[int, ...] = ()
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    util: int = 50
    mem_used: int = 10 * 2**30
    mem_total: int = 80 * 2**30
    power_mw: int = 350_000
    energy_mj: int = 1_000_000
    temp: int = 60
    sm_mhz: int = 1980
    ecc: tuple[int, int] = (3, 0)
    pids: tuple[int, ...] = ()
    gpm: bool = True
    gpm_values: dict[int, float] = field(default_factory=lambda: {2: 80.0, 3: 40.0, 5: 55.0, 10: 35.0})
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False
    open_error: int | None = None  # an NVML error code nvmlDeviceGetHandleByIndex raises
    util_samples: list[tuple[int, int]] = field(default_factory=list)  # (timestamp µs, percent)
    mig: list[FakeMig | None] | None = None  # MIG mode: one entry per slot (None: empty slot)


class _Obj(types.SimpleNamespace):
    pass


def make_fake_nvml(gpus: list[FakeGpu], *, no_library: bool = False) -> types.ModuleType:
    """A module object exposing the pynvml functions the backend calls."""
    m = types.ModuleType("fake_pynvml")
    m.__dict__.update(CONSTANTS)
    m.NVMLError = NVMLError
    m.calls = []  # (function, gpu index) log, to check what was (not) called
    m.events = queue.Queue()  # (gpu index, xid) pushed by tests
    m.gpus = gpus
    m.shutdown = False

    def dev(h: object, fn: str) -> FakeGpu:
        m.calls.append((fn, h))
        if isinstance(h, tuple):
            gpu, slot = h
            inst = gpus[gpu].mig[slot]  # type: ignore[index]
            if inst.lost or gpus[gpu].lost:
                raise NVMLError(real.NVML_ERROR_GPU_IS_LOST)
            if fn in inst.unsupported or fn not in ("memory", "processes"):
                raise NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
            return inst  # type: ignore[return-value]
        g = gpus[h]  # type: ignore[index]
        if g.lost:
            raise NVMLError(real.NVML_ERROR_GPU_IS_LOST)
        if fn in g.unsupported:
            raise NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return g

    def nvmlInit() -> None:
        if no_library:
            raise NVMLError(real.NVML_ERROR_LIBRARY_NOT_FOUND)

    def nvmlShutdown() -> None:
        m.shutdown = True

    m.nvmlInit, m.nvmlShutdown = nvmlInit, nvmlShutdown
    m.nvmlDeviceGetCount = lambda: len(gpus)

    def handle_by_index(i: int) -> int:
        if gpus[i].open_error is not None:
            raise NVMLError(gpus[i].open_error)
        return i

    def uuid(h: object) -> str:
        if isinstance(h, tuple):
            return gpus[h[0]].mig[h[1]].uuid  # type: ignore[index,union-attr]
        return gpus[h].uuid  # type: ignore[index]

    def name(h: object) -> bytes:
        if isinstance(h, tuple):
            return f"{gpus[h[0]].name} MIG {gpus[h[0]].mig[h[1]].profile}".encode()  # type: ignore[index,union-attr]
        return gpus[h].name.encode()  # type: ignore[index]  # older bindings return bytes

    m.nvmlDeviceGetHandleByIndex = handle_by_index
    m.nvmlDeviceGetIndex = lambda h: h
    m.nvmlDeviceGetUUID = uuid
    m.nvmlDeviceGetName = name

    def mig_mode(h: int) -> tuple[int, int]:
        on = real.NVML_DEVICE_MIG_ENABLE if gpus[h].mig is not None else real.NVML_DEVICE_MIG_DISABLE
        return on, on

    def mig_handle(h: int, slot: int) -> tuple[int, int]:
        slots = gpus[h].mig or []
        if slot >= len(slots) or slots[slot] is None:
            raise NVMLError(real.NVML_ERROR_NOT_FOUND)
        return (h, slot)

    m.nvmlDeviceGetMigMode = mig_mode
    m.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7
    m.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle
    m.nvmlDeviceGetGpuInstanceId = lambda h: gpus[h[0]].mig[h[1]].gi  # type: ignore[index,union-attr]
    m.nvmlDeviceGetAttributes = lambda h: _Obj(
        gpuInstanceSliceCount=gpus[h[0]].mig[h[1]].slices  # type: ignore[index,union-attr]
    )

    def samples(h: int, kind: int, since: int) -> tuple[int, list[_Obj]]:
        g = dev(h, "util_samples")
        fresh = [_Obj(timeStamp=t, sampleValue=_Obj(uiVal=v)) for t, v in g.util_samples if t > since]
        if not fresh:
            raise NVMLError(real.NVML_ERROR_NOT_FOUND)
        return real.NVML_VALUE_TYPE_UNSIGNED_INT, fresh

    m.nvmlDeviceGetSamples = samples
    m.nvmlDeviceGetUtilizationRates = lambda h: _Obj(gpu=dev(h, "util").util, memory=0)

    def memory(h: object) -> _Obj:
        d = dev(h, "memory")
        return _Obj(used=d.mem_used, total=d.mem_total)

    m.nvmlDeviceGetMemoryInfo = memory
    m.nvmlDeviceGetPowerUsage = lambda h: dev(h, "power").power_mw
    m.nvmlDeviceGetTotalEnergyConsumption = lambda h: dev(h, "energy").energy_mj
    m.nvmlDeviceGetTemperature = lambda h, sensor: dev(h, "temperature").temp
    m.nvmlDeviceGetClockInfo = lambda h, clock: dev(h, "clock").sm_mhz
    m.nvmlDeviceGetTotalEccErrors = lambda h, kind, counter: dev(h, "ecc").ecc[kind]
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [
        _Obj(pid=p, usedGpuMemory=1) for p in dev(h, "processes").pids
    ]

    # GPM: a sample records the GPU it came from; metrics are the GPU's scripted percentages.
    def gpm_support(h: int) -> _Obj:
        return _Obj(isSupportedDevice=int(gpus[h].gpm))

    m.nvmlGpmQueryDeviceSupport = gpm_support
    m.freed = []
    m.allocated = []

    def sample_alloc() -> _Obj:
        sample = _Obj(gpu=None)
        m.allocated.append(sample)
        return sample

    m.nvmlGpmSampleAlloc = sample_alloc

    def sample_get(h: int, sample: _Obj) -> _Obj:
        dev(h, "gpm")
        sample.gpu = h
        return sample

    m.nvmlGpmSampleGet = sample_get
    m.nvmlGpmSampleFree = lambda s: m.freed.append(s)

    class Metric:
        def __init__(self) -> None:
            self.metricId, self.nvmlReturn, self.value = 0, 0, 0.0

    class MetricsGet:
        def __init__(self) -> None:
            self.version = self.numMetrics = 0
            self.sample1 = self.sample2 = None
            self.metrics = [Metric() for _ in range(8)]

    def metrics_get(req: MetricsGet) -> MetricsGet:
        g = gpus[req.sample2.gpu]
        for metric in req.metrics[: req.numMetrics]:
            metric.value = g.gpm_values.get(metric.metricId, 0.0)
            metric.nvmlReturn = 0 if metric.metricId in g.gpm_values else real.NVML_ERROR_NOT_SUPPORTED
        return req

    m.c_nvmlGpmMetricsGet_t = MetricsGet
    m.nvmlGpmMetricsGet = metrics_get

    # Events: nvmlEventSetWait blocks up to timeout for a pushed (gpu, xid).
    m.event_sets = []

    def event_set_create() -> str:
        m.event_sets.append(f"event-set-{len(m.event_sets)}")
        return m.event_sets[-1]

    m.nvmlEventSetCreate = event_set_create
    m.registered = []
    m.nvmlDeviceRegisterEvents = lambda h, types_, es: m.registered.append((h, types_))

    def wait(es: str, timeout_ms: int) -> _Obj:
        try:
            item = m.events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise NVMLError(real.NVML_ERROR_TIMEOUT) from None
        if isinstance(item, NVMLError):
            raise item
        gpu, xid = item
        return _Obj(device=gpu, eventType=real.nvmlEventTypeXidCriticalError, eventData=xid)

    m.nvmlEventSetWait = wait
    m.nvmlEventSetFree = lambda es: None
    return m
