"""`gpulens report weekly --idle share` against the hand ledger, not against `allocate()` itself.

Week 2026-W47, amortized USD (ledger in tests/report/test_weekly.py and fixtures/make_fixtures.py):
  i-0shared 786.432/day, 8 GPUs: search holds 4 GPUs x 12 h = 48 GPU-h/day, vision 1 GPU x 24 h =
  24 GPU-h/day; idle = 5/8 x 786.432 = 491.52/day, shared 48 : 24 = 2/3 : 1/3
  -> search + 327.68/day, vision + 163.84/day; over 7 days search + 2293.76, vision + 1146.88.
  search  direct 169.68; shared 1376.256 + 46.6667 + 2293.76 = 3716.6827 -> 3716.68; total 3886.36
  vision  direct 0;      shared  688.128 + 23.3333 + 1146.88 = 1858.3413 -> 1858.34; total 1858.34
  idle 0; unallocated 17.50; total 3886.3627 + 1858.3413 + 17.50 = 5762.204 -> 5762.20
"""

from __future__ import annotations

from pathlib import Path

from gpulens.cli import main
from tests.report.readers import csv_sections
from tests.report.test_weekly import warehouse

__all__ = ["warehouse"]  # the module's ingested fixture warehouse, shared with test_weekly


def test_idle_share_splits_idle_by_gpu_seconds_as_the_ledger_says(warehouse: Path, tmp_path: Path) -> None:
    argv = ["report", "weekly", "--week", "2026-W47", "--out", str(tmp_path), "--idle", "share"]
    assert main([*argv, "--warehouse", str(warehouse)]) == 0
    rows = {r["team"]: r for r in csv_sections((tmp_path / "report.csv").read_text())["teams"]}
    split = {
        team: (rows[team]["direct"], rows[team]["shared"], rows[team]["total"])
        for team in ("search", "vision")
    }
    assert split == {
        "search": ("169.68", "3716.68", "3886.36"),
        "vision": ("0.00", "1858.34", "1858.34"),
    }
    assert rows["idle GPU time"]["total"] == "0.00"
    assert rows["total"]["total"] == "5762.20"
