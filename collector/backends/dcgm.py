"""DCGM through its Python bindings (pydcgm, dcgm_fields), import-guarded: DCGM is optional.

The seam is `DcgmSession` (GPU list, latest values per field, profiling pause); `PydcgmSession`
talks to the host engine (nv-hostengine, or embedded) and tests pass a fake. This module maps
DCGM field ids to readings, converting units once: FB used/total MiB -> bytes (250/252), energy
mJ -> J (156), SM clock MHz -> Hz (100), GPU_UTIL % -> 0..1 (203); profiling fields 1002-1005 are
already 0..1 means over DCGM's own sampling window. Blank values (DCGM_*_BLANK sentinels) are absent.

A value is only as good as its timestamp: one older than `stale_after` seconds (DCGM stopped updating
it) is absent, and a GPU with no fresh value at all is lost (`DeviceLost` -> `gpulens_gpu_up 0`, no
held seconds, no integrals), as NVML reports GPU_IS_LOST. XIDs come from DCGM_FI_DEV_XID_ERRORS (230):
every value recorded since the previous tick is an event (two XIDs in one interval count twice).
DCGM readings carry no processes: where NVML answers beside DCGM, `processes` (NVML's process lists)
fills `pids`, so the process/Slurm job mapping and the pid trust check work under DCGM too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

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

MIB = 1024.0 * 1024.0
# GpuReading field -> (DCGM field id, scale). Ids from dcgm_fields.py (DCGM 3.x/4.x).
FIELDS: dict[str, tuple[int, float]] = {
    "sm_clock_hertz": (100, 1e6),  # DCGM_FI_DEV_SM_CLOCK, MHz
    "temperature_celsius": (150, 1.0),  # DCGM_FI_DEV_GPU_TEMP
    "power_watts": (155, 1.0),  # DCGM_FI_DEV_POWER_USAGE, W
    "energy_joules": (156, 1e-3),  # DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION, mJ
    "utilization_ratio": (203, 0.01),  # DCGM_FI_DEV_GPU_UTIL, %
    "memory_total_bytes": (250, MIB),  # DCGM_FI_DEV_FB_TOTAL, MiB
    "memory_used_bytes": (252, MIB),  # DCGM_FI_DEV_FB_USED, MiB
    "ecc_corrected": (310, 1.0),  # DCGM_FI_DEV_ECC_SBE_VOL_TOTAL
    "ecc_uncorrected": (311, 1.0),  # DCGM_FI_DEV_ECC_DBE_VOL_TOTAL
}
PROFILING: dict[str, int] = {
    "sm_active_ratio": 1002,  # DCGM_FI_PROF_SM_ACTIVE
    "sm_occupancy_ratio": 1003,  # DCGM_FI_PROF_SM_OCCUPANCY
    "tensor_active_ratio": 1004,  # DCGM_FI_PROF_PIPE_TENSOR_ACTIVE
    "dram_active_ratio": 1005,  # DCGM_FI_PROF_DRAM_ACTIVE
}
XID_FIELD = 230  # DCGM_FI_DEV_XID_ERRORS: the last XID, with its timestamp

# One value as the session reports it: (value or None if blank, timestamp in microseconds).
Value = tuple[float | None, int]


class DcgmSession(Protocol):
    def gpus(self) -> Sequence[GpuIdentity]: ...

    def watch(self, field_ids: Sequence[int], interval_s: float) -> Sequence[int]: ...  # -> ids watched

    def latest(self) -> Mapping[int, Mapping[int, Value]]: ...  # gpu index -> field id -> value

    def xids_since_last_call(self) -> Mapping[int, Sequence[Value]]: ...  # gpu -> every XID value

    def pause_profiling(self, paused: bool) -> None: ...

    def close(self) -> None: ...


class DcgmBackend:
    """All GPUs the DCGM host engine reports; `session` is the seam (a fake in tests)."""

    name = "dcgm"

    def __init__(
        self,
        session: DcgmSession | None = None,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        processes: Callable[[GpuIdentity], tuple[int, ...] | None] | None = None,
    ) -> None:
        self.session = session if session is not None else PydcgmSession()
        self._clock = clock
        self._wall = wall  # DCGM timestamps are wall-clock microseconds
        self._processes = processes
        self.stale_after = max(5.0, 3 * interval_s)  # seconds: a value DCGM stopped updating is absent
        self._devices = tuple(self.session.gpus())
        if not self._devices:
            raise BackendUnavailable("DCGM answered but reports no GPU")
        wanted = [fid for fid, _ in FIELDS.values()] + list(PROFILING.values()) + [XID_FIELD]
        self._watched = set(self.session.watch(wanted, interval_s))
        self._latest: Mapping[int, Mapping[int, Value]] = {}
        self._xid_started = False
        self._profiling = True

    def devices(self) -> Sequence[GpuIdentity]:
        return self._devices

    def capabilities(self) -> Capabilities:
        w = self._watched
        return Capabilities(
            profiling=all(f in w for f in PROFILING.values()),
            energy=156 in w,
            xid_events=XID_FIELD in w,
            ecc=311 in w,
            processes=self._processes is not None,
            extra=("dcgm_profiling",) if 1002 in w else (),
        )

    def set_profiling(self, enabled: bool) -> None:
        """Pause/resume DCGM profiling (dcgmProfPause) so Nsight/CUPTI can take the counters."""
        self._profiling = enabled
        self.session.pause_profiling(not enabled)

    def _refresh(self) -> None:
        self._latest = self.session.latest()

    def poll_xids(self) -> list[XidEvent]:
        self._refresh()  # poll_xids runs first in each tick: one fetch serves every read() after it
        history = self.session.xids_since_last_call()
        if not self._xid_started:  # what DCGM kept from before the agent watched is not news
            self._xid_started = True
            return []
        now = self._clock()
        return [
            XidEvent(gpu, int(value), now)
            for gpu, values in sorted(history.items())
            for value, _ts in values
            if value is not None
        ]

    def read(self, device: GpuIdentity) -> GpuReading:
        fields = self._latest.get(device.index, {})
        oldest = int((self._wall() - self.stale_after) * 1e6)
        fresh = {fid: v for fid, (v, ts) in fields.items() if ts >= oldest and fid != XID_FIELD}
        if not fresh:
            raise DeviceLost(f"DCGM has no value newer than {self.stale_after:g}s for GPU {device.index}")
        values: dict[str, float | None] = {}
        for name, (fid, scale) in FIELDS.items():
            values[name] = clean(fresh.get(fid), scale)
        values["utilization_ratio"] = ratio(values["utilization_ratio"], percent=False)
        if self._profiling:
            for name, fid in PROFILING.items():
                values[name] = ratio(clean(fresh.get(fid)), percent=False)
        pids = self._processes(device) if self._processes is not None else None
        return GpuReading(identity=device, pids=pids or (), **values)

    def close(self) -> None:
        self.session.close()
        close = getattr(self._processes, "close", None)
        if close is not None:
            close()


class PydcgmSession:
    """The real session over DCGM's bindings (`pydcgm`, `dcgm_structs`, `dcgm_agent`), embedded mode."""

    def __init__(self) -> None:
        try:
            import dcgm_agent  # type: ignore[import-not-found]
            import dcgm_structs  # type: ignore[import-not-found]
            import pydcgm  # type: ignore[import-not-found]
        except ImportError:
            raise BackendUnavailable("DCGM's Python bindings (pydcgm) are not installed") from None
        self._agent, self._structs = dcgm_agent, dcgm_structs
        try:
            self._handle = pydcgm.DcgmHandle(opMode=dcgm_structs.DCGM_OPERATION_MODE_AUTO)
            system = self._handle.GetSystem()
            self._ids = list(system.discovery.GetAllSupportedGpuIds())
            self._group = pydcgm.DcgmGroup(
                self._handle, groupName="gpulens", groupType=dcgm_structs.DCGM_GROUP_EMPTY
            )
            for gid in self._ids:
                self._group.AddGpu(gid)
            self._attrs = {gid: system.discovery.GetGpuAttributes(gid) for gid in self._ids}
        except dcgm_structs.DCGMError as exc:
            raise BackendUnavailable(f"DCGM could not start: {exc}") from None
        self._pydcgm = pydcgm
        self._field_group: Any = None
        self._xid_group: Any = None
        self._xids: Any = None

    def gpus(self) -> Sequence[GpuIdentity]:
        return [
            GpuIdentity(
                gid, str(self._attrs[gid].identifiers.uuid), str(self._attrs[gid].identifiers.deviceName)
            )
            for gid in self._ids
        ]

    def watch(self, field_ids: Sequence[int], interval_s: float) -> Sequence[int]:
        watched = []
        for fid in field_ids:  # profiling fields fail on GPUs without them: watch what works
            try:
                fg = self._pydcgm.DcgmFieldGroup(self._handle, name=f"gpulens-{fid}", fieldIds=[fid])
                self._group.samples.WatchFields(fg, int(interval_s * 1e6), 60.0, 0)
                watched.append(fid)
            except self._structs.DCGMError as exc:
                log.info("dcgm: field %d not watched: %s", fid, exc)
        self._field_group = self._pydcgm.DcgmFieldGroup(self._handle, name="gpulens", fieldIds=watched)
        return watched

    def latest(self) -> Mapping[int, Mapping[int, Value]]:
        values = self._group.samples.GetLatest_v2(self._field_group).values
        out: dict[int, dict[int, Value]] = {}
        for gid, fields in values.get(self._structs.DCGM_FE_GPU, {}).items():
            out[int(gid)] = {
                int(fid): (None if v[-1].isBlank else float(v[-1].value), int(v[-1].ts))
                for fid, v in fields.items()
                if len(v)
            }
        return out

    def xids_since_last_call(self) -> Mapping[int, Sequence[Value]]:
        """Every XID value DCGM recorded since the previous call (GetAllSinceLastCall), per GPU."""
        if self._xid_group is None:
            self._xid_group = self._pydcgm.DcgmFieldGroup(
                self._handle, name="gpulens-xid", fieldIds=[XID_FIELD]
            )
        self._xids = self._group.samples.GetAllSinceLastCall(self._xids, self._xid_group)
        out: dict[int, list[Value]] = {}
        for gid, fields in self._xids.values.items():
            for v in fields.get(XID_FIELD, []):
                out.setdefault(int(gid), []).append((None if v.isBlank else float(v.value), int(v.ts)))
        self._xids.EmptyValues()
        return out

    def pause_profiling(self, paused: bool) -> None:
        fn = self._agent.dcgmProfPause if paused else self._agent.dcgmProfResume
        fn(self._handle.handle)

    def close(self) -> None:
        self._handle.Shutdown()
