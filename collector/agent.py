"""Wires one agent: backend -> sampler (+ mappers) -> exposition, and the trainer socket.

Library code: it takes a frozen `AgentConfig` built by `gpulens/commands/agent.py` and two events
(stop, profiler toggle) that the command's signal handlers set.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from gpulens.collector.backends.base import GpuBackend, GpuIdentity
from gpulens.collector.backends.select import open_backend
from gpulens.collector.backends.sim import SimBackend, parse_fault, parse_mig
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
from gpulens.collector.sampler import JOB_TTL, Mapper, Sampler
from gpulens.collector.socket import DatagramServer, check_dgram_qlen, raise_dgram_qlen
from gpulens.collector.trainstats import MAX_JOBS, TrainStats
from gpulens.collector.trust import Trust, job_scope
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
    sim_mig: tuple[str, ...] = ()  # GPU:PROFILE,... MIG layouts of the sim backend
    trust: str = "auto"  # auto, pid, uid or off (collector/trust.py)
    agent_uid: int = 0  # the uid `uid` trust compares senders with (the command passes os.geteuid())
    job_ttl: float = JOB_TTL
    max_jobs: int = MAX_JOBS
    raise_dgram_qlen: bool = False  # change net.unix.max_dgram_qlen (a host setting) only when asked
    admin_token: str | None = None  # bearer token of the POST endpoints; None: loopback clients only


def make_backend(config: AgentConfig) -> GpuBackend:
    faults = tuple(parse_fault(f) for f in config.sim_faults)
    mig = tuple(parse_mig(m) for m in config.sim_mig)
    return open_backend(
        config.backend,
        sim=lambda: SimBackend(
            config.sim_gpus, config.sim_model, config.sim_seed, config.sim_scenario, faults, mig=mig
        ),
    )


def trust_mode(requested: str, backend: GpuBackend) -> str:
    """`auto` -> uid for the sim backend, pid where readings carry processes, else off."""
    if requested != "auto":
        return requested
    if backend.name == "sim":
        return "uid"
    return "pid" if backend.capabilities().processes else "off"


TRUST_LOG = {
    "pid": "trainer datagrams map a GPU only when their sender (SO_PASSCRED pid) runs on it or in its "
    "pod/Slurm job",
    "uid": "trainer datagrams are accepted from uid %d only, for any GPU",
    "off": "trainer datagrams are NOT verified (--trust off or no process list): any process that can "
    "write to the socket can map any GPU to any job",
}


def make_trust(
    config: AgentConfig, backend: GpuBackend, devices: tuple[GpuIdentity, ...], reader: ProcReader
) -> Trust:
    mode = trust_mode(config.trust, backend)

    def scope(pid: int) -> str | None:
        text = reader.cgroup(pid)
        return job_scope(text) if text is not None else None

    return Trust(mode, devices, config.agent_uid, scope)


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
    trust = make_trust(config, backend, tuple(backend.devices()), reader)
    trainer = TrainerMapper(timeout=config.datagram_timeout, alive=reader.alive)
    stats = TrainStats(
        on_step=trainer.observe, verifier=trust, max_jobs=config.max_jobs, job_ttl=config.job_ttl
    )
    mappers = [trust, *make_mappers(config, trainer, reader)]  # trust first: it learns the processes
    sampler = Sampler(backend, mappers, config.interval, job_ttl=config.job_ttl)
    identity = AgentIdentity(
        config.node,
        backend.name,
        backend.capabilities().names(),
        config.instance_id,
        config.instance_type,
        config.cluster,
        trust.mode,
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
            admin_token=config.admin_token,
        )
    except OSError as exc:
        backend.close()
        raise GpulensError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror}", field="--port"
        ) from None
    # Before the socket exists: the kernel reads the limit at creation.
    if config.raise_dgram_qlen:
        raise_dgram_qlen()
    else:
        check_dgram_qlen()
    try:
        datagrams = DatagramServer(config.socket, stats.ingest_many, credentials=trust.mode != "off")
    except GpulensError:
        server.server_close()
        backend.close()
        raise
    sampler.start()
    datagrams.start()
    serve_in_thread(server)
    message = TRUST_LOG[trust.mode] % config.agent_uid if trust.mode == "uid" else TRUST_LOG[trust.mode]
    (log.warning if trust.mode == "off" else log.info)("trust=%s: %s", trust.mode, message)
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
