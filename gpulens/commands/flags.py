"""`gpulens flags`: underutilized GPUs and divergent runs (docs/design.md §7), as the explorer shows them."""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from gpulens.commands._options import add_warehouse_option
from gpulens.commands._warehouse import open_warehouse
from gpulens.metrics import SM_THRESHOLD_DEFAULT

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 24h, 90m or 7d")
    return timedelta(**{_UNIT[m.group(2)]: float(m.group(1))})


def utc_time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("flags", help="underutilized GPUs and divergent runs")
    parser.add_argument(
        "--window", type=duration, default=timedelta(hours=24), help="look-back (default 24h)"
    )
    parser.add_argument(
        "--until",
        type=utc_time,
        default=None,
        metavar="T",
        help="end of the window (default: the newest usage hour in the warehouse)",
    )
    parser.add_argument(
        "--sm-threshold",
        type=float,
        default=SM_THRESHOLD_DEFAULT,
        help=f"mean SM activity below this flags a GPU (default {SM_THRESHOLD_DEFAULT})",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    add_warehouse_option(parser)
    parser.set_defaults(handler=_flags)


def as_json(flags: Any) -> dict[str, Any]:
    """docs/design.md §2 shape."""
    return {
        "underutilized": [
            {
                "node": u.node,
                "instance_id": u.instance_id,
                "gpu": u.gpu,
                "team": u.team,
                "job_id": u.job_id,
                "hours": u.hours,
                "sm_active": u.sm_active,
                "waste": float(u.waste),
            }
            for u in flags.underutilized
        ],
        "divergent_runs": [
            {"job_id": r.job_id, "team": r.team, "kind": r.kind, "step": r.step} for r in flags.divergent_runs
        ],
    }


def _flags(args: argparse.Namespace) -> int:
    from gpulens.attribution.flags import find_flags
    from gpulens.attribution.present import format_hours, format_money

    with open_warehouse(args, read_only=True) as con:  # flags only read: never block the explorer
        flags = find_flags(con, window=args.window, until=args.until, sm_threshold=args.sm_threshold)
    if args.format == "json":
        print(json.dumps(as_json(flags), indent=2))
        return 0
    print(f"underutilized GPUs ({len(flags.underutilized)}):")
    for u in flags.underutilized:
        label = "SM" if u.measure == "sm_active" else "util (no SM metric)"
        print(
            f"  {u.node or u.instance_id} gpu {u.gpu}  {u.team or '-'}/{u.job_id}  {format_hours(u.hours)}  "
            f"{label} {u.sm_active:.0%}  waste {format_money(u.waste, flags.currency)}"
        )
    print(f"divergent runs ({len(flags.divergent_runs)}):")
    for r in flags.divergent_runs:
        print(f"  {r.job_id} ({r.team or '-'}): {r.kind} at step {r.step}")
    return 0
