"""`gpulens attribute --period YYYY-MM`: allocate a billing period's cost to teams (SPEC §6)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from decimal import Decimal
from typing import Any

from gpulens.commands._options import add_warehouse_option
from gpulens.commands._warehouse import open_warehouse


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "attribute",
        help="allocate a billing period's cost to teams, idle and unallocated",
        description="Allocate a period (SPEC §6), write the allocations table and print the result. Exits 1 "
        "if teams + idle + unallocated ever differ from the total by a cent.",
    )
    parser.add_argument("--period", required=True, metavar="YYYY-MM")
    parser.add_argument(
        "--tag-key", default="team", help="cost allocation tag naming the team (default team)"
    )
    parser.add_argument(
        "--cluster-tag-key", default="cluster", help="tag naming the cluster (default cluster)"
    )
    parser.add_argument("--idle", choices=("separate", "share"), default="separate")
    parser.add_argument("--cost", choices=("amortized", "billed"), default="amortized")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    add_warehouse_option(parser)
    parser.set_defaults(handler=_attribute)


def _attribute(args: argparse.Namespace) -> int:
    from gpulens.attribution.allocate import store_allocations

    # Every format stores the result in the allocations table (the explorer and the report read it),
    # so attribute opens the warehouse for writing, whatever it prints.
    with open_warehouse(args, read_only=False) as con:
        allocation = store_allocations(
            con,
            args.period,
            tag_key=args.tag_key,
            cluster_tag_key=args.cluster_tag_key,
            idle=args.idle,
            basis=args.cost,
        )
    {"json": _json, "csv": _csv, "table": _table}[args.format](allocation)
    return 0


def as_json(a: Any) -> dict[str, Any]:
    """SPEC §2 shape; money as numbers in the billing currency, never rounded before summing."""
    return {
        "period": a.period,
        "currency": a.currency,
        "total": float(a.total),
        "billed_total": float(a.billed_total),
        "teams": [
            {
                "team": t.team,
                "direct": float(t.direct),
                "shared": float(t.shared),
                "total": float(t.total),
                "gpu_hours": float(t.gpu_hours),
                "waste": float(t.waste),
            }
            for t in a.teams
        ],
        "idle": float(a.idle),
        "unallocated": float(a.unallocated),
    }


def _json(a: Any) -> None:
    print(json.dumps(as_json(a), indent=2))


def _csv(a: Any) -> None:
    """One row per team, then idle, unallocated and the unallocated lines by resource (what to tag);
    plain decimals (no exponent), not rounded."""
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["period", "currency", "kind", "team", "direct", "shared", "total", "gpu_hours", "waste",
                  "resource_id", "line_item_type"])  # fmt: skip
    head = [a.period, a.currency]
    for t in a.teams:
        numbers = (t.direct, t.shared, t.total, t.gpu_hours, t.waste)
        out.writerow([*head, "team", t.team, *(f"{x:f}" for x in numbers), "", ""])
    out.writerow([*head, "idle", "", "", "", f"{a.idle:f}", "", "", "", ""])
    out.writerow([*head, "unallocated", "", "", "", f"{a.unallocated:f}", "", "", "", ""])
    for line in a.unallocated_lines:
        out.writerow([*head, "unallocated_line", "", "", "", f"{line.cost:f}", "", "", line.resource_id or "",
                      line.line_item_type])  # fmt: skip


def _money(x: Decimal) -> str:
    return f"{x.quantize(Decimal('0.01')):,}"


def _table(a: Any) -> None:
    print(f"{a.period}  {a.basis} cost  {_money(a.total)} {a.currency}  (billed {_money(a.billed_total)})")
    print(f"{'team':<24}{'direct':>14}{'shared':>14}{'total':>14}{'GPU hours':>12}{'waste':>14}")
    for t in a.teams:
        print(
            f"{t.team:<24}{_money(t.direct):>14}{_money(t.shared):>14}{_money(t.total):>14}"
            f"{float(t.gpu_hours):>12.1f}{_money(t.waste):>14}"
        )
    print(f"{'idle':<24}{'':>28}{_money(a.idle):>14}")
    print(f"{'unallocated':<24}{'':>28}{_money(a.unallocated):>14}")
    for line in a.unallocated_lines[:10]:
        what = line.resource_id or f"({line.line_item_type}, {line.product_code or 'no product'})"
        print(f"  {what:<50}{_money(line.cost):>14}")
    if len(a.unallocated_lines) > 10:
        print(f"  ... {len(a.unallocated_lines) - 10} more unallocated resources (see --format csv)")
