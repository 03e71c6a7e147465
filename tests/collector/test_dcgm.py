"""The DCGM backend's field mapping through a fake session at its seam (DCGM is not installed here)."""

from __future__ import annotations

import pytest

from gpulens.collector.backends.base import BackendUnavailable
from gpulens.collector.backends.dcgm import DcgmBackend, PydcgmSession
from tests.collector.fake_dcgm import A100_FIELDS, FakeDcgmSession


def _backend(unsupported: tuple[int, ...] = ()) -> tuple[DcgmBackend, FakeDcgmSession]:
    session = FakeDcgmSession(gpus=2, unsupported=unsupported)
    for i in range(2):
        session.values[i] = {f: (v, 10) for f, v in A100_FIELDS.items()}
    return DcgmBackend(session, wall=lambda: 0.0), session  # wall clock 0: values at 10 µs are fresh


def test_fields_map_with_units() -> None:
    b, _ = _backend()
    b.poll_xids()
    r = b.read(b.devices()[0])
    assert r.memory_total_bytes == 40960 * 2**20 and r.memory_used_bytes == 30000 * 2**20
    assert r.energy_joules == pytest.approx(5000.0)
    assert r.sm_clock_hertz == pytest.approx(1.41e9)
    assert r.utilization_ratio == pytest.approx(0.97)
    assert (r.sm_active_ratio, r.sm_occupancy_ratio, r.tensor_active_ratio, r.dram_active_ratio) == (
        0.81,
        0.4,
        0.52,
        0.33,
    )
    assert r.power_watts == 312.5 and r.temperature_celsius == 61.0


def test_blank_and_unwatched_fields_are_absent() -> None:
    b, session = _backend(unsupported=(1002, 1003, 1004, 1005))
    session.values[0][155] = (None, 10)  # DCGM blank
    session.values[0][156] = (float(0x7FFFFFFFFFFFFFF0), 10)
    b.poll_xids()
    r = b.read(b.devices()[0])
    assert r.power_watts is None and r.energy_joules is None
    assert r.sm_active_ratio is None and not b.capabilities().profiling


def test_xid_values_are_events_and_the_startup_history_is_not() -> None:
    b, session = _backend()
    session.xid_log = {1: [(13.0, 100)]}  # happened before the agent watched
    assert b.poll_xids() == []
    session.xid_log = {1: [(48.0, 200)]}
    assert [(e.gpu, e.xid) for e in b.poll_xids()] == [(1, 48)]
    assert b.poll_xids() == []
    session.xid_log = {1: [(48.0, 300)]}  # the same XID again is a new event
    assert [(e.gpu, e.xid) for e in b.poll_xids()] == [(1, 48)]


def test_profiler_lock_pauses_dcgm_profiling() -> None:
    b, session = _backend()
    b.set_profiling(False)
    b.set_profiling(True)
    assert session.paused == [True, False]
    b.close()
    assert session.closed


def test_without_bindings_the_error_is_one_line() -> None:
    with pytest.raises(BackendUnavailable, match="pydcgm"):
        PydcgmSession()


def test_frozen_values_are_stale_and_the_gpu_is_lost() -> None:
    """Issue 13 item 7: after 30 ticks of frozen values DCGM still said up 1 and sm_active 0.81, and the
    integral kept growing. Ledger: values stamped t=1000 s; wall clock 1001..1030 s; stale after 5 s
    -> ticks at 1001..1005 count (5 s held, sm 0.81 x 5 = 4.05 s), the GPU is up 0 from 1006 on."""
    from gpulens.collector.sampler import CounterKey, Sampler

    session = FakeDcgmSession(gpus=1)
    session.values[0] = {f: (v, 1_000_000_000) for f, v in A100_FIELDS.items()}
    wall = [1000.0]
    b = DcgmBackend(session, wall=lambda: wall[0])
    mono = [0.0]
    s = Sampler(b, [_Job()], clock=lambda: mono[0])
    for t in range(1, 31):
        wall[0], mono[0] = 1000.0 + t, float(t)
        snap = s.tick()
    assert [r.up for r in snap.readings] == [False]
    assert snap.counters[CounterKey("GPU-dcgm-0", "j", "t", "held")] == pytest.approx(5.0)
    assert snap.counters[CounterKey("GPU-dcgm-0", "j", "t", "sm_active")] == pytest.approx(4.05)


def test_a_field_that_stopped_updating_is_absent_while_the_rest_report() -> None:
    session = FakeDcgmSession(gpus=1)
    session.values[0] = {f: (v, 100_000_000) for f, v in A100_FIELDS.items()}
    session.values[0][1002] = (0.81, 1_000_000)  # 99 s older than the rest
    b = DcgmBackend(session, wall=lambda: 101.0)
    b.poll_xids()
    r = b.read(b.devices()[0])
    assert r.up and r.sm_active_ratio is None and r.tensor_active_ratio == 0.52


def test_two_xids_in_one_interval_count_twice() -> None:
    b, session = _backend()
    b.poll_xids()
    session.xid_log = {0: [(13.0, 100), (13.0, 150)], 1: [(31.0, 120)]}
    assert sorted((e.gpu, e.xid) for e in b.poll_xids()) == [(0, 13), (0, 13), (1, 31)]


def test_processes_come_from_nvml_beside_dcgm() -> None:
    """Issue 13 item 8: DCGM readings carry no pids, so the process/Slurm mapping was silently off."""
    from gpulens.collector.backends.nvml import NvmlProcesses
    from tests.collector.fake_nvml import FakeGpu, make_fake_nvml

    nvml = make_fake_nvml([FakeGpu("GPU-dcgm-0", pids=(4242,)), FakeGpu("GPU-dcgm-1", pids=())])
    session = FakeDcgmSession(gpus=2)
    for i in range(2):
        session.values[i] = {f: (v, 10) for f, v in A100_FIELDS.items()}
    b = DcgmBackend(session, wall=lambda: 0.0, processes=NvmlProcesses(nvml))
    b.poll_xids()
    assert b.capabilities().processes
    assert [b.read(d).pids for d in b.devices()] == [(4242,), ()]
    b.close()
    assert nvml.shutdown


class _Job:
    def annotate(self, readings):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        return [replace(r, job_id="j", team="t") for r in readings]
