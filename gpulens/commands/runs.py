"""`gpulens runs check PATH [--format table|json]`: the SPEC §7 detector, offline, on one loss curve."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("runs", help="training runs: check a loss curve for anomalies")
    sub = parser.add_subparsers(dest="runs_command", metavar="SUBCOMMAND", required=True)
    check = sub.add_parser(
        "check",
        help="scan one loss curve for NaN, spikes and divergence (SPEC §7)",
        description="Scan a CSV with step,loss columns, or the trainer's JSONL, with the same detector the "
        "trainer runs online. Exits 0 whether or not anomalies are found.",
    )
    check.add_argument("path", type=Path, metavar="PATH", help="CSV (step,loss[,...]) or trainer JSONL")
    check.add_argument("--format", choices=("table", "json"), default="table")
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    from gpulens.trainer.curves import read_curve
    from gpulens.trainer.health import scan

    points = read_curve(args.path)
    anomalies = scan(points)
    if args.format == "json":
        rows = [
            {"step": a.step, "kind": a.kind, "loss": a.loss if math.isfinite(a.loss) else None}
            for a in anomalies
        ]
        print(json.dumps({"anomalies": rows}))
        return 0
    print(f"{args.path}: {len(points)} points, {len(anomalies)} anomalies")
    if anomalies:
        print(f"{'step':>10}  {'kind':<10}  loss")
        for a in anomalies:
            print(f"{a.step:>10}  {a.kind:<10}  {a.loss:.6g}")
    return 0
