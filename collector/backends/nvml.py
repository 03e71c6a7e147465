"""NVML through nvidia-ml-py (`pynvml`): every field once per tick, XIDs on their own thread, GPM on Hopper+.

The `pynvml` module is the seam: tests pass a fake module to the constructor. Units are converted
here, once: power mW -> W (nvmlDeviceGetPowerUsage), energy mJ -> J
(nvmlDeviceGetTotalEnergyConsumption), SM clock MHz -> Hz (nvmlDeviceGetClockInfo), utilization
and GPM percentages -> 0..1. A function that answers NVML_ERROR_NOT_SUPPORTED is not called
again for that device and its series stays absent; NVML_ERROR_GPU_IS_LOST raises `DeviceLost`.

GPM (nvmlGpmSampleGet/nvmlGpmMetricsGet, Hopper and newer) gives SM activity, SM occupancy, tensor
activity and DRAM bandwidth utilization as exact means between two samples: one sample per tick,
so each value is the mean over the sampling window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from gpulens.collector.backends.base import (
    BackendUnavailable,
    Capabilities,
    DeviceLost,
    GpuIdentity,
    GpuReading,
    XidEvent,
    clean,
    ratio,
)

log = logging.getLogger(__name__)

# (GpuReading field, GPM metric constant name) — NVML_GPM_METRIC_* values are percentages 0..100.
GPM_FIELDS = (
    ("sm_active_ratio", "NVML_GPM_METRIC_SM_UTIL"),
    ("sm_occupancy_ratio", "NVML_GPM_METRIC_SM_OCCUPANCY"),
    ("tensor_active_ratio", "NVML_GPM_METRIC_ANY_TENSOR_UTIL"),
    ("dram_active_ratio", "NVML_GPM_METRIC_DRAM_BW_UTIL"),
)
EVENT_WAIT_MS = 500


def _import_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise BackendUnavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)") from None
    return pynvml


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlBackend:
    """All GPUs NVML can see. `nvml` is the pynvml module (a fake in tests)."""

    name = "nvml"

    def __init__(self, nvml: ModuleType | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.nv = nvml if nvml is not None else _import_pynvml()
        self._clock = clock
        try:
            self.nv.nvmlInit()
        except self.nv.NVMLError as exc:
            raise BackendUnavailable(
                f"NVML could not start: {exc} (is the NVIDIA driver installed and loaded?)"
            ) from None
        try:
            count = self.nv.nvmlDeviceGetCount()
            self._handles = [self.nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._devices = tuple(
                GpuIdentity(i, _text(self.nv.nvmlDeviceGetUUID(h)), _text(self.nv.nvmlDeviceGetName(h)))
                for i, h in enumerate(self._handles)
            )
        except self.nv.NVMLError as exc:
            self.nv.nvmlShutdown()
            raise BackendUnavailable(f"NVML could not list GPUs: {exc}") from None
        if not self._devices:
            self.nv.nvmlShutdown()
            raise BackendUnavailable("NVML answered but found no GPU")
        self._unsupported: set[tuple[int, str]] = set()
        self._logged: set[tuple[int, str, object]] = set()
        self._gpm = {i for i, h in enumerate(self._handles) if self._gpm_supported(h)}
        self._gpm_prev: dict[int, Any] = {}
        self._profiling = True
        self._xids: list[XidEvent] = []
        self._xid_lock = threading.Lock()
        self._stop = threading.Event()
        self._events = self._start_events()
        self._caps = self._probe()

    # -- capabilities, probed once -------------------------------------------------------------
    def _gpm_supported(self, handle: Any) -> bool:
        try:
            return bool(self.nv.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
        except (self.nv.NVMLError, AttributeError):
            return False

    def _probe(self) -> Capabilities:
        h = self._handles[0]
        nv = self.nv

        def works(fn: Callable[..., Any], *args: Any) -> bool:
            try:
                fn(h, *args)
                return True
            except nv.NVMLError:
                return False

        return Capabilities(
            profiling=bool(self._gpm),
            energy=works(nv.nvmlDeviceGetTotalEnergyConsumption),
            xid_events=self._events is not None,
            ecc=works(
                nv.nvmlDeviceGetTotalEccErrors, nv.NVML_MEMORY_ERROR_TYPE_CORRECTED, nv.NVML_VOLATILE_ECC
            ),
            processes=works(nv.nvmlDeviceGetComputeRunningProcesses),
            extra=("gpm",) if self._gpm else (),
        )

    def capabilities(self) -> Capabilities:
        return self._caps

    def devices(self) -> Sequence[GpuIdentity]:
        return self._devices

    def set_profiling(self, enabled: bool) -> None:
        self._profiling = enabled
        if not enabled:
            self._free_gpm_samples()

    # -- XID events ----------------------------------------------------------------------------
    def _start_events(self) -> threading.Thread | None:
        nv = self.nv
        try:
            self._event_set = nv.nvmlEventSetCreate()
        except nv.NVMLError as exc:
            log.warning("NVML events unavailable (%s): XIDs will not be counted", exc)
            return None
        registered = 0
        for i, h in enumerate(self._handles):
            try:
                nv.nvmlDeviceRegisterEvents(h, nv.nvmlEventTypeXidCriticalError, self._event_set)
                registered += 1
            except nv.NVMLError as exc:
                log.warning("GPU %d: XID events not available: %s", i, exc)
        if not registered:
            return None
        thread = threading.Thread(target=self._event_loop, name="gpulens-nvml-events", daemon=True)
        thread.start()
        return thread

    def _event_loop(self) -> None:
        nv = self.nv
        while not self._stop.is_set():
            try:
                data = nv.nvmlEventSetWait(self._event_set, EVENT_WAIT_MS)
            except nv.NVMLError as exc:
                if getattr(exc, "value", None) == nv.NVML_ERROR_TIMEOUT:
                    continue
                log.warning("NVML event wait failed: %s; XID events stop", exc)
                return
            if data.eventType & nv.nvmlEventTypeXidCriticalError:
                self._record_xid(data)

    def _record_xid(self, data: Any) -> None:
        try:
            gpu = int(self.nv.nvmlDeviceGetIndex(data.device))
        except self.nv.NVMLError:
            gpu = -1
        with self._xid_lock:
            self._xids.append(XidEvent(gpu, int(data.eventData), self._clock()))

    def poll_xids(self) -> list[XidEvent]:
        with self._xid_lock:
            events, self._xids = self._xids, []
        return [e for e in events if 0 <= e.gpu < len(self._devices)]

    # -- one tick ------------------------------------------------------------------------------
    def _call(self, i: int, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(handle, *args), or None if unsupported/failed; GPU_IS_LOST raises DeviceLost."""
        if (i, key) in self._unsupported:
            return None
        nv = self.nv
        try:
            return fn(self._handles[i], *args)
        except nv.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == nv.NVML_ERROR_GPU_IS_LOST:
                raise DeviceLost(f"GPU {i}: {exc}") from None
            if code in (nv.NVML_ERROR_NOT_SUPPORTED, nv.NVML_ERROR_FUNCTION_NOT_FOUND):
                self._unsupported.add((i, key))
            if (i, key, code) not in self._logged:
                self._logged.add((i, key, code))
                log.info("nvml: GPU %d %s: %s (series omitted)", i, key, exc)
            return None

    def read(self, device: GpuIdentity) -> GpuReading:
        i, nv = device.index, self.nv
        util = self._call(i, "utilization", nv.nvmlDeviceGetUtilizationRates)
        mem = self._call(i, "memory", nv.nvmlDeviceGetMemoryInfo)
        procs = self._call(i, "processes", nv.nvmlDeviceGetComputeRunningProcesses) or ()
        gpm = self._gpm_read(i) if i in self._gpm and self._profiling else {}
        return GpuReading(
            identity=device,
            utilization_ratio=ratio(clean(util.gpu)) if util is not None else None,
            memory_used_bytes=clean(mem.used) if mem is not None else None,
            memory_total_bytes=clean(mem.total) if mem is not None else None,
            power_watts=clean(self._call(i, "power", nv.nvmlDeviceGetPowerUsage), 1e-3),
            energy_joules=clean(self._call(i, "energy", nv.nvmlDeviceGetTotalEnergyConsumption), 1e-3),
            temperature_celsius=clean(
                self._call(i, "temperature", nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU)
            ),
            sm_clock_hertz=clean(self._call(i, "sm_clock", nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM), 1e6),
            ecc_corrected=clean(
                self._call(
                    i,
                    "ecc_corrected",
                    nv.nvmlDeviceGetTotalEccErrors,
                    nv.NVML_MEMORY_ERROR_TYPE_CORRECTED,
                    nv.NVML_VOLATILE_ECC,
                )
            ),
            ecc_uncorrected=clean(
                self._call(
                    i,
                    "ecc_uncorrected",
                    nv.nvmlDeviceGetTotalEccErrors,
                    nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                    nv.NVML_VOLATILE_ECC,
                )
            ),
            pids=tuple(int(p.pid) for p in procs),
            **gpm,
        )

    def _gpm_read(self, i: int) -> dict[str, float | None]:
        """GPM ratios over the window since the previous tick's sample ({} on the first tick)."""
        nv = self.nv
        sample = self._call(i, "gpm_alloc", lambda _h: nv.nvmlGpmSampleAlloc())
        if sample is None or self._call(i, "gpm_sample", nv.nvmlGpmSampleGet, sample) is None:
            return {}
        prev, self._gpm_prev[i] = self._gpm_prev.get(i), sample
        if prev is None:
            return {}
        try:
            request = nv.c_nvmlGpmMetricsGet_t()
            request.version = nv.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = len(GPM_FIELDS)
            request.sample1, request.sample2 = prev, sample
            for n, (_field, const) in enumerate(GPM_FIELDS):
                request.metrics[n].metricId = getattr(nv, const)
            result = self._call(i, "gpm_metrics", lambda _h: nv.nvmlGpmMetricsGet(request))
        finally:
            self._call(i, "gpm_free", lambda _h: nv.nvmlGpmSampleFree(prev))
        if result is None:
            return {}
        return {
            field: ratio(clean(result.metrics[n].value)) if result.metrics[n].nvmlReturn == 0 else None
            for n, (field, _const) in enumerate(GPM_FIELDS)
        }

    def _free_gpm_samples(self) -> None:
        for i in list(self._gpm_prev):
            self._call(i, "gpm_free", lambda _h, s=self._gpm_prev.pop(i): self.nv.nvmlGpmSampleFree(s))

    def close(self) -> None:
        self._stop.set()
        if self._events is not None:
            self._events.join(timeout=2)
            try:
                self.nv.nvmlEventSetFree(self._event_set)
            except self.nv.NVMLError:
                pass
        self._free_gpm_samples()
        try:
            self.nv.nvmlShutdown()
        except self.nv.NVMLError:
            pass
