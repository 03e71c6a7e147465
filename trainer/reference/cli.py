"""Command-line options of the reference trainer, shared by `python -m gpulens.trainer.reference` and
`gpulens train`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from gpulens.trainer.reference.run import InjectedCrash, ReferenceConfig, train


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {value}")
    return value


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
        help="append the trainer's records to this JSONL file (default: $GPULENS_TRAIN_LOG)",
    )
    parser.add_argument(
        "--diverge-at",
        type=int,
        default=None,
        metavar="K",
        help="blow the learning rate up at step K so that the loss diverges",
    )
    parser.add_argument("--nan-at", type=int, default=None, metavar="K", help="make step K's loss NaN")
    parser.add_argument(
        "--stall-at", type=int, default=None, metavar="K", help="stall step K's input (a data_wait phase)"
    )
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
        "--checkpoint-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where checkpoints are saved and resumed from (default: ./checkpoints/JOB_ID)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=None,
        metavar="N",
        help="save a checkpoint after every N steps",
    )
    parser.add_argument(
        "--checkpoint-seconds",
        type=_positive_float,
        default=None,
        metavar="S",
        help="save a checkpoint when S seconds have passed since the last one",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="load the latest checkpoint and go on from its step, as the job's next attempt",
    )
    parser.add_argument(
        "--crash-at",
        type=int,
        default=None,
        metavar="K",
        help="fail at step K (exit 1, no clean end of the run); --resume goes on from the last checkpoint",
    )
    parser.add_argument(
        "--eval-every",
        type=_positive_int,
        default=None,
        metavar="N",
        help="an eval phase after every N steps",
    )
    parser.add_argument(
        "--pace",
        type=_positive_float,
        default=None,
        metavar="R",
        help="at most R steps a second (a step lasts at least 1/R s): a demo trainer leaves the CPU idle",
    )
    parser.add_argument(
        "--attempt",
        type=_positive_int,
        default=None,
        metavar="N",
        help="which attempt of the job this is (default: from the launcher's restart counters, or "
        "with --resume one more than the checkpoint directory has seen)",
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
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        checkpoint_seconds=args.checkpoint_seconds,
        resume=args.resume,
        crash_at=args.crash_at,
        eval_every=args.eval_every,
        pace=args.pace,
        attempt=args.attempt,
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if threading.current_thread() is threading.main_thread():
        # A demo or a scheduler stops the run with SIGTERM: unwind as for Ctrl-C, so that the monitor
        # closes and the last records reach the agent and the log.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = train(config)
    except InjectedCrash as crash:
        print(f"gpulens reference trainer: job {config.job_id}: {crash}", file=sys.stderr, flush=True)
        return 1
    print(summary.line(config.job_id), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gpulens.trainer.reference",
        description="Train a small transformer on the CPU, reporting to the gpulens agent.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
