"""`gpulens agent`: sample GPUs, receive trainer datagrams, serve /metrics and /healthz (docs/design.md
§2-§4).

Flags are read here and only here; the collector gets plain values. SIGTERM/SIGINT stop it
gracefully (server, sampler, socket, backend, in that order); SIGUSR1 toggles the profiler lock
(pauses/resumes profiling fields so a user can run Nsight/CUPTI).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from gpulens.errors import GpulensError
from gpulens.paths import default_socket_path

log = logging.getLogger("gpulens.agent")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "agent",
        help="node agent: GPU metrics, trainer datagrams, /metrics",
        description="Samples GPUs, receives trainer datagrams, serves /metrics and /healthz.",
    )
    p.add_argument("--backend", choices=("auto", "nvml", "dcgm", "sim"), default="auto")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9400)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default 1.0)")
    p.add_argument(
        "--socket",
        type=Path,
        default=None,
        help="trainer datagram socket (default $GPULENS_SOCKET, "
        "/run/gpulens/agent.sock as root, else $XDG_RUNTIME_DIR/gpulens/agent.sock)",
    )
    p.add_argument("--node", default=None, help="node label (default: the host name)")
    p.add_argument("--sim-gpus", type=int, default=8)
    p.add_argument("--sim-model", choices=("a100-40gb", "a100-80gb", "h100-sxm"), default="a100-80gb")
    p.add_argument("--sim-seed", type=int, default=0)
    p.add_argument(
        "--sim-scenario",
        default="mixed",
        help="mixed (default), busy, idle, memory-bound, input-starved, free",
    )
    p.add_argument(
        "--sim-fault",
        action="append",
        default=[],
        metavar="XID:GPU:AFTER_SECONDS",
        help="sim GPU raises an XID after a delay, e.g. 79:3:5 (repeatable)",
    )
    p.add_argument(
        "--sim-mig",
        action="append",
        default=[],
        metavar="GPU:PROFILE,...",
        help="split a sim GPU into MIG instances, e.g. 7:3g.40gb,2g.20gb,1g.10gb,1g.10gb (repeatable)",
    )
    p.add_argument(
        "--trust",
        choices=("auto", "pid", "uid", "off"),
        default="auto",
        help="how trainer datagrams are tied to GPUs: pid (sender runs on the GPU or in its pod/Slurm job), "
        "uid (senders with the agent's uid only), off (believed as sent); auto: uid for sim, pid where "
        "the backend lists processes, else off (default auto; docs/agent.md)",
    )
    p.add_argument(
        "--job-ttl",
        type=float,
        default=600.0,
        help="seconds a job's series outlive its last datagram or mapping (default 600)",
    )
    p.add_argument(
        "--max-jobs",
        type=int,
        default=64,
        help="job label sets exported per node; records of further jobs count as over_limit (default 64)",
    )
    p.add_argument(
        "--raise-dgram-qlen",
        action="store_true",
        help="raise net.unix.max_dgram_qlen (a setting of the whole network namespace, not restored on "
        "exit) to 8192 when it is lower; off by default, the Helm chart passes it",
    )
    p.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        help="file holding the bearer token POST /profiling/* needs; without it only loopback clients "
        "may call them",
    )
    p.add_argument("--instance-id", default="")
    p.add_argument("--instance-type", default="")
    p.add_argument("--cluster", default="")
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="static job_id=/team= for a dedicated node (repeatable)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gpulens.collector.agent import AgentConfig, run_agent
    from gpulens.collector.mapping.kubelet import KUBELET_SOCKET

    if args.interval <= 0 or not 0 < args.port < 65536:
        print("gpulens agent: error: --interval must be positive and --port in 1..65535", file=sys.stderr)
        return 2
    if not args.job_ttl > 0 or args.max_jobs < 1:
        print("gpulens agent: error: --job-ttl must be positive and --max-jobs at least 1", file=sys.stderr)
        return 2
    token = _admin_token(args.admin_token_file)
    config = AgentConfig(
        backend=args.backend,
        host=args.host,
        port=args.port,
        interval=args.interval,
        socket=args.socket or default_socket_path(),
        node=args.node or socket.gethostname(),
        sim_gpus=args.sim_gpus,
        sim_model=args.sim_model,
        sim_seed=args.sim_seed,
        sim_scenario=args.sim_scenario,
        sim_faults=tuple(args.sim_fault),
        instance_id=args.instance_id,
        instance_type=args.instance_type,
        cluster=args.cluster,
        labels=tuple(args.label),
        kubelet_socket=KUBELET_SOCKET if args.backend != "sim" else None,
        sim_mig=tuple(args.sim_mig),
        trust=args.trust,
        agent_uid=os.geteuid(),
        job_ttl=args.job_ttl,
        max_jobs=args.max_jobs,
        raise_dgram_qlen=args.raise_dgram_qlen,
        admin_token=token,
    )
    stop = threading.Event()
    toggle = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        toggle.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGUSR1, on_usr1)
    # A scrape thread waiting on the GIL while the sampler or socket thread runs would wait up to
    # the 5 ms default switch interval; 1 ms keeps scrape latency flat.
    sys.setswitchinterval(0.001)
    logging.getLogger("gpulens").setLevel(logging.INFO)
    return run_agent(config, stop, toggle)


def _admin_token(path: Path | None) -> str | None:
    """The admin token from its file (surrounding whitespace stripped), or None without a file."""
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise GpulensError(f"cannot read the admin token: {exc.strerror}", path=path) from None
    if not token:
        raise GpulensError("the admin token file is empty", path=path)
    return token
