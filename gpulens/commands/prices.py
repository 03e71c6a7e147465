"""`gpulens prices --period YYYY-MM --out DIR`: write the price of a GPU-second per instance type and
team as Prometheus rules, so Grafana shows spend and waste in money (docs/dashboards.md)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from gpulens.commands._options import add_warehouse_option
from gpulens.commands._warehouse import open_warehouse
from gpulens.errors import GpulensError

_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "prices",
        help="price per GPU-second per instance type and team, as Prometheus rules for the dashboards",
    )
    parser.add_argument("--period", required=True, metavar="YYYY-MM", help="billing period to price from")
    parser.add_argument("--cost", choices=("amortized", "billed"), default="amortized", help="cost basis")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write into")
    add_warehouse_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gpulens.attribution.prices import gpu_prices
    from gpulens.dashboards.rules.prices import write

    if not _PERIOD.match(args.period):
        raise GpulensError(f"{args.period!r} is not a period YYYY-MM", field="--period")
    with open_warehouse(args, read_only=True) as con:
        prices = gpu_prices(con, args.period, args.cost)
    print(write(args.out, prices, args.period, args.cost))
    return 0
