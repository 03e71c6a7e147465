"""`gpulens train ...`: the reference trainer (the same options as `python -m gpulens.trainer.reference`)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from gpulens.trainer.reference.cli import add_arguments

    parser = subparsers.add_parser(
        "train",
        help="train the reference model on the CPU, reporting to the local agent",
        description="Train a small decoder-only transformer on a generated corpus, instrumented with "
        "StepMonitor; --diverge-at/--nan-at/--stall-at inject failures for demos; --checkpoint-every/"
        "--checkpoint-seconds save real checkpoints, --crash-at fails the run and --resume goes on from the "
        "last checkpoint as the next attempt; --pace holds the step rate down.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from gpulens.trainer.reference.cli import run

    return run(args)
