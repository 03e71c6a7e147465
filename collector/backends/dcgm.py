"""DCGM through its Python bindings (pydcgm, dcgm_fields), import-guarded: DCGM is optional.

The seam is `DcgmSession` (GPU list, latest values per field, profiling pause); `PydcgmSession`
talks to the host engine (nv-hostengine, or embedded) and tests pass a fake. This module maps
DCGM field ids to readings, converting units once: FB used/total MiB -> bytes (250/252), energy
mJ -> J (156), SM clock MHz -> Hz (100), GPU_UTIL % -> 0..1 (203); profiling fields 1002-1005 are
already 0..1 means over DCGM's own sampling window. Blank values (DCGM_*_BLANK sentinels) are absent.
XIDs come from DCGM_FI_DEV_XID_ERRORS (230): a new timestamp on that field is a new event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from gpulens.collector.backends.base import (
    BackendUnavailable,
    Capabilities,
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
    ) -> None:
        self.session = session if session is not None else PydcgmSession()
        self._clock = clock
        self._devices = tuple(self.session.gpus())
        if not self._devices:
            raise BackendUnavailable("DCGM answered but reports no GPU")
        wanted = [fid for fid, _ in FIELDS.values()] + list(PROFILING.values()) + [XID_FIELD]
        self._watched = set(self.session.watch(wanted, interval_s))
        self._latest: Mapping[int, Mapping[int, Value]] = {}
        self._xid_seen: dict[int, int] = {}
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
            processes=False,
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
        events = []
        for gpu, fields in self._latest.items():
            value, ts = fields.get(XID_FIELD, (None, 0))
            if value is None or ts <= self._xid_seen.get(gpu, 0):
                continue
            first = gpu not in self._xid_seen
            self._xid_seen[gpu] = ts
            if not first:  # the value present at startup happened before we watched
                events.append(XidEvent(gpu, int(value), self._clock()))
        for d in self._devices:
            self._xid_seen.setdefault(d.index, 0)
        return events

    def read(self, device: GpuIdentity) -> GpuReading:
        fields = self._latest.get(device.index, {})
        values: dict[str, float | None] = {}
        for name, (fid, scale) in FIELDS.items():
            values[name] = clean(fields.get(fid, (None, 0))[0], scale)
        values["utilization_ratio"] = ratio(values["utilization_ratio"], percent=False)
        if self._profiling:
            for name, fid in PROFILING.items():
                values[name] = ratio(clean(fields.get(fid, (None, 0))[0]), percent=False)
        return GpuReading(identity=device, **values)

    def close(self) -> None:
        self.session.close()


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

    def pause_profiling(self, paused: bool) -> None:
        fn = self._agent.dcgmProfPause if paused else self._agent.dcgmProfResume
        fn(self._handle.handle)

    def close(self) -> None:
        self._handle.Shutdown()
