"""Fixtures shared by the attribution tests: the ledger month in every flavour, loaded through the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gpulens.cli import main

FIXTURES = Path(__file__).parents[1] / "fixtures"
CUR = FIXTURES / "cur"
USAGE = FIXTURES / "usage" / "ledger_usage.csv"
LEDGER_FILES = {
    "cur2-csv": CUR / "ledger_cur2.csv",
    "cur2-parquet": CUR / "ledger_cur2.parquet",
    "legacy-csv-gz": CUR / "ledger_legacy.csv.gz",
    "focus-csv": CUR / "ledger_focus.csv",
}


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "w.duckdb"


@pytest.fixture
def gpulens(warehouse: Path) -> Callable[..., int]:
    """Runs `gpulens ARGS... --warehouse W` in-process, returning the exit code."""

    def run(*args: str) -> int:
        return main([*map(str, args), "--warehouse", str(warehouse)])

    return run
