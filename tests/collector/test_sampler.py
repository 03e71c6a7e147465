"""The sampler with literal times (docs/design.md, convention 5): exact integrals, held seconds, XIDs, lost
GPUs, the profiler
lock."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gpulens.collector.backends.base import Capabilities, DeviceLost, GpuIdentity, GpuReading, XidEvent
from gpulens.collector.backends.sim import SimBackend, SimFault, parse_fault
from gpulens.collector.integrator import Integrator, window_mean
from gpulens.collector.sampler import CounterKey as K
from gpulens.collector.sampler import Sampler
from gpulens.errors import GpulensError


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Scripted:
    """A backend whose sm_active per tick is scripted: the ledger of the integral test."""

    name = "scripted"

    def __init__(self, sm: Sequence[float | None], job: str | None = "j1") -> None:
        self.sm = list(sm)
        self.job = job
        self.dev = GpuIdentity(0, "GPU-0", "NVIDIA Test")
        self.energy = 100.0
        self.xids: list[XidEvent] = []
        self.lost = False
        self.profiling: list[bool] = []

    def devices(self) -> Sequence[GpuIdentity]:
        return [self.dev]

    def read(self, device: GpuIdentity) -> GpuReading:
        if self.lost:
            raise DeviceLost("gone")
        self.energy += 50.0
        return GpuReading(
            device,
            sm_active_ratio=self.sm.pop(0),
            energy_joules=self.energy,
            job_id=self.job,
            team="t1" if self.job else None,
        )

    def poll_xids(self) -> list[XidEvent]:
        out, self.xids = self.xids, []
        return out

    def capabilities(self) -> Capabilities:
        return Capabilities(profiling=True)

    def set_profiling(self, enabled: bool) -> None:
        self.profiling.append(enabled)

    def close(self) -> None:
        pass


def test_integral_is_exact_mean_over_uneven_windows() -> None:
    # Ledger: windows (0,1] 0.5, (1,3] 1.0, (3,3.5] None (unsupported), (3.5,4] 0.0
    #  -> sm_active_seconds = 0.5*1 + 1.0*2 + 0 + 0 = 2.5; held = 4.0 s; mean over held = 0.625
    clock = Clock()
    s = Sampler(Scripted([0.5, 1.0, None, 0.0]), clock=clock)
    for t in (1.0, 3.0, 3.5, 4.0):
        clock.t = t
        snap = s.tick()
    assert snap.counters[K("GPU-0", "j1", "t1", "sm_active")] == pytest.approx(2.5)
    assert snap.counters[K("GPU-0", "j1", "t1", "held")] == pytest.approx(4.0)
    assert snap.counters[K("GPU-0", "j1", "t1", "energy_joules")] == pytest.approx(
        150.0
    )  # deltas after the first read
    assert snap.samples.count == 4


def test_unmapped_gpu_is_not_held() -> None:
    clock = Clock()
    s = Sampler(Scripted([0.2, 0.2], job=None), clock=clock)
    clock.t = 1.0
    s.tick()
    clock.t = 2.0
    snap = s.tick()
    assert not any(k.what == "held" for k in snap.counters)
    assert snap.counters[K("GPU-0", "", "", "sm_active")] == pytest.approx(0.4)


def test_xid_counts_and_lost_device_keeps_its_job_labels() -> None:
    clock = Clock()
    backend = Scripted([0.9, 0.9])
    s = Sampler(backend, clock=clock)
    clock.t = 1.0
    s.tick()
    backend.xids = [XidEvent(0, 79), XidEvent(0, 79)]
    backend.lost = True
    clock.t = 2.0
    snap = s.tick()
    assert snap.counters[K("GPU-0", "j1", "t1", "xid", 79)] == 2.0
    (r,) = snap.readings
    assert not r.up and r.job_id == "j1" and r.sm_active_ratio is None


def test_profiler_lock_pauses_then_expires() -> None:
    clock = Clock()
    backend = Scripted([0.1] * 5)
    s = Sampler(backend, clock=clock)
    s.pause_profiling(10.0)
    assert s.tick().profiling_paused and backend.profiling == [False]
    clock.t = 11.0
    assert not s.tick().profiling_paused and backend.profiling == [False, True]


def test_integrator_and_window_mean() -> None:
    i = Integrator()
    i.add("k", 0.25, 4.0)
    i.add("k", 1.0, 0.0)
    assert i.snapshot() == {"k": 1.0}
    assert window_mean(1.0, 4.0) == 0.25 and window_mean(1.0, 0.0) is None


def test_sim_fault_79_loses_the_gpu_and_counts_once() -> None:
    clock = Clock()
    sim = SimBackend(gpus=4, seed=1, faults=[SimFault(79, 3, 5.0)], clock=clock)
    s = Sampler(sim, clock=clock)
    clock.t = 4.0
    assert all(r.up for r in s.tick().readings)
    clock.t = 5.0
    snap = s.tick()
    assert [r.up for r in snap.readings] == [True, True, True, False]
    clock.t = 6.0
    snap = s.tick()
    xids = {k: v for k, v in snap.counters.items() if k.what == "xid"}
    assert xids == {K(sim.devices()[3].uuid, "sim-llm-pretrain", "ai-research", "xid", 79): 1.0}


def test_sim_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list[GpuReading]:
        clock = Clock()
        sim = SimBackend(gpus=8, seed=seed, clock=clock)
        clock.t = 2.0
        return [sim.read(d) for d in sim.devices()]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_sim_mixed_scenario_shapes() -> None:
    clock = Clock()
    sim = SimBackend(gpus=8, seed=0, clock=clock)
    clock.t = 30.0
    sim.read(sim.devices()[6])
    readings = {}
    for t in (34.0, 38.0):  # whole 4 s periods: the input-starved duty cycle averages out
        clock.t = t
        readings = {d.index: sim.read(d) for d in sim.devices()}
    busy, idle, membound, starved, free = readings[0], readings[4], readings[5], readings[6], readings[7]
    assert busy.sm_active_ratio > 0.75 and busy.tensor_active_ratio > 0.45
    assert idle.sm_active_ratio == 0.0 and idle.memory_used_bytes > 0 and idle.job_id == "sim-notebook"
    assert membound.dram_active_ratio > 0.7 and membound.tensor_active_ratio < 0.1
    assert 0.1 < starved.sm_active_ratio < 0.5
    assert free.job_id is None and free.memory_used_bytes == 0


@pytest.mark.parametrize("text", ["79:3", "x:1:2", "79:-1:2", "79:1:2:3", ""])
def test_bad_fault_spec_is_one_clear_error(text: str) -> None:
    with pytest.raises(GpulensError, match="XID:GPU:AFTER_SECONDS"):
        parse_fault(text)


def test_a_lost_gpu_stops_adding_held_seconds_to_its_job() -> None:
    """Issue 13 item 10. Ledger: held (0,1] 1 s while up; lost from t=1: (1,2] and (2,3] add nothing
    -> held stays 1.0 s (before the fix: 3.0 s), while the series keeps its job labels for up 0."""
    clock = Clock()
    backend = Scripted([0.5] * 3)
    s = Sampler(backend, clock=clock)
    clock.t = 1.0
    s.tick()
    backend.lost = True
    for t in (2.0, 3.0):
        clock.t = t
        snap = s.tick()
    assert snap.counters[K("GPU-0", "j1", "t1", "held")] == 1.0
    assert snap.readings[0].job_id == "j1" and not snap.readings[0].up


def test_utilization_has_an_integral_too() -> None:
    """Issue 13 item 9. Ledger: utilization 0.5 over (0,2] and 1.0 over (2,3] -> 2.0 s."""
    clock = Clock()
    backend = Scripted([None] * 2)
    s = Sampler(backend, clock=clock)
    for t, util in ((2.0, 0.5), (3.0, 1.0)):
        backend.read = lambda d, u=util: GpuReading(d, utilization_ratio=u, job_id="j1", team="t1")  # type: ignore[method-assign]
        clock.t = t
        snap = s.tick()
    assert snap.counters[K("GPU-0", "j1", "t1", "utilization")] == pytest.approx(2.0)


def test_a_jobs_counters_expire_a_ttl_after_it_last_held_the_gpu() -> None:
    """Issue 13 item 4: ten short jobs on one GPU must not leave ten sets of series for ever."""
    clock = Clock()
    backend = Scripted([0.5] * 20)
    s = Sampler(backend, clock=clock, job_ttl=600.0)
    for n in range(10):
        backend.job = f"job-{n}"
        clock.t += 60.0
        snap = s.tick()
    assert {k.job_id for k in snap.counters} == {f"job-{n}" for n in range(10)}
    backend.job = None
    clock.t += 500.0  # job-0 last held 1040 s ago... job-9 500 s ago
    snap = s.tick()
    jobs = {k.job_id for k in snap.counters}
    assert jobs == {"", "job-9"} | {f"job-{n}" for n in range(10) if 1100.0 - 60.0 * (n + 1) <= 600.0}
    clock.t += 200.0
    assert {k.job_id for k in s.tick().counters} == {""}


def test_a_mig_instance_holds_its_share_of_the_gpu() -> None:
    """MIG ledger: a 3g instance (3 of 7 slices) held 14 s -> 14 x 3/7 = 6.0 GPU-seconds; its SM
    activity 0.5 over those 14 s -> 0.5 x 14 x 3/7 = 3.0; the ratio of the two stays the mean 0.5."""
    clock = Clock()
    backend = Scripted([0.5, 0.5])
    backend.dev = GpuIdentity(0, "MIG-3g", "NVIDIA A100-SXM4-40GB", "3g.40gb/1", 3 / 7)
    s = Sampler(backend, clock=clock)
    for t in (7.0, 14.0):
        clock.t = t
        snap = s.tick()
    assert snap.counters[K("MIG-3g", "j1", "t1", "held")] == pytest.approx(6.0)
    assert snap.counters[K("MIG-3g", "j1", "t1", "sm_active")] == pytest.approx(3.0)
