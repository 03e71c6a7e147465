"""Wires one agent: backend -> sampler (+ mappers) -> exposition, and the trainer socket.

Library code: it takes a frozen `AgentConfig` built by `gpulens/commands/agent.py` and two events
(stop, profiler toggle) that the command's signal handlers set.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from gpulens.collector.backends.base import GpuBackend
from gpulens.collector.backends.select import open_backend
from gpulens.collector.backends.sim import SimBackend, parse_fault
from gpulens.collector.exposition import (
    AgentCollector,
    AgentIdentity,
    agent_generation,
    build_registry,
    make_server,
    serve_in_thread,
)
from gpulens.collector.mapping.kubelet import KubeletMapper, PodResourcesClient
from gpulens.collector.mapping.proc import ProcMapper, ProcReader
from gpulens.collector.mapping.static import StaticMapper, parse_labels
from gpulens.collector.mapping.trainer import TrainerMapper
from gpulens.collector.sampler import Mapper, Sampler
from gpulens.collector.socket import DatagramServer, raise_dgram_qlen
from gpulens.collector.trainstats import TrainStats
from gpulens.errors import GpulensError

log = logging.getLogger("gpulens.agent")


@dataclass(frozen=True)
class AgentConfig:
    backend: str = "auto"
    host: str = "127.0.0.1"
    port: int = 9400
    interval: float = 1.0
    socket: Path = Path("/run/gpulens/agent.sock")
    node: str = "localhost"
    sim_gpus: int = 8
    sim_model: str = "a100-80gb"
    sim_seed: int = 0
    sim_scenario: str = "mixed"
    sim_faults: tuple[str, ...] = ()
    instance_id: str = ""
    instance_type: str = ""
    cluster: str = ""
    labels: tuple[str, ...] = ()
    datagram_timeout: float = 60.0  # seconds without a record before a trainer mapping ends
    kubelet_socket: Path | None = None  # the kubelet's pod-resources socket, when mounted


def make_backend(config: AgentConfig) -> GpuBackend:
    faults = tuple(parse_fault(f) for f in config.sim_faults)
    return open_backend(
        config.backend,
        sim=lambda: SimBackend(
            config.sim_gpus, config.sim_model, config.sim_seed, config.sim_scenario, faults
        ),
    )


def make_mappers(config: AgentConfig, trainer: TrainerMapper, reader: ProcReader) -> list[Mapper]:
    """Weakest first: each later mapper overrides the ones before where it knows better."""
    mappers: list[Mapper] = [StaticMapper(parse_labels(config.labels))]
    if config.kubelet_socket is not None and config.kubelet_socket.exists():
        try:
            mappers.append(KubeletMapper(PodResourcesClient(config.kubelet_socket).list))
            log.info("mapping GPUs to pods through %s", config.kubelet_socket)
        except GpulensError as exc:
            log.warning("%s", exc)
    return [*mappers, ProcMapper(reader), trainer]


def run_agent(config: AgentConfig, stop: threading.Event, toggle: threading.Event) -> int:
    """Run until `stop` is set; `toggle` flips the profiler lock. Returns the exit code."""
    parse_labels(config.labels)  # bad flags fail before anything starts
    backend = make_backend(config)
    reader = ProcReader()
    trainer = TrainerMapper(timeout=config.datagram_timeout, alive=reader.alive)
    stats = TrainStats(on_step=trainer.observe)
    sampler = Sampler(backend, make_mappers(config, trainer, reader), config.interval)
    identity = AgentIdentity(
        config.node,
        backend.name,
        backend.capabilities().names(),
        config.instance_id,
        config.instance_type,
        config.cluster,
    )
    registry = build_registry(AgentCollector(identity, lambda: sampler.snapshot, stats))
    try:
        server = make_server(
            config.host,
            config.port,
            registry,
            sampler,
            stale_after=max(10.0, 5 * config.interval),
            generation=agent_generation(sampler, stats),
        )
    except OSError as exc:
        backend.close()
        raise GpulensError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror}", field="--port"
        ) from None
    raise_dgram_qlen()  # before the socket exists: the kernel reads it at creation
    datagrams = DatagramServer(config.socket, stats.ingest_many)
    sampler.start()
    datagrams.start()
    serve_in_thread(server)
    log.info(
        "gpulens agent (%s backend, %d GPUs) on http://%s:%d/metrics, trainer socket %s",
        backend.name,
        len(sampler.devices),
        config.host,
        config.port,
        config.socket,
    )
    try:
        while not stop.wait(0.2):
            if toggle.is_set():
                toggle.clear()
                _toggle_profiling(sampler)
    finally:
        server.shutdown()
        server.server_close()
        sampler.stop()
        datagrams.stop()
        backend.close()
        log.info("gpulens agent stopped")
    return 0


def _toggle_profiling(sampler: Sampler) -> None:
    if sampler.profiling_paused():
        sampler.resume_profiling()
        log.info("profiling fields resumed (SIGUSR1)")
    else:
        sampler.pause_profiling(None)
        log.info("profiling fields paused until the next SIGUSR1")
