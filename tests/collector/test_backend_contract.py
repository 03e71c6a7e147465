"""Every backend honours the same contract (docs/design.md, convention 1): sim, NVML (fake pynvml), DCGM
(fake session)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gpulens.collector.backends.base import GpuBackend, GpuReading
from gpulens.collector.backends.dcgm import DcgmBackend
from gpulens.collector.backends.nvml import NvmlBackend
from gpulens.collector.backends.sim import SimBackend
from tests.collector.fake_dcgm import A100_FIELDS, FakeDcgmSession
from tests.collector.fake_nvml import FakeGpu, make_fake_nvml

RATIOS = (
    "utilization_ratio",
    "sm_active_ratio",
    "sm_occupancy_ratio",
    "tensor_active_ratio",
    "dram_active_ratio",
)
PROFILING = RATIOS[1:]


def _sim() -> GpuBackend:
    t = iter(float(x) for x in range(1000))
    return SimBackend(gpus=4, seed=7, clock=lambda: next(t))


def _nvml() -> GpuBackend:
    return NvmlBackend(make_fake_nvml([FakeGpu(f"GPU-{i}") for i in range(4)]))


def _dcgm() -> GpuBackend:
    session = FakeDcgmSession(gpus=4)
    for i in range(4):
        session.values[i] = {f: (v, 1) for f, v in A100_FIELDS.items()}
    return DcgmBackend(session, wall=lambda: 0.0)  # the values' timestamps (1 µs) are fresh


@pytest.fixture(params=[_sim, _nvml, _dcgm], ids=["sim", "nvml", "dcgm"])
def backend(request: pytest.FixtureRequest) -> Iterator[GpuBackend]:
    factory: Callable[[], GpuBackend] = request.param
    b = factory()
    yield b
    b.close()


def _tick(b: GpuBackend) -> list[GpuReading]:
    b.poll_xids()
    return [b.read(d) for d in b.devices()]


def test_devices_are_unique_and_stable(backend: GpuBackend) -> None:
    devices = list(backend.devices())
    assert [d.index for d in devices] == list(range(len(devices))) and len(devices) == 4
    assert len({d.uuid for d in devices}) == 4
    assert all(d.model.startswith("NVIDIA") for d in devices)
    assert list(backend.devices()) == devices


def test_readings_are_in_base_units_and_ranges(backend: GpuBackend) -> None:
    for _ in range(3):  # GPM needs two samples: later ticks carry the profiling ratios
        readings = _tick(backend)
    for r in readings:
        assert r.up
        for name in RATIOS:
            value = getattr(r, name)
            assert value is None or 0.0 <= value <= 1.0, (name, value)
        assert r.memory_total_bytes is not None and r.memory_total_bytes > 2**30  # bytes, not MiB
        assert r.memory_used_bytes is not None and 0 <= r.memory_used_bytes <= r.memory_total_bytes
        assert r.power_watts is not None and 10 < r.power_watts < 1000  # watts, not mW
        assert r.sm_clock_hertz is not None and r.sm_clock_hertz > 1e8  # Hz, not MHz
        assert r.energy_joules is not None and r.energy_joules >= 0


def test_profiling_fields_present_then_absent_when_paused(backend: GpuBackend) -> None:
    assert backend.capabilities().profiling
    for _ in range(3):
        readings = _tick(backend)
    assert all(r.sm_active_ratio is not None for r in readings)
    backend.set_profiling(False)
    readings = _tick(backend)
    assert all(getattr(r, name) is None for r in readings for name in PROFILING)
    assert all(r.utilization_ratio is not None for r in readings)  # the coarse field stays
    backend.set_profiling(True)


def test_poll_xids_is_empty_without_faults(backend: GpuBackend) -> None:
    assert backend.poll_xids() == []


def test_name_and_capabilities(backend: GpuBackend) -> None:
    assert backend.name in ("sim", "nvml", "dcgm")
    names = backend.capabilities().names()
    assert "profiling" in names and "energy" in names
