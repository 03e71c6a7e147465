"""The sampler: its own thread reads every device each `--interval`, maps jobs, and publishes a
frozen `Snapshot` that scrapes read (a scrape never calls the backend).

Per tick: XIDs are drained and counted (classified by NVIDIA's catalog); every device is read inside
its own guard (`DeviceLost` -> `gpulens_gpu_up 0`, other devices keep reporting); mappers add
job_id/team; ratio integrals, held seconds and hardware-counter deltas accumulate per
`CounterKey` (device, job_id, team, what) so that every counter series covers exactly the time its
labels were true. A device is keyed by its UUID: a MIG instance is a device of its own, and its time
counts as its `share` of the whole GPU. A job's counters are dropped `job_ttl` seconds after the job
last held a device (docs/agent.md, series lifecycle).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from gpulens.collector.backends.base import DeviceLost, GpuBackend, GpuIdentity, GpuReading, XidEvent
from gpulens.collector.histogram import Histogram
from gpulens.collector.integrator import Integrator
from gpulens.collector.xid import loses_device

log = logging.getLogger(__name__)

SAMPLE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Ratios exported as _seconds_total (GpuReading attribute `<name>_ratio`).
INTEGRATED = ("utilization", "sm_active", "tensor_active", "dram_active")
COUNTED = ("energy_joules", "ecc_corrected", "ecc_uncorrected")  # hardware counters, as deltas
HELD = "held"
XID = "xid"
JOB_TTL = 600.0  # seconds a job's series outlive its last mapping


class Mapper(Protocol):
    def annotate(self, readings: Sequence[GpuReading]) -> list[GpuReading]: ...


class CounterKey(NamedTuple):
    """One accumulated counter: `what` is HELD, a name of INTEGRATED or COUNTED, or XID (with `xid`)."""

    device: str  # the device's UUID (a MIG instance's own)
    job_id: str
    team: str
    what: str
    xid: int = 0


@dataclass(frozen=True)
class Snapshot:
    """What one tick produced; never mutated after publication."""

    t: float
    readings: tuple[GpuReading, ...]
    counters: dict[CounterKey, float]
    samples: Histogram  # seconds per tick (a copy)
    profiling_paused: bool


class Sampler:
    """Samples `backend` every `interval` seconds on its own thread (or by `tick()` in tests)."""

    def __init__(
        self,
        backend: GpuBackend,
        mappers: Sequence[Mapper] = (),
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        perf: Callable[[], float] = time.perf_counter,
        job_ttl: float = JOB_TTL,
    ) -> None:
        self.backend = backend
        self.mappers = tuple(mappers)
        self.interval = interval
        self.job_ttl = job_ttl
        self._clock = clock
        self._perf = perf
        self.devices: tuple[GpuIdentity, ...] = tuple(backend.devices())
        self._by_index: dict[int, GpuIdentity] = {}
        for d in self.devices:  # an XID names the parent GPU: count it on its first device
            self._by_index.setdefault(d.index, d)
        self._integrals = Integrator()
        self._hw_last: dict[tuple[str, str], float] = {}
        self._last_job: dict[str, tuple[str | None, str | None]] = {}
        self._job_seen: dict[tuple[str, str], float] = {}
        self._t_prev = clock()
        self._samples = Histogram(SAMPLE_BUCKETS)
        self._paused_until: float | None = None
        self._logged: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.snapshot = Snapshot(self._t_prev, (), {}, self._samples.copy(), False)

    # -- profiling lock ------------------------------------------------------------------------
    def pause_profiling(self, seconds: float | None) -> None:
        """Stop reading profiling fields for `seconds` (None: until resumed), freeing the profiler."""
        self._paused_until = float("inf") if seconds is None else self._clock() + seconds
        self.backend.set_profiling(False)

    def resume_profiling(self) -> None:
        self._paused_until = None
        self.backend.set_profiling(True)

    def profiling_paused(self) -> bool:
        if self._paused_until is not None and self._clock() >= self._paused_until:
            self.resume_profiling()
        return self._paused_until is not None

    # -- one tick ------------------------------------------------------------------------------
    def _read(self, device: GpuIdentity) -> GpuReading:
        try:
            return self.backend.read(device)
        except DeviceLost as exc:
            self._log_once(device, f"lost: {exc}")
        except Exception as exc:  # noqa: BLE001 - the per-device guard (docs/design.md, convention 12): one device, not the agent
            self._log_once(device, f"{type(exc).__name__}: {exc}")
        job, team = self._last_job.get(device.uuid, (None, None))
        return GpuReading(identity=device, up=False, job_id=job, team=team)

    def _log_once(self, device: GpuIdentity, message: str) -> None:
        if (device.uuid, message) not in self._logged:
            self._logged.add((device.uuid, message))
            where = f"GPU {device.index}" + (f" MIG {device.mig}" if device.mig else "")
            log.warning("%s backend, %s: %s", self.backend.name, where, message)

    def _count_xids(self, events: Sequence[XidEvent]) -> None:
        for ev in events:
            device = self._by_index.get(ev.gpu)
            if device is None:
                continue
            job, team = self._last_job.get(device.uuid, (None, None))
            self._integrals.add(CounterKey(device.uuid, job or "", team or "", XID, ev.xid), 1.0, 1.0)
            log.warning(
                "XID %d on GPU %d%s", ev.xid, ev.gpu, " (device lost)" if loses_device(ev.xid) else ""
            )

    def _accumulate(self, r: GpuReading, dt: float) -> None:
        uuid, share = r.identity.uuid, r.identity.share
        job, team = r.job_id or "", r.team or ""
        if r.up and (job or team):  # a lost GPU holds nothing: its job stops paying for it
            self._integrals.add(CounterKey(uuid, job, team, HELD), share, dt)
        for name in INTEGRATED:
            value = getattr(r, f"{name}_ratio")
            if value is not None:
                self._integrals.add(CounterKey(uuid, job, team, name), value * share, dt)
        for name in COUNTED:
            value = getattr(r, name)
            if value is None:
                continue
            last = self._hw_last.get((uuid, name), value)
            self._hw_last[(uuid, name)] = value
            # A counter that went backwards was reset (driver reload): count from the new value.
            self._integrals.add(
                CounterKey(uuid, job, team, name), value - last if value >= last else value, 1.0
            )

    def _expire_jobs(self, readings: Sequence[GpuReading], now: float) -> None:
        """Drop the counters of jobs that held no device for `job_ttl` seconds."""
        for r in readings:
            if r.job_id or r.team:
                self._job_seen[(r.job_id or "", r.team or "")] = now
        gone = {job for job, seen in self._job_seen.items() if now - seen > self.job_ttl}
        if not gone:
            return
        for job in gone:
            del self._job_seen[job]
        totals = self._integrals.totals
        for key in [k for k in totals if (k.job_id, k.team) in gone]:  # type: ignore[attr-defined]
            del totals[key]

    def tick(self) -> Snapshot:
        """Read every device once and publish the snapshot."""
        started = self._perf()
        paused = self.profiling_paused()
        self._count_xids(self.backend.poll_xids())
        readings: list[GpuReading] = [self._read(d) for d in self.devices]
        for mapper in self.mappers:
            readings = mapper.annotate(readings)
        now = self._clock()
        dt, self._t_prev = now - self._t_prev, now
        for r in readings:
            self._last_job[r.identity.uuid] = (r.job_id, r.team)
            self._accumulate(r, dt)
        self._expire_jobs(readings, now)
        self._samples.observe(self._perf() - started)
        self.snapshot = Snapshot(
            now,
            tuple(readings),
            self._integrals.snapshot(),  # type: ignore[arg-type]
            self._samples.copy(),
            paused,
        )
        return self.snapshot

    # -- the thread ----------------------------------------------------------------------------
    def start(self) -> None:
        self.tick()  # the first snapshot exists before the server answers
        self._thread = threading.Thread(target=self._run, name="gpulens-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = self._clock() + self.interval
        while not self._stop.wait(max(0.0, next_at - self._clock())):
            self.tick()
            next_at += self.interval
            if next_at < self._clock():  # fell behind (suspended): skip, do not burst
                next_at = self._clock() + self.interval

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def age(self) -> float:
        """Seconds since the latest snapshot: /healthz fails when the sampler stalls."""
        return self._clock() - self.snapshot.t
