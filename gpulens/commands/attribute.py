"""`gpulens attribute --period YYYY-MM`: allocate a billing period's cost to teams (docs/design.md §6)."""

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
        description="Allocate a period (docs/design.md §6), write the allocations table and print the "
        "result. Exits 1 "
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
    parser.add_argument(
        "--currency",
        default=None,
        metavar="CODE",
        help="allocate only the lines billed in this currency (when payers bill in several)",
    )
    add_warehouse_option(parser)
    parser.set_defaults(handler=_attribute)


def _attribute(args: argparse.Namespace) -> int:
    from gpulens.attribution.allocate import month_window, store_allocations

    month_window(args.period)  # a malformed period is named before the warehouse is looked for

    # Every format stores the result in the allocations table (the explorer and the report read it),
    # so attribute opens the warehouse for writing, whatever it prints.
    with open_warehouse(args, read_only=False, create=False) as con:
        allocation = store_allocations(
            con,
            args.period,
            tag_key=args.tag_key,
            cluster_tag_key=args.cluster_tag_key,
            idle=args.idle,
            basis=args.cost,
            currency=args.currency,
        )
    {"json": _json, "csv": _csv, "table": _table}[args.format](allocation)
    return 0


def as_json(a: Any) -> dict[str, Any]:
    """docs/design.md §2 shape; money as numbers in the billing currency, never rounded before summing."""
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
    plain decimals (no exponent), not rounded. Team names, resource ids and line types come from tags
    and billing data anyone who tags a resource controls: a spreadsheet never runs them as formulas
    (`present.csv_text`, the escaping of the report's and the explorer's csv)."""
    from gpulens.attribution.present import csv_text

    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["period", "currency", "kind", "team", "direct", "shared", "total", "gpu_hours", "waste",
                  "resource_id", "line_item_type"])  # fmt: skip
    head = [a.period, csv_text(a.currency)]
    for t in a.teams:
        numbers = (t.direct, t.shared, t.total, t.gpu_hours, t.waste)
        out.writerow([*head, "team", csv_text(t.team), *(f"{x:f}" for x in numbers), "", ""])
    out.writerow([*head, "idle", "", "", "", f"{a.idle:f}", "", "", "", ""])
    out.writerow([*head, "unallocated", "", "", "", f"{a.unallocated:f}", "", "", "", ""])
    for line in a.unallocated_lines:
        out.writerow([*head, "unallocated_line", "", "", "", f"{line.cost:f}", "", "",
                      csv_text(line.resource_id or ""), csv_text(line.line_item_type)])  # fmt: skip


def _money(x: Decimal, currency: str) -> str:
    """Money as people read it (`$1,234.57`, `EUR 1,204.10`): `present.format_money`, as the report."""
    from gpulens.attribution.present import format_money

    return format_money(x, currency)


def _table(a: Any) -> None:
    """Figures rounded by one rule (`round_parts`): the teams, idle and unallocated shown add up to
    the total shown, and each team's direct and shared to its total."""
    from gpulens.attribution.money import round_money, round_parts
    from gpulens.attribution.present import format_hours

    shown = round_parts([*(t.total for t in a.teams), a.idle, a.unallocated], a.total)
    idle, unallocated = shown[-2], shown[-1]
    print(f"{a.period}  {a.basis} cost  {_money(round_money(a.total), a.currency)}  "
          f"(billed {_money(round_money(a.billed_total), a.currency)})")  # fmt: skip
    print(f"{'team':<24}{'direct':>14}{'shared':>14}{'total':>14}{'GPU':>14}{'storage':>14}{'GPU hours':>14}"
          f"{'waste':>14}")  # fmt: skip
    for t, total in zip(a.teams, shown, strict=False):
        direct, shared = round_parts([t.direct, t.shared], total)
        print(
            f"{t.team:<24}{_money(direct, a.currency):>14}{_money(shared, a.currency):>14}"
            f"{_money(total, a.currency):>14}"
            f"{_money(round_money(t.gpu), a.currency):>14}{_money(round_money(t.storage), a.currency):>14}"
            f"{format_hours(t.gpu_hours):>14}{_money(round_money(t.waste), a.currency):>14}"
        )
    print(f"{'idle':<24}{'':>28}{_money(idle, a.currency):>14}")
    print(f"{'unallocated':<24}{'':>28}{_money(unallocated, a.currency):>14}")
    lines = a.unallocated_lines[:10]
    for line, cost in zip(lines, round_parts([x.cost for x in lines]), strict=True):
        what = line.resource_id or f"({line.line_item_type}, {line.product_code or 'no product'})"
        print(f"  {what:<50}{_money(cost, a.currency):>14}")
    if len(a.unallocated_lines) > 10:
        print(f"  ... {len(a.unallocated_lines) - 10} more unallocated resources (see --format csv)")
