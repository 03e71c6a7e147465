"""The NVML backend against a fake `pynvml` at its seam: unsupported fields, a lost GPU, XIDs, GPM."""

from __future__ import annotations

import time

import pytest

from gpulens.collector.backends.base import BackendUnavailable, DeviceLost
from gpulens.collector.backends.nvml import NvmlBackend
from gpulens.collector.sampler import Sampler
from tests.collector.fake_nvml import FakeGpu, make_fake_nvml


def _backend(n: int = 2, **gpu: object) -> tuple[NvmlBackend, object]:
    fake = make_fake_nvml([FakeGpu(f"GPU-{i}", **gpu) for i in range(n)])  # type: ignore[arg-type]
    return NvmlBackend(fake), fake


def test_units_are_converted_once() -> None:
    b, _ = _backend(1, power_mw=312_500, energy_mj=7_000_000, sm_mhz=1410, util=97)
    r = b.read(b.devices()[0])
    assert r.power_watts == pytest.approx(312.5)
    assert r.energy_joules == pytest.approx(7000.0)
    assert r.sm_clock_hertz == pytest.approx(1.41e9)
    assert r.utilization_ratio == pytest.approx(0.97)
    assert r.memory_total_bytes == 80 * 2**30
    assert (r.ecc_corrected, r.ecc_uncorrected) == (3.0, 0.0)
    b.close()


def test_not_supported_field_is_absent_and_not_asked_again() -> None:
    b, fake = _backend(1)
    fake.gpus[0].unsupported = {"power", "ecc"}
    d = b.devices()[0]
    first, second = b.read(d), b.read(d)
    assert first.power_watts is None and first.ecc_corrected is None and first.ecc_uncorrected is None
    assert first.temperature_celsius == 60.0  # the rest of the device still reports
    assert second.power_watts is None
    assert [c for c in fake.calls if c[0] == "power"] == [("power", 0)]  # asked once, then remembered
    b.close()


def test_blank_sentinel_is_absent() -> None:
    b, _ = _backend(1, temp=0x7FFFFFFFFFFFFFF0)
    assert b.read(b.devices()[0]).temperature_celsius is None
    b.close()


def test_lost_gpu_is_up_0_and_the_others_keep_reporting() -> None:
    b, fake = _backend(3)
    sampler = Sampler(b, clock=iter([0.0, 1.0, 2.0, 3.0]).__next__)
    fake.gpus[1].lost = True
    with pytest.raises(DeviceLost):
        b.read(b.devices()[1])
    snap = sampler.tick()
    assert [r.up for r in snap.readings] == [True, False, True]
    assert snap.readings[1].power_watts is None
    assert snap.readings[0].power_watts == pytest.approx(350.0) and snap.readings[
        2
    ].power_watts == pytest.approx(350.0)
    b.close()


def test_xid_event_arrives_through_the_event_thread() -> None:
    b, fake = _backend(2)
    assert b.capabilities().xid_events and len(fake.registered) == 2
    fake.events.put((1, 79))
    deadline = time.monotonic() + 5
    events = []
    while not events and time.monotonic() < deadline:
        events = b.poll_xids()
        time.sleep(0.01)
    assert [(e.gpu, e.xid) for e in events] == [(1, 79)]
    assert b.poll_xids() == []  # drained
    b.close()


def test_gpm_ratios_are_window_means_from_two_samples() -> None:
    b, fake = _backend(1)
    d = b.devices()[0]
    assert b.capabilities().profiling and "gpm" in b.capabilities().names()
    first = b.read(d)
    assert first.sm_active_ratio is None  # one sample: no window yet
    second = b.read(d)
    assert second.sm_active_ratio == pytest.approx(0.80)
    assert second.sm_occupancy_ratio == pytest.approx(0.40)
    assert second.tensor_active_ratio == pytest.approx(0.55)
    assert second.dram_active_ratio == pytest.approx(0.35)
    assert len(fake.freed) == 1  # the older sample is freed each tick
    b.close()


def test_no_gpm_before_hopper_means_absent_profiling() -> None:
    b, _ = _backend(1, gpm=False, name="NVIDIA A100-SXM4-40GB")
    d = b.devices()[0]
    b.read(d)
    r = b.read(d)
    assert r.sm_active_ratio is None and r.utilization_ratio is not None
    assert not b.capabilities().profiling
    b.close()


def test_missing_driver_is_one_clear_line() -> None:
    with pytest.raises(BackendUnavailable) as err:
        NvmlBackend(make_fake_nvml([], no_library=True))
    message = str(err.value)
    assert "\n" not in message and "NVIDIA driver" in message


def test_no_gpu_is_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match="no GPU"):
        NvmlBackend(make_fake_nvml([]))


def test_processes_become_pids() -> None:
    b, _ = _backend(1, pids=(4242, 4343))
    assert b.read(b.devices()[0]).pids == (4242, 4343)
    b.close()


def test_one_gpu_failing_at_start_is_up_0_and_the_others_report() -> None:
    """Issue 13 item 5: before the fix NO_PERMISSION on one handle made the whole backend unavailable."""
    import pynvml

    gpus = [FakeGpu(f"GPU-{i}") for i in range(3)]
    gpus[1].open_error = pynvml.NVML_ERROR_NO_PERMISSION
    b = NvmlBackend(make_fake_nvml(gpus))
    assert [d.index for d in b.devices()] == [0, 1, 2]
    snap = Sampler(b, clock=iter([0.0, 1.0]).__next__).tick()
    assert [r.up for r in snap.readings] == [True, False, True]
    assert snap.readings[2].power_watts == pytest.approx(350.0)
    b.close()


def test_the_xid_thread_survives_an_error_and_keeps_counting() -> None:
    """Issue 13 item 6: GPU_IS_LOST from the event wait (after XID 79) ended the thread for good."""
    import pynvml

    from tests.collector.fake_nvml import NVMLError

    b, fake = _backend(2)
    fake.events.put((0, 79))
    fake.events.put(NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST))
    fake.events.put((1, 13))
    deadline = time.monotonic() + 15
    events: list[tuple[int, int]] = []
    while len(events) < 2 and time.monotonic() < deadline:
        events += [(e.gpu, e.xid) for e in b.poll_xids()]
        time.sleep(0.05)
    assert events == [(0, 79), (1, 13)]
    assert len(fake.event_sets) == 2  # registered again on a fresh event set
    b.close()


def test_utilization_is_the_mean_of_nvmls_samples_over_the_window() -> None:
    """Issue 13 item 9. Ledger: the first read only notes the newest sample (t=100 µs); the next window
    holds samples 20, 40, 90 (t=200..400) -> mean 50 % = 0.5; before the fix: the last sample, 0.9."""
    b, fake = _backend(1)
    d = b.devices()[0]
    fake.gpus[0].util_samples = [(50, 10), (100, 30)]
    b.read(d)
    fake.gpus[0].util_samples += [(200, 20), (300, 40), (400, 90)]
    fake.gpus[0].util = 90
    assert b.read(d).utilization_ratio == pytest.approx(0.5)
    fake.gpus[0].util_samples = []  # no new sample (NVML_ERROR_NOT_FOUND): the current rate
    assert b.read(d).utilization_ratio == pytest.approx(0.9)
    b.close()


def test_a_failed_gpm_sample_is_freed() -> None:
    """Issue 13 item 10: a failing nvmlGpmSampleGet leaked its allocation every tick."""
    b, fake = _backend(1)
    d = b.devices()[0]
    fake.gpus[0].unsupported = {"gpm"}
    for _ in range(5):
        b.read(d)
    assert len(fake.allocated) == 5 and {id(s) for s in fake.freed} == {id(s) for s in fake.allocated}
    b.close()


def test_mig_instances_are_devices_with_their_share_and_processes() -> None:
    from tests.collector.fake_nvml import FakeMig

    gpu = FakeGpu("GPU-parent", name="NVIDIA A100-SXM4-80GB")
    gpu.mig = [
        FakeMig("MIG-aaa", "3g.40gb", gi=1, slices=3, pids=(11,)),
        None,  # an empty slot
        FakeMig("MIG-bbb", "2g.20gb", gi=5, slices=2, pids=(22,), mem_total=20 * 2**30),
    ]
    b = NvmlBackend(make_fake_nvml([gpu, FakeGpu("GPU-plain")]))
    devices = b.devices()
    assert [(d.index, d.uuid, d.mig, d.share) for d in devices] == [
        (0, "MIG-aaa", "3g.40gb/1", 3 / 7),
        (0, "MIG-bbb", "2g.20gb/5", 2 / 7),
        (1, "GPU-plain", "", 1.0),
    ]
    r = b.read(devices[1])
    assert r.pids == (22,) and r.memory_total_bytes == 20 * 2**30
    assert r.power_watts is None and r.utilization_ratio is None and r.sm_active_ratio is None
    assert b.read(devices[2]).power_watts == pytest.approx(350.0)
    b.close()
