"""Issue 13 items 3, 10 (scrapers that hang up), 11 and 4 (series counts): the agent's HTTP side and
the host settings it may touch."""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpulens.collector import socket as agent_socket
from gpulens.collector.agent import AgentConfig, run_agent
from gpulens.collector.backends.sim import SimBackend, parse_mig
from gpulens.collector.exposition import (
    AgentCollector,
    AgentHTTPServer,
    AgentIdentity,
    build_registry,
    make_server,
)
from gpulens.collector.mapping.trainer import TrainerMapper
from gpulens.collector.render import render
from gpulens.collector.sampler import Sampler
from gpulens.collector.trainstats import TrainStats
from gpulens.collector.trust import Trust
from tests.support.servers import free_port


@pytest.fixture
def served() -> Iterator[tuple[str, Sampler, AgentHTTPServer]]:
    yield from _serve(None)


@pytest.fixture
def served_with_token() -> Iterator[tuple[str, Sampler, AgentHTTPServer]]:
    yield from _serve("s3cret")


def _serve(token: str | None, gpus: int = 8) -> Iterator[tuple[str, Sampler, AgentHTTPServer]]:
    t = [0.0]
    sampler = Sampler(SimBackend(gpus, clock=lambda: t[0]), clock=lambda: t[0])
    t[0] = 1.0
    sampler.tick()
    registry = build_registry(
        AgentCollector(AgentIdentity("n", "sim"), lambda: sampler.snapshot, TrainStats())
    )
    server = make_server("127.0.0.1", 0, registry, sampler, stale_after=1e9, admin_token=token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", sampler, server
    finally:
        server.shutdown()
        server.server_close()


def _post(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        return urllib.request.urlopen(
            urllib.request.Request(url, method="POST", headers=headers or {})
        ).status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.parametrize("seconds", ["nan", "inf", "-inf", "-5", "0", "86401", "1e300", "ten"])
def test_pause_rejects_non_finite_and_out_of_range_seconds(
    served: tuple[str, Sampler, AgentHTTPServer], seconds: str
) -> None:
    """Issue 13 item 3: `seconds=nan` turned profiling off for good (nan never compares >= now)."""
    url, sampler, _ = served
    assert _post(f"{url}/profiling/pause?seconds={seconds}") == 400
    assert not sampler.profiling_paused()


def test_pause_accepts_a_day_and_resumes_after_it(served: tuple[str, Sampler, AgentHTTPServer]) -> None:
    url, sampler, _ = served
    assert _post(f"{url}/profiling/pause?seconds=86400") == 200
    assert sampler.profiling_paused()


def test_state_changing_endpoints_need_the_token_when_one_is_set(
    served_with_token: tuple[str, Sampler, AgentHTTPServer],
) -> None:
    url, sampler, _ = served_with_token
    assert _post(f"{url}/profiling/pause?seconds=60") == 403
    assert _post(f"{url}/profiling/pause?seconds=60", {"Authorization": "Bearer wrong"}) == 403
    assert not sampler.profiling_paused()
    assert _post(f"{url}/profiling/pause?seconds=60", {"Authorization": "Bearer s3cret"}) == 200
    assert sampler.profiling_paused()
    assert urllib.request.urlopen(f"{url}/metrics").status == 200  # scrapes need no token


def test_without_a_token_only_loopback_clients_may_change_state() -> None:
    from gpulens.collector.exposition import _loopback

    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("::ffff:127.0.0.1")
    assert not _loopback("10.1.2.3") and not _loopback("0.0.0.0")


def test_a_scraper_that_hangs_up_leaves_no_traceback(
    served: tuple[str, Sampler, AgentHTTPServer], capfd: pytest.CaptureFixture[str]
) -> None:
    """Issue 13 item 10: an unhandled BrokenPipeError/ConnectionResetError traceback per disconnect."""
    url, _, _ = served
    port = int(url.rsplit(":", 1)[1])
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
    assert urllib.request.urlopen(f"{url}/metrics").status == 200
    assert "Traceback" not in capfd.readouterr().err


def _agent_in_thread(tmp_path: Path, **overrides: object) -> None:
    """run_agent in-process until /healthz answers, then stopped (sim backend, free port)."""
    port = free_port()
    config = AgentConfig(backend="sim", port=port, socket=tmp_path / "agent.sock", **overrides)  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=run_agent, args=(config, stop, threading.Event()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("agent did not come up")
    finally:
        stop.set()
        thread.join(timeout=10)


def test_the_queue_sysctl_is_left_alone_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13 item 11: a root agent raised net.unix.max_dgram_qlen on every start (a laptop's too)."""
    sysctl = tmp_path / "max_dgram_qlen"
    sysctl.write_text("10\n")
    monkeypatch.setattr(agent_socket, "QLEN_SYSCTL", sysctl)
    _agent_in_thread(tmp_path)
    assert sysctl.read_text().strip() == "10"
    _agent_in_thread(tmp_path, raise_dgram_qlen=True)
    assert sysctl.read_text().strip() == "8192"


# -- item 4: series per node ----------------------------------------------------------------------


def _series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def test_series_return_to_rest_after_a_thousand_jobs_came_and_went() -> None:
    """Issue 13 item 4: 10 short jobs took a node from 162 to 432 series; now a job's series leave a
    TTL after its last record or mapping, and at most 64 job label sets are exported at once."""
    t = [0.0]
    clock = lambda: t[0]  # noqa: E731
    sim = SimBackend(8, scenario="free", clock=clock)
    trainer = TrainerMapper(timeout=60.0, clock=clock)
    stats = TrainStats(on_step=trainer.observe, clock=clock, job_ttl=600.0, max_jobs=64)
    sampler = Sampler(sim, [trainer], clock=clock, job_ttl=600.0)
    collector = AgentCollector(AgentIdentity("n", "sim"), lambda: sampler.snapshot, stats)
    t[0] = 1.0
    sampler.tick()
    rest = _series(render(build_registry(collector).collect()).decode())
    peak = 0
    for n in range(1000):  # a job every 2 s on GPU n % 8, each sending one step
        t[0] += 2.0
        record = {"v": 1, "kind": "step", "job_id": f"j{n}", "team": "t", "rank": 0, "gpu": n % 8, "pid": 9}
        stats.ingest(json.dumps({**record, "step_seconds": 0.5}).encode())
        sampler.tick()
        if n % 50 == 0:
            peak = max(peak, _series(render(build_registry(collector).collect()).decode()))
    t[0] += 700.0
    sampler.tick()
    after = _series(render(build_registry(collector).collect()).decode())
    assert after == rest
    assert peak < 64 * 40 and stats.copy()[2]["over_limit"] > 0


def test_sim_mig_layout_exports_one_gpu_per_instance_and_maps_by_mig_uuid() -> None:
    """MIG: GPU 1 split 3g+2g+2g. A trainer record naming the 2g instance's MIG UUID maps that
    instance only; its held seconds are 2/7 of the wall time: ledger 7 s x 2/7 = 2.0 s."""
    t = [0.0]
    clock = lambda: t[0]  # noqa: E731
    sim = SimBackend(2, scenario="free", clock=clock, mig=[parse_mig("1:3g.40gb,2g.20gb,2g.20gb")])
    devices = sim.devices()
    assert [(d.index, d.mig) for d in devices] == [
        (0, ""),
        (1, "3g.40gb/1"),
        (1, "2g.20gb/2"),
        (1, "2g.20gb/3"),
    ]
    trust = Trust("off", devices, agent_uid=0)
    trainer = TrainerMapper(timeout=60.0, clock=clock)
    stats = TrainStats(on_step=trainer.observe, clock=clock, verifier=trust)
    sampler = Sampler(sim, [trust, trainer], clock=clock)
    target = devices[2].uuid
    record = {
        "v": 1,
        "kind": "step",
        "job_id": "mig-job",
        "team": "t",
        "rank": 0,
        "gpu": 0,
        "gpu_uuid": target,
    }
    assert stats.ingest(json.dumps({**record, "pid": 5}).encode())
    for s in (3.5, 7.0):
        t[0] = s
        sampler.tick()
    text = render(
        build_registry(AgentCollector(AgentIdentity("n", "sim"), lambda: sampler.snapshot, stats)).collect()
    )
    held = [x for x in text.decode().splitlines() if x.startswith("gpulens_gpu_held_seconds_total{")]
    held = [x for x in held if 'job_id="mig-job"' in x]  # the other instances run their sim jobs
    assert len(held) == 1 and f'uuid="{target}"' in held[0]
    assert 'mig="2g.20gb/2"' in held[0] and held[0].endswith(" 2.0")
    assert len(re.findall(r'^gpulens_gpu_up\{[^}]*mig="', text.decode(), re.M)) == 3
