"""`gpulens goodput --period YYYY-MM [--team T]`: every run's goodput buckets in seconds and in money
(docs/design.md §8), priced with the job's GPU cost as `attribute` prices it."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from gpulens.commands._options import add_warehouse_option
from gpulens.commands._warehouse import open_warehouse


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "goodput",
        help="goodput and badput of every run in a period, in seconds and money",
        description="Cut every training run of the period (train_runs, train_phases, train_metrics, loaded "
        "by `gpulens ingest runs`) into goodput buckets and price each with the job's GPU cost in the "
        "period: bucket money = GPU cost x bucket seconds / wall seconds.",
    )
    parser.add_argument("--period", required=True, metavar="YYYY-MM", help="billing period")
    parser.add_argument("--team", default=None, help="only this team's runs")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    add_warehouse_option(parser)
    parser.set_defaults(handler=_goodput)


def as_json(report: Any) -> dict[str, Any]:
    """docs/design.md §2 shape; money as numbers, never rounded before summing."""
    from gpulens.attribution.goodput import BUCKETS
    from gpulens.attribution.goodput import as_json as job_json

    return {
        "period": report.label,
        "currency": report.currency,
        "jobs": [job_json(job) | {"cost": {b: float(job.cost[b]) for b in BUCKETS}} for job in report.jobs],
        "teams": [
            {"team": team, "cost": {b: float(money[b]) for b in BUCKETS}}
            for team, money in sorted(report.team_cost().items(), key=lambda t: t[0] or "")
        ],
    }


def _goodput(args: argparse.Namespace) -> int:
    from gpulens.attribution.allocate import month_window
    from gpulens.attribution.goodput import goodput_window

    window = month_window(args.period)
    team = args.team.strip().lower() if args.team else None
    with open_warehouse(args, read_only=True) as con:
        report = goodput_window(con, window, team=team)
    if args.format == "json":
        print(json.dumps(as_json(report), indent=2))
    elif args.format == "csv":
        _csv(report)
    else:
        _table(report)
    return 0


def _csv(report: Any) -> None:
    """One row per job and bucket: period, job_id, team, bucket, seconds, cost, currency."""
    from gpulens.attribution.goodput import BUCKETS

    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["period", "job_id", "team", "bucket", "seconds", "cost", "currency"])
    for job in report.jobs:
        for b in BUCKETS:
            out.writerow(
                [report.label, job.job_id, job.team or "", b, job.seconds[b], job.cost[b], report.currency]
            )


def _table(report: Any) -> None:
    from gpulens.attribution.goodput import BADPUT

    cur = report.currency
    print(f"goodput {report.label} ({len(report.jobs)} run(s), money in {cur})")
    print(f"  {'job':<24} {'team':<12} {'att':>3} {'wall h':>8} {'goodput':>8} {'badput':>12}  worst cause")
    for job in report.jobs:
        worst = max(BADPUT, key=lambda b: job.seconds[b])
        share = f"{job.goodput:.1%}" if job.goodput is not None else "-"
        print(
            f"  {job.job_id:<24} {job.team or '-':<12} {job.attempts:>3} {job.wall_seconds / 3600:>8.2f} "
            f"{share:>8} {job.badput_cost:>12,.2f}  {worst} ({job.cost[worst]:,.2f})"
        )
