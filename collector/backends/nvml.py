"""NVML through nvidia-ml-py (`pynvml`): every field once per tick, XIDs on their own thread, GPM on Hopper+.

The `pynvml` module is the seam: tests pass a fake module to the constructor. Units are converted
here, once: power mW -> W (nvmlDeviceGetPowerUsage), energy mJ -> J
(nvmlDeviceGetTotalEnergyConsumption), SM clock MHz -> Hz (nvmlDeviceGetClockInfo), utilization
and GPM percentages -> 0..1. A function that answers NVML_ERROR_NOT_SUPPORTED is not called
again for that device and its series stays absent; NVML_ERROR_GPU_IS_LOST raises `DeviceLost`.

GPM (nvmlGpmSampleGet/nvmlGpmMetricsGet, Hopper and newer) gives SM activity, SM occupancy, tensor
activity and DRAM bandwidth utilization as exact means between two samples: one sample per tick,
so each value is the mean over the sampling window. Utilization is the mean of NVML's own
utilization samples (nvmlDeviceGetSamples, one per 1/6-1 s) taken since the previous tick, so it
too is a window mean; where samples are not available it falls back to nvmlDeviceGetUtilizationRates.

One GPU never blinds the node: a handle that fails at start (NO_PERMISSION, GPU_IS_LOST) is listed
and reports `gpulens_gpu_up 0`; the XID thread survives errors and registers its events again.

MIG: on a GPU in MIG mode every MIG device (nvmlDeviceGetMigDeviceHandleByIndex) is a device of its
own, with its MIG UUID, `mig` = profile/GPU-instance id and a share of the parent's slices
(gpuInstanceSliceCount / nvmlDeviceGetMaxMigDeviceCount); board-level fields (power, energy,
temperature, clock, ECC, utilization) and GPM are read on the parent only, so instances omit them.
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
EVENT_RETRY_S = (1.0, 30.0)  # backoff of the XID thread after an error: first, longest
MIG_BOARD_FIELDS = frozenset(
    {
        "utilization",
        "utilization_samples",
        "power",
        "energy",
        "temperature",
        "sm_clock",
        "ecc_corrected",
        "ecc_uncorrected",
    }
)


def _import_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise BackendUnavailable("nvidia-ml-py is not installed (pip install 'gpulens[agent]')") from None
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
        except self.nv.NVMLError as exc:
            self.nv.nvmlShutdown()
            raise BackendUnavailable(f"NVML could not list GPUs: {exc}") from None
        if not count:
            self.nv.nvmlShutdown()
            raise BackendUnavailable("NVML answered but found no GPU")
        # Parallel lists, one entry per device (a GPU, or a MIG instance): handle None = unusable.
        self._handles: list[Any] = []
        devices: list[GpuIdentity] = []
        self._parents: list[Any] = []  # the GPUs' own handles, for XID events
        for i in range(count):
            for device, handle in self._open(i):
                devices.append(device)
                self._handles.append(handle)
        self._devices = tuple(devices)
        self._slot = {d.uuid: n for n, d in enumerate(devices)}
        self._unsupported: set[tuple[int, str]] = set()
        self._logged: set[tuple[int, str, object]] = set()
        self._gpm = {
            n
            for n, (d, h) in enumerate(zip(devices, self._handles, strict=True))
            if not d.mig and h is not None
        }
        self._gpm = {n for n in self._gpm if self._gpm_supported(self._handles[n])}
        self._gpm_prev: dict[int, Any] = {}
        self._util_ts: dict[int, int] = {}  # newest utilization sample seen per device (µs)
        self._profiling = True
        self._xids: list[XidEvent] = []
        self._xid_lock = threading.Lock()
        self._stop = threading.Event()
        self._events = self._start_events()
        self._caps = self._probe()

    # -- devices, found once ----------------------------------------------------------------------
    def _open(self, i: int) -> list[tuple[GpuIdentity, Any]]:
        """GPU `i` as devices: itself, its MIG instances, or an unusable placeholder (up 0)."""
        nv = self.nv
        try:
            h = nv.nvmlDeviceGetHandleByIndex(i)
            uuid, name = _text(nv.nvmlDeviceGetUUID(h)), _text(nv.nvmlDeviceGetName(h))
        except nv.NVMLError as exc:
            log.warning("nvml: GPU %d cannot be opened (%s): reported as gpulens_gpu_up 0", i, exc)
            return [(GpuIdentity(i, f"GPU-unavailable-{i}", "unknown"), None)]
        self._parents.append(h)
        instances = self._mig_instances(i, h, name)
        return instances or [(GpuIdentity(i, uuid, name), h)]

    def _mig_instances(self, i: int, h: Any, name: str) -> list[tuple[GpuIdentity, Any]]:
        """The MIG devices of GPU `i` when it is in MIG mode, else []."""
        nv = self.nv
        try:
            current, _pending = nv.nvmlDeviceGetMigMode(h)
            if current != nv.NVML_DEVICE_MIG_ENABLE:
                return []
            slots = int(nv.nvmlDeviceGetMaxMigDeviceCount(h))
        except (nv.NVMLError, AttributeError):
            return []  # no MIG on this GPU or these bindings
        out = []
        for j in range(slots):
            try:
                mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
                uuid = _text(nv.nvmlDeviceGetUUID(mh))
                gi = int(nv.nvmlDeviceGetGpuInstanceId(mh))
                slices = int(nv.nvmlDeviceGetAttributes(mh).gpuInstanceSliceCount)
                profile = _text(nv.nvmlDeviceGetName(mh)).rsplit(" ", 1)[-1]  # "... MIG 3g.40gb"
            except nv.NVMLError:
                continue  # an empty MIG slot (NOT_FOUND)
            out.append((GpuIdentity(i, uuid, name, f"{profile}/{gi}", slices / max(slots, 1)), mh))
        return out

    # -- capabilities, probed once -------------------------------------------------------------
    def _gpm_supported(self, handle: Any) -> bool:
        try:
            return bool(self.nv.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
        except (self.nv.NVMLError, AttributeError):
            return False

    def _probe(self) -> Capabilities:
        h = next((h for h in self._parents), None)
        nv = self.nv

        def works(fn: Callable[..., Any], *args: Any) -> bool:
            if h is None:
                return False
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
    def _register(self, quiet: bool = False) -> int:
        """A fresh event set with XID events of every GPU that accepts them; how many did."""
        nv = self.nv
        old, self._event_set = getattr(self, "_event_set", None), nv.nvmlEventSetCreate()
        if old is not None:
            try:
                nv.nvmlEventSetFree(old)
            except nv.NVMLError:
                pass
        registered = 0
        for h in self._parents:
            try:
                nv.nvmlDeviceRegisterEvents(h, nv.nvmlEventTypeXidCriticalError, self._event_set)
                registered += 1
            except nv.NVMLError as exc:
                if not quiet:
                    log.warning("nvml: a GPU's XID events are not available: %s", exc)
        return registered

    def _start_events(self) -> threading.Thread | None:
        try:
            registered = self._register()
        except self.nv.NVMLError as exc:
            log.warning("NVML events unavailable (%s): XIDs will not be counted", exc)
            return None
        if not registered:
            return None
        thread = threading.Thread(target=self._event_loop, name="gpulens-nvml-events", daemon=True)
        thread.start()
        return thread

    def _event_loop(self) -> None:
        """Waits for XIDs until closed; an error (a GPU lost after XID 79) never ends it."""
        nv = self.nv
        backoff = EVENT_RETRY_S[0]
        while not self._stop.is_set():
            try:
                data = nv.nvmlEventSetWait(self._event_set, EVENT_WAIT_MS)
            except nv.NVMLError as exc:
                if getattr(exc, "value", None) == nv.NVML_ERROR_TIMEOUT:
                    backoff = EVENT_RETRY_S[0]
                    continue
                log.warning("NVML event wait failed: %s; registering XID events again in %.0fs", exc, backoff)
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, EVENT_RETRY_S[1])
                try:
                    self._register(quiet=True)
                except nv.NVMLError as again:
                    log.warning("NVML events could not be registered again: %s", again)
                continue
            backoff = EVENT_RETRY_S[0]
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
            if code == nv.NVML_ERROR_NOT_FOUND:
                return None  # e.g. no utilization sample since the last one: not worth a log line
            if (i, key, code) not in self._logged:
                self._logged.add((i, key, code))
                log.info("nvml: GPU %d %s: %s (series omitted)", i, key, exc)
            return None

    def read(self, device: GpuIdentity) -> GpuReading:
        i, nv = self._slot[device.uuid], self.nv
        if self._handles[i] is None:
            raise DeviceLost(f"GPU {device.index} could not be opened at start")
        if device.mig:
            for key in MIG_BOARD_FIELDS:  # the parent's: asked once would only fail
                self._unsupported.add((i, key))
        mem = self._call(i, "memory", nv.nvmlDeviceGetMemoryInfo)
        procs = self._call(i, "processes", nv.nvmlDeviceGetComputeRunningProcesses) or ()
        gpm = self._gpm_read(i) if i in self._gpm and self._profiling else {}
        return GpuReading(
            identity=device,
            utilization_ratio=self._utilization(i),
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

    def _utilization(self, i: int) -> float | None:
        """Mean of NVML's utilization samples since the previous tick; the latest rate where none."""
        nv = self.nv
        last = self._util_ts.get(i, 0)
        got = self._call(
            i, "utilization_samples", nv.nvmlDeviceGetSamples, nv.NVML_GPU_UTILIZATION_SAMPLES, last
        )
        fresh = [s for s in got[1] if s.timeStamp > last] if got is not None else []
        if fresh:
            self._util_ts[i] = max(s.timeStamp for s in fresh)
            if last:  # the first call returns NVML's whole buffer: older than this agent's window
                return ratio(sum(float(s.sampleValue.uiVal) for s in fresh) / len(fresh))
        rates = self._call(i, "utilization", nv.nvmlDeviceGetUtilizationRates)
        return ratio(clean(rates.gpu)) if rates is not None else None

    def _gpm_read(self, i: int) -> dict[str, float | None]:
        """GPM ratios over the window since the previous tick's sample ({} on the first tick)."""
        nv = self.nv
        sample = self._call(i, "gpm_alloc", lambda _h: nv.nvmlGpmSampleAlloc())
        if sample is None:
            return {}
        try:
            taken = self._call(i, "gpm_sample", nv.nvmlGpmSampleGet, sample)
        except DeviceLost:
            self._call(i, "gpm_free", lambda _h: nv.nvmlGpmSampleFree(sample))
            raise
        if taken is None:  # a failed sample is freed here, or one leaks every tick
            self._call(i, "gpm_free", lambda _h: nv.nvmlGpmSampleFree(sample))
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


class NvmlProcesses:
    """NVML's compute processes per device UUID, for a backend whose readings carry none (DCGM)."""

    def __init__(self, nvml: ModuleType | None = None) -> None:
        self.nv = nvml if nvml is not None else _import_pynvml()
        try:
            self.nv.nvmlInit()
        except self.nv.NVMLError as exc:
            raise BackendUnavailable(f"NVML could not start: {exc}") from None
        self._handles: dict[str, Any] = {}
        try:
            for i in range(self.nv.nvmlDeviceGetCount()):
                self._add(i)
        except self.nv.NVMLError as exc:
            self.nv.nvmlShutdown()
            raise BackendUnavailable(f"NVML could not list GPUs: {exc}") from None

    def _add(self, i: int) -> None:
        nv = self.nv
        try:
            h = nv.nvmlDeviceGetHandleByIndex(i)
            self._handles[_text(nv.nvmlDeviceGetUUID(h))] = h
            if nv.nvmlDeviceGetMigMode(h)[0] == nv.NVML_DEVICE_MIG_ENABLE:
                for j in range(int(nv.nvmlDeviceGetMaxMigDeviceCount(h))):
                    try:
                        mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
                    except nv.NVMLError:
                        continue
                    self._handles[_text(nv.nvmlDeviceGetUUID(mh))] = mh
        except (nv.NVMLError, AttributeError) as exc:
            log.info("nvml: processes of GPU %d not available: %s", i, exc)

    def __call__(self, device: GpuIdentity) -> tuple[int, ...] | None:
        handle = self._handles.get(device.uuid)
        if handle is None:
            return None
        try:
            return tuple(int(p.pid) for p in self.nv.nvmlDeviceGetComputeRunningProcesses(handle))
        except self.nv.NVMLError:
            return None

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except self.nv.NVMLError:
            pass
