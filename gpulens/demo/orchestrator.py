"""`gpulens demo`: build (or reuse) the simulated month, start the live pieces, serve the explorer,
print where to look, and on Ctrl-C or SIGTERM stop everything it started."""

from __future__ import annotations

import logging
import signal
import threading
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
        prometheus = _start_live(config, built, procs, say) if config.live and not stop.is_set() else None
        if stop.is_set():
            return 0
        try:
            server = ExplorerServer(ExplorerConfig(built.warehouse, config.host, config.port, prometheus))
        except OSError as exc:
            raise GpulensError(
                f"cannot serve the explorer on {config.host}:{config.port}: {exc.strerror or exc}; try --port"
            ) from exc
        server.start()
        say(_guide(server.url, built, procs, prometheus))
        live_log = config.workdir.resolve() / "live" / LIVE_LOG
        while not stop.wait(LIVE_INGEST_EVERY_S):
            if config.live:
                ingest_live_run(built, live_log)
        say("stopping the demo ...")
        return 0
    finally:
        if server is not None:
            server.stop()
        procs.stop()
        _restore_signals(previous)


LIVE_LOG = "live-demo-run.jsonl"
LIVE_INGEST_EVERY_S = 20.0


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
) -> str | None:
    """Agent on a simulated H100 node, the reference trainer reporting to it, Prometheus if installed."""
    node = built.scenario.nodes[-1]
    sock = config.workdir.resolve() / "run" / "agent.sock"
    sock.parent.mkdir(parents=True, exist_ok=True)
    agent_port = live.free_port()
    agent = procs.start("agent", live.agent_argv(agent_port, sock, "live-node", node.instance_id))
    if not live.wait_http(f"http://127.0.0.1:{agent_port}/healthz", agent):
        raise GpulensError(f"the agent did not start; see {procs.logs / 'agent.log'}")
    say(f"agent (simulated 8x H100) on http://127.0.0.1:{agent_port}/metrics")
    procs.start(
        "trainer",
        live.trainer_argv(sock, config.workdir.resolve() / "live" / LIVE_LOG, config.trainer_steps),
    )
    say(f"reference trainer 'live-demo-run' training on the CPU, reporting to {sock}")
    home = config.workdir.resolve() / "prometheus"
    prom_port = live.free_port()
    argv = live.prometheus_argv(home, prom_port, agent_port)
    if argv is None:
        return None
    prom = procs.start("prometheus", argv)
    url = f"http://127.0.0.1:{prom_port}"
    return url if live.wait_http(f"{url}/-/ready", prom, timeout=20) else None


def _guide(url: str, built: DemoBuild, procs: live.Processes, prometheus: str | None) -> str:
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
        "",
    ]
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
