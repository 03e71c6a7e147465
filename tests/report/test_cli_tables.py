"""The CLI's tables show figures as the report does (attribution/present.py): money with its currency,
two decimals and thousands, hours with their unit, counts with separators; `runs check` counts steps.

Ledger: the month 2026-10 of tests/fixtures/cur (tests/report/test_bridge.py) without usage rollups:
every dollar is unallocated but the team-tagged lines; amortized total 85.95, billed 243.35.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpulens.cli import main

LEDGER = Path(__file__).resolve().parents[1] / "fixtures" / "cur" / "ledger_cur2.csv"


def test_attribute_table_shows_money_with_its_currency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = str(tmp_path / "w.duckdb")
    assert main(["ingest", "cur", str(LEDGER), "--warehouse", warehouse]) == 0
    capsys.readouterr()
    assert main(["attribute", "--period", "2026-10", "--warehouse", warehouse]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2026-10  amortized cost  $85.95  (billed $243.35)"
    idle = next(line for line in out if line.startswith("idle"))
    assert idle.split()[-1].startswith("$")
    for line in out[2:]:
        # no bare 1,234.56 left: every amount carries its symbol
        assert not re.search(r"(?<![$\d,.])\d{1,3}(,\d{3})*\.\d{2}\b", line), line


def test_runs_check_counts_with_separators(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parents[1] / "fixtures" / "loss" / "llmc_gpt2_124M_8xH100_train_loss.csv"
    assert main(["runs", "check", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: 19,560 points, 0 anomalies"
