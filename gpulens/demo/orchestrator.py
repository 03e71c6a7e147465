"""`gpulens demo`: build (or reuse) the simulated month, start the live pieces, serve the explorer,
print where to look, and on Ctrl-C or SIGTERM stop everything it started."""

from __future__ import annotations

import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from gpulens.dashboards.explorer.app import ExplorerConfig, ExplorerServer
from gpulens.demo import live
from gpulens.demo.build import DemoBuild, build
from gpulens.errors import GpulensError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    workdir: Path
    port: int = 8050
    host: str = "127.0.0.1"
    seed: int = 7
    rebuild: bool = False
    live: bool = True  # start the agent, the trainer and (if installed) Prometheus
    trainer_steps: int = 3000


def run(
    config: DemoConfig, *, say: Callable[[str], None] = print, stop: threading.Event | None = None
) -> int:
    """Runs the demo until SIGINT/SIGTERM (or `stop` is set); returns the exit code."""
    stop = stop or threading.Event()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per browser request in the guide
    previous = _trap_signals(stop)
    procs = live.Processes(config.workdir / "logs")
    server: ExplorerServer | None = None
    try:
        built = build(config.workdir.resolve(), seed=config.seed, rebuild=config.rebuild, say=say)
        started = _start_live(config, built, procs, say) if config.live and not stop.is_set() else None
        if stop.is_set():
            return 0
        try:
            prometheus = started.prometheus if started else None
            server = ExplorerServer(ExplorerConfig(built.warehouse, config.host, config.port, prometheus))
        except OSError as exc:
            raise GpulensError(
                f"cannot serve the explorer on {config.host}:{config.port}: {exc.strerror or exc}; try --port"
            ) from exc
        server.start()
        say(_guide(server.url, built, procs, started))
        if started is not None:
            watch_live(started, built, stop, say)
        else:
            while not stop.wait(LIVE_INGEST_EVERY_S):  # a timeout, so that signals are seen promptly
                pass
        say("stopping the demo ...")
        return 0
    finally:
        if server is not None:
            server.stop()
        procs.stop()
        _restore_signals(previous)


LIVE_LOG = "live-demo-run.jsonl"
LIVE_INGEST_EVERY_S = 20.0
LIVE_POLL_S = 1.0  # how soon a crashed trainer attempt is restarted (the restart gap's floor)


@dataclass(frozen=True)
class Live:
    trainer: live.ResumingLauncher
    prometheus: str | None  # its URL, when one is installed and ready


def watch_live(
    started: Live,
    built: DemoBuild,
    stop: threading.Event,
    say: Callable[[str], None],
    *,
    ingest_every: float = LIVE_INGEST_EVERY_S,
) -> None:
    """Until `stop`: restart the live trainer with --resume when its first attempt crashes, and ingest its
    log every `ingest_every` seconds (and right after a restart, so /training shows the crash soon)."""
    launcher = started.trainer
    next_ingest = time.monotonic() + ingest_every
    while not stop.wait(LIVE_POLL_S):
        if launcher.poll():
            say(
                f"live trainer attempt {launcher.attempt - 1} crashed at step {launcher.trainer.crash_at} "
                f"(--crash-at); restarted with --resume as attempt {launcher.attempt}"
            )
            next_ingest = time.monotonic()
        if time.monotonic() >= next_ingest:
            ingest_live_run(built, launcher.trainer.log_file)
            next_ingest = time.monotonic() + ingest_every


def ingest_live_run(built: DemoBuild, log_file: Path) -> bool:
    """`gpulens ingest runs` of the live trainer's log, so the live run shows on /training (each ingest
    replaces the job's rows). Skipped, to be tried again, while the explorer holds the warehouse open
    for reading (DuckDB lets one process either read or write a file) or before the first step."""
    from gpulens.demo.build import run_command

    if not log_file.exists() or log_file.stat().st_size == 0:
        return False
    try:
        run_command(["ingest", "runs", str(log_file), "--warehouse", str(built.warehouse)])
    except GpulensError:
        log.debug("live run not ingested this time", exc_info=True)
        return False
    return True


def _start_live(
    config: DemoConfig, built: DemoBuild, procs: live.Processes, say: Callable[[str], None]
) -> Live:
    """Agent on a simulated H100 node, the reference trainer reporting to it (a run that crashes once and
    is resumed), Prometheus if installed."""
    node = built.scenario.nodes[-1]
    sock = config.workdir.resolve() / "run" / "agent.sock"
    sock.parent.mkdir(parents=True, exist_ok=True)
    agent_port = live.free_port()
    agent = procs.start("agent", live.agent_argv(agent_port, sock, "live-node", node.instance_id))
    if not live.wait_http(f"http://127.0.0.1:{agent_port}/healthz", agent):
        raise GpulensError(f"the agent did not start; see {procs.logs / 'agent.log'}")
    say(f"agent (simulated 8x H100) on http://127.0.0.1:{agent_port}/metrics")
    launcher = live.ResumingLauncher(procs, _live_trainer(config, sock))
    launcher.start()
    say(
        f"reference trainer 'live-demo-run' training on the CPU, reporting to {sock}; attempt 1 crashes at "
        f"step {launcher.trainer.crash_at} and is resumed from its last checkpoint"
    )
    return Live(launcher, _start_prometheus(config, procs, agent_port))


def _live_trainer(config: DemoConfig, sock: Path) -> live.LiveTrainer:
    """The live run starts over with each demo: a log appended to from an earlier demo, or checkpoints and
    an attempt count left in its directory, would read as more attempts of one run."""
    home = config.workdir.resolve() / "live"
    trainer = live.LiveTrainer(sock, home / LIVE_LOG, home / "checkpoints", config.trainer_steps)
    trainer.log_file.unlink(missing_ok=True)
    shutil.rmtree(trainer.checkpoints, ignore_errors=True)
    return trainer


def _start_prometheus(config: DemoConfig, procs: live.Processes, agent_port: int) -> str | None:
    home = config.workdir.resolve() / "prometheus"
    prom_port = live.free_port()
    argv = live.prometheus_argv(home, prom_port, agent_port)
    if argv is None:
        return None
    prom = procs.start("prometheus", argv)
    url = f"http://127.0.0.1:{prom_port}"
    return url if live.wait_http(f"{url}/-/ready", prom, timeout=20) else None


def _guide(url: str, built: DemoBuild, procs: live.Processes, started: Live | None) -> str:
    period = built.scenario.period
    total = built.summary.get("total")
    money = f" (${total:,.0f} amortized)" if isinstance(total, (int, float)) else ""
    lines = [
        "",
        f"gpulens demo is serving the explorer on {url}",
        "",
        f"  {url}/cost          {period} for 4 teams on 16 p4d/p5 nodes{money}: direct, shared, idle and",
        "                       unallocated spend; click a team for its jobs and instances; the",
        "                       'Unallocated resources' view lists the untagged resources to fix",
        f"  {url}/utilization   GPUs held but idle in the last 24 h (node-08, node-10, node-16) and their",
        "                       waste in dollars; node-05 is an A100 without DCGM (coarse utilization)",
        f"  {url}/training      llm-70b-pretrain diverges and keeps burning H100 time;",
        "                       asr-conformer-xl goes NaN",
    ]
    if started is not None:
        trainer = started.trainer.trainer
        lines += [
            f"                       live-demo-run (live) crashes at step {trainer.crash_at}, resumes from",
            "                       a checkpoint: 2 attempts, wasted progress, a restart gap in its goodput",
            f"                       (ingested every ~20 s); `gpulens runs goodput {trainer.log_file}`",
        ]
    lines.append("")
    prometheus = started.prometheus if started else None
    if procs.children:
        lines.append(
            f"live: {', '.join(name for name, _ in procs.children)} running; logs in {procs.logs}"
            + (f"; live SM activity on /utilization via {prometheus}" if prometheus else "")
        )
    lines.append("Ctrl-C stops everything the demo started.")
    return "\n".join(lines)


Handler = Callable[[int, FrameType | None], object] | int | None


def _trap_signals(stop: threading.Event) -> dict[int, Handler]:
    """SIGINT and SIGTERM set `stop` (only possible from the main thread; elsewhere `stop` is the way)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Handler] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    return previous


def _restore_signals(previous: dict[int, Handler]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
