"""Backend selection (`auto`), the sampler's per-device guard, and /healthz going 503 when sampling stalls."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest

from gpulens.collector.backends.base import BackendUnavailable, GpuBackend, GpuIdentity, GpuReading
from gpulens.collector.backends.select import open_backend
from gpulens.collector.backends.sim import SimBackend
from gpulens.collector.exposition import AgentCollector, AgentIdentity, build_registry, make_server
from gpulens.collector.sampler import Sampler
from gpulens.collector.trainstats import TrainStats


def _fail(message: str):  # type: ignore[no-untyped-def]
    def opener() -> GpuBackend:
        raise BackendUnavailable(message)

    return opener


def test_auto_prefers_dcgm_then_nvml_and_never_sim() -> None:
    sim = SimBackend(1)
    assert open_backend("auto", sim=lambda: sim, nvml=lambda: sim, dcgm=_fail("no dcgm")) is sim
    with pytest.raises(BackendUnavailable) as err:
        open_backend("auto", sim=lambda: sim, nvml=_fail("no driver"), dcgm=_fail("no dcgm"))
    assert "no dcgm" in str(err.value) and "no driver" in str(err.value) and "--backend sim" in str(err.value)
    assert open_backend("sim", sim=lambda: sim, nvml=_fail("x"), dcgm=_fail("y")) is sim


class Flaky(SimBackend):
    def read(self, device: GpuIdentity) -> GpuReading:
        if device.index == 1:
            raise RuntimeError("driver hiccup")
        return super().read(device)


def test_an_unexpected_error_costs_one_device_one_tick() -> None:
    t = [0.0]
    sampler = Sampler(Flaky(3, clock=lambda: t[0]), clock=lambda: t[0])
    t[0] = 1.0
    snap = sampler.tick()
    assert [r.up for r in snap.readings] == [True, False, True]


def test_healthz_is_503_when_the_sampler_stalls() -> None:
    t = [0.0]
    sampler = Sampler(SimBackend(1, clock=lambda: t[0]), clock=lambda: t[0])
    sampler.tick()
    registry = build_registry(
        AgentCollector(AgentIdentity("n", "sim"), lambda: sampler.snapshot, TrainStats())
    )
    server = make_server("127.0.0.1", 0, registry, sampler, stale_after=10.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/healthz"
    try:
        assert urllib.request.urlopen(url).status == 200
        t[0] = 11.0
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url)
        assert err.value.code == 503
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url.replace("/healthz", "/nope"))
        assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
