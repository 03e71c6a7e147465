"""A fake `pynvml` module for the NVML backend's seam: the same names, scripted answers.

Only NVML itself is faked (it has no file form); everything above the backend runs for real.
Devices are `FakeGpu` records; a test flips `lost`, adds to `unsupported`, or pushes XID events.
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

    def dev(h: int, fn: str) -> FakeGpu:
        m.calls.append((fn, h))
        g = gpus[h]
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
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetIndex = lambda h: h
    m.nvmlDeviceGetUUID = lambda h: gpus[h].uuid
    m.nvmlDeviceGetName = lambda h: gpus[h].name.encode()  # older bindings return bytes
    m.nvmlDeviceGetUtilizationRates = lambda h: _Obj(gpu=dev(h, "util").util, memory=0)
    m.nvmlDeviceGetMemoryInfo = lambda h: _Obj(used=dev(h, "memory").mem_used, total=gpus[h].mem_total)
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
    m.nvmlGpmSampleAlloc = lambda: _Obj(gpu=None)

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
    m.nvmlEventSetCreate = lambda: "event-set"
    m.registered = []
    m.nvmlDeviceRegisterEvents = lambda h, types_, es: m.registered.append((h, types_))

    def wait(es: str, timeout_ms: int) -> _Obj:
        try:
            gpu, xid = m.events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise NVMLError(real.NVML_ERROR_TIMEOUT) from None
        return _Obj(device=gpu, eventType=real.nvmlEventTypeXidCriticalError, eventData=xid)

    m.nvmlEventSetWait = wait
    m.nvmlEventSetFree = lambda es: None
    return m
