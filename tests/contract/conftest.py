"""The ledger warehouse (tests/contract/ledger.py), ingested once per session through the CLI and
copied for each test that needs it, so the suite stays fast."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.contract import ledger
from tests.contract.support import gl, ok


@pytest.fixture(scope="session")
def ledger_warehouse_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("ledger")
    wh = home / "ledger.duckdb"
    ok(gl("ingest", "cur", ledger.write_cur(home / "cur.csv"), "--warehouse", wh))
    ok(gl("ingest", "usage", ledger.write_usage(home / "usage.csv"), "--warehouse", wh))
    return wh


@pytest.fixture
def warehouse(ledger_warehouse_master: Path, tmp_path: Path) -> Path:
    """A private copy of the ledger warehouse (CUR 2.0 CSV + usage rollups ingested)."""
    wh = tmp_path / "ledger.duckdb"
    shutil.copyfile(ledger_warehouse_master, wh)
    return wh
