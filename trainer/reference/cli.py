"""Command-line options of the reference trainer, shared by `python -m gpulens.trainer.reference` and `gpulens train`."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from gpulens.trainer.reference.run import ReferenceConfig, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job-id", required=True, help="job id the agent labels this run with")
    parser.add_argument("--team", required=True, help="team the run is charged to")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    parser.add_argument(
        "--socket",
        type=Path,
        default=None,
        help="agent socket (default: $GPULENS_SOCKET or the agent's default path)",
    )
    parser.add_argument(
        "--log",
        type=Path,
        default=None,
        help="append SPEC §4 records to this JSONL file (default: $GPULENS_TRAIN_LOG, if set)",
    )
    parser.add_argument(
        "--diverge-at",
        type=int,
        default=None,
        metavar="K",
        help="blow the learning rate up at step K so that the loss diverges",
    )
    parser.add_argument("--nan-at", type=int, default=None, metavar="K", help="make step K's loss NaN")
    parser.add_argument("--stall-at", type=int, default=None, metavar="K", help="stall step K's input")
    parser.add_argument(
        "--stall-seconds", type=float, default=5.0, metavar="S", help="how long the stall lasts (default 5)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--peak-flops",
        type=float,
        default=None,
        help="peak FLOP/s of one device for MFU (default: GPU table, or a nominal CPU figure)",
    )
    parser.add_argument(
        "--prometheus-port",
        type=int,
        default=None,
        help="also serve this process's own /metrics on 127.0.0.1:PORT (+ local rank)",
    )


def config_from_args(args: argparse.Namespace) -> ReferenceConfig:
    return ReferenceConfig(
        job_id=args.job_id,
        team=args.team,
        steps=args.steps,
        socket=args.socket,
        log=args.log,
        diverge_at=args.diverge_at,
        nan_at=args.nan_at,
        stall_at=args.stall_at,
        stall_seconds=args.stall_seconds if args.stall_at is not None else 0.0,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        peak_flops=args.peak_flops,
        prometheus_port=args.prometheus_port,
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if threading.current_thread() is threading.main_thread():
        # A demo or a scheduler stops the run with SIGTERM: unwind as for Ctrl-C, so that the monitor
        # closes and the last records reach the agent and the log.
        signal.signal(signal.SIGTERM, _interrupt)
    summary = train(config)
    print(summary.line(config.job_id), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gpulens.trainer.reference",
        description="Train a small transformer on the CPU, reporting to the gpulens agent.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
