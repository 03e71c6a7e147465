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
    return DcgmBackend(session), session


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


def test_xid_field_changes_are_events_and_the_startup_value_is_not() -> None:
    b, session = _backend()
    session.values[1][230] = (13.0, 100)  # happened before the agent watched
    assert b.poll_xids() == []
    session.values[1][230] = (48.0, 200)
    assert [(e.gpu, e.xid) for e in b.poll_xids()] == [(1, 48)]
    assert b.poll_xids() == []
    session.values[1][230] = (48.0, 300)  # the same XID again is a new event
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
