"""Deliveries are atomic (docs/design.md §5): restatements replace by (period, payer); a bad file changes
nothing.

Ledger: the 2026-10 month of tests/fixtures/cur (15 lines, 85.95 amortized, 243.35 billed, payer
111111111111). Each bad file below is the ledger CSV with one cell or column spoiled.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.warehouse import Warehouse

from .conftest import LEDGER_FILES

GOOD = LEDGER_FILES["cur2-csv"]


def _rows() -> list[dict[str, str]]:
    with GOOD.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict[str, str]], drop: str | None = None) -> Path:
    header = [c for c in rows[0] if c != drop]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _state(warehouse: Path) -> tuple:
    with Warehouse(warehouse).connect(read_only=True) as con:
        return (
            con.execute(
                "SELECT count(*), sum(amortized_cost), sum(unblended_cost) FROM cost_line_items"
            ).fetchone(),
            con.execute("SELECT count(*) FROM deliveries").fetchone(),
            con.execute(
                "SELECT billing_period, payer_account_id, count(*) FROM cost_line_items GROUP BY ALL "
                "ORDER BY ALL"
            ).fetchall(),
        )


def test_same_period_twice_then_a_correction(
    gpulens: Callable[..., int], warehouse: Path, tmp_path: Path
) -> None:
    assert gpulens("ingest", "cur", GOOD) == 0
    assert gpulens("ingest", "cur", GOOD) == 0  # AWS redelivers the same month: nothing doubles
    assert _state(warehouse)[0] == (15, Decimal("85.95"), Decimal("243.35"))
    rows = _rows()
    rows[11]["line_item_unblended_cost"] = (
        "3.50"  # L12 i-orphan corrected 2.00 -> 3.50, under a new file name
    )
    rows = [r for r in rows if r["identity_line_item_id"] != "L14"]  # and the credit withdrawn (-1.00)
    corrected = _write(tmp_path / "restated-00001.csv", rows)
    assert gpulens("ingest", "cur", corrected) == 0
    count, amortized, billed = _state(warehouse)[0]
    assert (count, amortized, billed) == (14, Decimal("88.45"), Decimal("245.85"))  # 85.95 + 1.50 + 1.00
    with Warehouse(warehouse).connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM deliveries").fetchone() == (3,)
        sources = con.execute("SELECT DISTINCT source FROM cost_line_items").fetchall()
    assert sources == [(f"cur2:{corrected}",)]


def test_another_payer_of_the_same_period_is_kept(
    gpulens: Callable[..., int], warehouse: Path, tmp_path: Path
) -> None:
    rows = _rows()
    for r in rows:
        r["bill_payer_account_id"] = "999999999999"
    assert gpulens("ingest", "cur", GOOD) == 0
    assert gpulens("ingest", "cur", _write(tmp_path / "other-payer.csv", rows)) == 0
    assert gpulens("ingest", "cur", GOOD) == 0
    assert _state(warehouse)[2] == [("2026-10", "111111111111", 15), ("2026-10", "999999999999", 15)]


def _spoil(tmp_path: Path, kind: str) -> tuple[list[Path], str]:
    """Bad deliveries and the text their one-line error must contain."""
    rows = _rows()
    if kind == "missing column":
        return [
            _write(tmp_path / "no-currency.csv", rows, drop="line_item_currency_code")
        ], "no-currency.csv: column line_item_currency_code: required column missing"
    if kind == "not a number":
        rows[4]["line_item_unblended_cost"] = "12,50"
        return [
            _write(tmp_path / "bad-cost.csv", rows)
        ], "bad-cost.csv: row 5, column line_item_unblended_cost: '12,50' is not a number"
    if kind == "amortization input missing":
        rows[1]["savings_plan_savings_plan_effective_cost"] = ""
        return [
            _write(tmp_path / "no-sp.csv", rows)
        ], "no-sp.csv: row 2, column savings_plan_savings_plan_effective_cost: is empty"
    if kind == "truncated gzip":
        data = gzip.compress(GOOD.read_bytes())
        bad = tmp_path / "part-00002.csv.gz"
        bad.write_bytes(data[: len(data) // 2])
        return [GOOD, bad], "part-00002.csv.gz: cannot be read"
    if kind == "mixed currencies":
        rows[6]["line_item_currency_code"] = "EUR"
        return [
            _write(tmp_path / "eur.csv", rows)
        ], "eur.csv: row 7, column line_item_currency_code: currency 'EUR' differs from 'USD'"
    if kind == "bad timestamp":
        rows[2]["line_item_usage_start_date"] = "yesterday"
        return [
            _write(tmp_path / "when.csv", rows)
        ], "when.csv: row 3, column line_item_usage_start_date: 'yesterday' is not a timestamp"
    if kind == "currency across files":
        for r in rows:
            r["line_item_currency_code"] = "EUR"
        return [
            GOOD,
            _write(tmp_path / "all-eur.csv", rows),
        ], "all-eur.csv: row 1, column line_item_currency_code"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing column",
        "not a number",
        "amortization input missing",
        "truncated gzip",
        "mixed currencies",
        "bad timestamp",
        "currency across files",
    ],
)
def test_a_bad_file_exits_1_with_one_line_and_changes_nothing(
    kind: str,
    gpulens: Callable[..., int],
    warehouse: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        gpulens("ingest", "cur", GOOD) == 0
    )  # the period is already held: a bad restatement must not touch it
    before = _state(warehouse)
    files, expected = _spoil(tmp_path, kind)
    capsys.readouterr()
    assert gpulens("ingest", "cur", *files) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert expected in err[0]
    assert _state(warehouse) == before


def test_not_an_export(
    gpulens: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "notes.csv"
    other.write_text("a,b\n1,2\n")
    assert gpulens("ingest", "cur", other) == 1
    assert "not a CUR 2.0, legacy CUR or FOCUS export" in capsys.readouterr().err
