"""The sampler: its own thread reads every device each `--interval`, maps jobs, and publishes a
frozen `Snapshot` that scrapes read (a scrape never calls the backend).

Per tick: XIDs are drained and counted (classified by NVIDIA's catalog); every device is read inside
its own guard (`DeviceLost` -> `gpulens_gpu_up 0`, other devices keep reporting); mappers add
job_id/team; ratio integrals, held seconds and hardware-counter deltas accumulate per
(gpu, job_id, team) so that every counter series covers exactly the time its labels were true.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gpulens.collector.backends.base import DeviceLost, GpuBackend, GpuIdentity, GpuReading, XidEvent
from gpulens.collector.integrator import Integrator
from gpulens.collector.xid import loses_device

log = logging.getLogger(__name__)

SAMPLE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
INTEGRATED = ("sm_active", "tensor_active", "dram_active")  # ratios exported as _seconds_total
COUNTED = ("energy_joules", "ecc_corrected", "ecc_uncorrected")  # hardware counters, as deltas


class Mapper(Protocol):
    def annotate(self, readings: Sequence[GpuReading]) -> list[GpuReading]: ...


# Keys of the accumulated counters: (gpu index, job_id, team, what); `what` is a name from
# INTEGRATED/COUNTED, "held", or ("xid", code).
CounterKey = tuple[int, str, str, object]


@dataclass(frozen=True)
class Snapshot:
    """What one tick produced; never mutated after publication."""

    t: float
    readings: tuple[GpuReading, ...]
    counters: dict[CounterKey, float]
    sample_buckets: tuple[int, ...]  # cumulative counts per SAMPLE_BUCKETS bound, then +Inf
    sample_sum: float
    sample_count: int
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
    ) -> None:
        self.backend = backend
        self.mappers = tuple(mappers)
        self.interval = interval
        self._clock = clock
        self._perf = perf
        self.devices: tuple[GpuIdentity, ...] = tuple(backend.devices())
        self._integrals = Integrator()
        self._hw_last: dict[tuple[int, str], float] = {}
        self._last_job: dict[int, tuple[str | None, str | None]] = {}
        self._t_prev = clock()
        self._buckets = [0] * (len(SAMPLE_BUCKETS) + 1)
        self._sample_sum = 0.0
        self._sample_count = 0
        self._paused_until: float | None = None
        self._logged: set[tuple[int, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.snapshot = Snapshot(self._t_prev, (), {}, tuple(self._buckets), 0.0, 0, False)

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
            self._log_once(device.index, f"lost: {exc}")
        except Exception as exc:  # noqa: BLE001 - the per-device guard (STYLE §12): one device, not the agent
            self._log_once(device.index, f"{type(exc).__name__}: {exc}")
        job, team = self._last_job.get(device.index, (None, None))
        return GpuReading(identity=device, up=False, job_id=job, team=team)

    def _log_once(self, gpu: int, message: str) -> None:
        if (gpu, message) not in self._logged:
            self._logged.add((gpu, message))
            log.warning("%s backend, GPU %d: %s", self.backend.name, gpu, message)

    def _count_xids(self, events: Sequence[XidEvent]) -> None:
        for ev in events:
            job, team = self._last_job.get(ev.gpu, (None, None))
            self._integrals.add((ev.gpu, job or "", team or "", ("xid", ev.xid)), 1.0, 1.0)
            log.warning(
                "XID %d on GPU %d%s", ev.xid, ev.gpu, " (device lost)" if loses_device(ev.xid) else ""
            )

    def _accumulate(self, r: GpuReading, dt: float) -> None:
        key = (r.identity.index, r.job_id or "", r.team or "")
        if r.job_id or r.team:
            self._integrals.add((*key, "held"), 1.0, dt)
        for name in INTEGRATED:
            value = getattr(r, f"{name}_ratio")
            if value is not None:
                self._integrals.add((*key, name), value, dt)
        for name in COUNTED:
            value = getattr(r, name)
            if value is None:
                continue
            last = self._hw_last.get((r.identity.index, name), value)
            self._hw_last[(r.identity.index, name)] = value
            # A counter that went backwards was reset (driver reload): count from the new value.
            self._integrals.add((*key, name), value - last if value >= last else value, 1.0)

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
            self._last_job[r.identity.index] = (r.job_id, r.team)
            self._accumulate(r, dt)
        self._observe(self._perf() - started)
        self.snapshot = Snapshot(
            now,
            tuple(readings),
            self._integrals.snapshot(),  # type: ignore[arg-type]
            tuple(self._buckets),
            self._sample_sum,
            self._sample_count,
            paused,
        )
        return self.snapshot

    def _observe(self, seconds: float) -> None:
        for i, bound in enumerate(SAMPLE_BUCKETS):
            if seconds <= bound:
                self._buckets[i] += 1
        self._buckets[-1] += 1
        self._sample_sum += seconds
        self._sample_count += 1

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
