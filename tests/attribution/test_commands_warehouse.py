"""How the attribution commands open the warehouse: `flags` read-only (a running explorer, another
process, must not block it), `attribute` for writing with one clear line when it cannot; and
`ingest cur` on a directory without exports names the directory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.contract.support import CUR2_COLUMNS, cur_line, write_csv

# Another process reading the warehouse, as `gpulens explorer` does, until its stdin closes.
READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("open", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def explorer_reading(gpulens: Callable[..., int], warehouse: Path, tmp_path: Path) -> Iterator[int]:
    cur = write_csv(
        tmp_path / "cur.csv", CUR2_COLUMNS, [cur_line("L1", "Usage", "r-1", "3.00", tags={"team": "a"})]
    )
    assert gpulens("ingest", "cur", cur) == 0
    proc = subprocess.Popen(
        [sys.executable, "-c", READER, str(warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        yield proc.pid
    finally:
        proc.communicate(timeout=30)


def test_flags_reads_beside_a_running_reader(
    gpulens: Callable[..., int], explorer_reading: int, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert gpulens("flags", "--format", "json") == 0, capsys.readouterr().err
    assert '"underutilized"' in capsys.readouterr().out


def test_attribute_needs_the_warehouse_to_itself_and_says_so(
    gpulens: Callable[..., int], explorer_reading: int, warehouse: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert gpulens("attribute", "--period", "2026-10", "--format", "json") == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert str(warehouse) in err[0] and f"process {explorer_reading}" in err[0] and "writes" in err[0], err


def test_ingest_cur_empty_directory_is_named(
    gpulens: Callable[..., int], tmp_path: Path, warehouse: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "BILLING_PERIOD=2026-10"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an export")
    assert gpulens("ingest", "cur", empty) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and str(empty) in err[0] and "no CUR or FOCUS export files" in err[0], err
    assert not warehouse.exists()  # nothing to load: the warehouse is not even created
