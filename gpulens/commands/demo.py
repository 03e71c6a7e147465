"""`gpulens demo`: the whole system on one machine, no cloud account, no GPU (docs/design.md §2)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="simulated month + live agent and trainer + the explorer, on this machine",
        description="Builds a simulated month for a 16-node p4d/p5 fleet (CUR 2.0 export, usage rollups, "
        "trainer logs), loads it with `gpulens ingest` and `gpulens attribute`, starts a simulated agent and "
        "a short CPU training run reporting to it, and serves the explorer. Ctrl-C stops everything.",
    )
    parser.add_argument("--port", type=int, default=8050, help="explorer port (default 8050)")
    parser.add_argument("--host", default="127.0.0.1", help="explorer address (default 127.0.0.1)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(".demo"),
        help="where the artifacts, warehouse and logs go (default ./.demo); reused by the next run",
    )
    parser.add_argument("--seed", type=int, default=7, help="scenario seed (default 7)")
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild the month even if --workdir holds one"
    )
    parser.add_argument(
        "--no-live",
        dest="live",
        action="store_false",
        help="serve the month only: no agent, trainer or Prometheus",
    )
    parser.add_argument("--trainer-steps", type=int, default=3000, help="steps of the live training run")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gpulens.demo.orchestrator import DemoConfig
    from gpulens.demo.orchestrator import run as run_demo

    config = DemoConfig(
        workdir=args.workdir,
        port=args.port,
        host=args.host,
        seed=args.seed,
        rebuild=args.rebuild,
        live=args.live,
        trainer_steps=args.trainer_steps,
    )
    return run_demo(config, say=lambda line: print(line, flush=True))
