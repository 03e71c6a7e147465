"""`gpulens runs check PATH [--format table|json]`: the docs/design.md §7 detector, offline, on one loss
curve."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "runs", help="training runs: check a loss curve for anomalies, measure goodput"
    )
    sub = parser.add_subparsers(dest="runs_command", metavar="SUBCOMMAND", required=True)
    check = sub.add_parser(
        "check",
        help="scan one loss curve for NaN, spikes and divergence (docs/design.md §7)",
        description="Scan one run's loss log with the same detector the trainer runs online. The format "
        "is detected: CSV with step,loss columns, the trainer's JSONL, llm.c or modded-nanogpt text logs "
        "(s:N trl:X, step:N/M train_loss:X), Hugging Face trainer_state.json, Lightning CSVLogger "
        "metrics.csv, a W&B CSV export or a TensorBoard event file. Exits 0 whether or not anomalies are "
        "found.",
    )
    check.add_argument("path", type=Path, metavar="PATH", help="a loss log in one of the formats above")
    check.add_argument("--format", choices=("table", "json"), default="table")
    check.set_defaults(handler=_check)
    goodput = sub.add_parser(
        "goodput",
        help="where one run's wall time went: productive steps, lost progress, checkpoints, waits (§8)",
        description="Cut a run's wall time (first run start to last run end, rank 0) into goodput buckets "
        "from the trainer's JSONL log: productive, wasted_progress, checkpoint_save, checkpoint_load, "
        "data_wait, eval, init, restart and other. Several logs of one job (one per attempt) may be given "
        "in the order they were written.",
    )
    goodput.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="trainer JSONL log(s)")
    goodput.add_argument("--format", choices=("table", "json"), default="table")
    goodput.set_defaults(handler=_goodput)


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
    from gpulens.attribution.present import format_count

    print(f"{args.path}: {format_count(len(points))} points, {format_count(len(anomalies))} anomalies")
    if anomalies:
        print(f"{'step':>12}  {'kind':<10}  loss")
        for a in anomalies:
            print(f"{format_count(a.step):>12}  {a.kind:<10}  {a.loss:.6g}")
    return 0


def _goodput(args: argparse.Namespace) -> int:
    import duckdb

    from gpulens.attribution.goodput import as_json, job_goodput
    from gpulens.attribution.ingest.runs import job_rows, read_runs
    from gpulens.errors import GpulensError

    with duckdb.connect() as con:
        runs = read_runs(con, args.paths)
    if not runs:
        raise GpulensError("no step, phase or run records: nothing to measure", path=args.paths[0])
    found = [job_goodput(job_rows(run)) for _, run in sorted(runs.items())]
    if args.format == "json":
        rows = [as_json(job) for job in found]
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return 0
    for job in found:
        print(goodput_table(job))
    return 0


def goodput_table(job: Any) -> str:
    """One run's buckets as a small table: seconds and share of the wall time."""
    from gpulens.attribution.goodput import BUCKETS

    share = f"{job.goodput:.1%}" if job.goodput is not None else "-"
    lines = [
        f"{job.job_id} ({job.team or '-'}): {job.attempts} attempt(s), {job.wall_seconds:,.1f} s wall, "
        f"goodput {share}",
        f"  {'bucket':<16} {'seconds':>12} {'share':>7}",
    ]
    for bucket in BUCKETS:
        seconds = job.seconds.get(bucket, 0.0)
        part = seconds / job.wall_seconds if job.wall_seconds else 0.0
        lines.append(f"  {bucket:<16} {seconds:>12,.1f} {part:>7.1%}")
    return "\n".join(lines)
