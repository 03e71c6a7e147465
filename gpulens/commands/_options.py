"""Options several commands share, so each is spelled and documented once."""

from __future__ import annotations

import argparse
from pathlib import Path

from gpulens.paths import default_warehouse_path


def add_warehouse_option(parser: argparse.ArgumentParser) -> None:
    """`--warehouse FILE`, else `$GPULENS_WAREHOUSE`, else `./gpulens.duckdb` (docs/design.md §2)."""
    parser.add_argument(
        "--warehouse",
        type=Path,
        default=None,
        metavar="FILE",
        help="DuckDB warehouse file (default: $GPULENS_WAREHOUSE or ./gpulens.duckdb)",
    )


def warehouse_path(args: argparse.Namespace) -> Path:
    """The warehouse the user chose, resolved flag -> environment -> default."""
    chosen: Path | None = getattr(args, "warehouse", None)
    return chosen if chosen is not None else default_warehouse_path()
