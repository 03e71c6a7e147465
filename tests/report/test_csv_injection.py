"""report.csv never hands a spreadsheet a formula: team names, job ids and resource ids come from
free-form tags and labels (CSV injection); numbers, including negative money, are left alone."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.report.csv_render import csv_cell
from gpulens.attribution.report.tables import Cell
from gpulens.cli import main


@pytest.mark.parametrize("text", ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_text_that_a_spreadsheet_would_evaluate_is_quoted(text: str) -> None:
    assert csv_cell(Cell(text, "text")) == "'" + text


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        (Cell("search", "text"), "search"),
        (
            Cell("arn:aws:ec2:us-east-1:1:reserved-instances/ri-1", "text"),
            "arn:aws:ec2:us-east-1:1:reserved-instances/ri-1",
        ),
        (Cell(Decimal("-4.005"), "money"), "-4.01"),
        (Cell(-0.25, "change"), "-25.0%"),
        (Cell(None, "text"), ""),
    ],
)
def test_ordinary_cells_are_unchanged(cell: Cell, shown: str) -> None:
    assert csv_cell(cell) == shown


def test_attribute_csv_escapes_tag_values_like_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A team tag `=HYPERLINK(A1)` and an untagged resource `@SUM(...)` reach `attribute --format csv`
    as text a spreadsheet shows, not runs (before, they went straight into Excel). Ledger: one tagged
    line 10.00 and one untagged 2.50, both Usage; a credit of -1.00 stays a number."""
    header = (
        "bill_billing_period_start_date,bill_payer_account_id,line_item_usage_account_id,"
        "line_item_line_item_type,line_item_usage_start_date,line_item_usage_end_date,line_item_product_code,"
        "line_item_usage_type,line_item_resource_id,product_instance_type,line_item_usage_amount,"
        "line_item_unblended_cost,line_item_currency_code,resource_tags"
    )
    common = "2026-11-01T00:00:00Z,111122223333,111122223333"
    window = "2026-11-02T00:00:00Z,2026-11-03T00:00:00Z"
    hyperlink = "=HYPERLINK(A1)"
    cur = tmp_path / "cur.csv"
    cur.write_text(
        f"{header}\n"
        f'{common},Usage,{window},AmazonS3,Storage,vol-1,,1,10.00,USD,"{{""user_team"": ""{hyperlink}""}}"\n'
        f"{common},Usage,{window},AmazonS3,Storage,@SUM(A1),,1,2.50,USD,\n"
        f"{common},Credit,{window},AmazonS3,Credit,,,0,-1.00,USD,\n"
    )
    warehouse = str(tmp_path / "w.duckdb")
    assert main(["ingest", "cur", str(cur), "--warehouse", warehouse]) == 0
    capsys.readouterr()
    assert main(["attribute", "--period", "2026-11", "--format", "csv", "--warehouse", warehouse]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    team = next(r for r in rows if r["kind"] == "team")
    assert team["team"] == "'=hyperlink(a1)" and team["total"].startswith("10.00")  # tag values lower-cased
    resources = {r["resource_id"]: r["total"] for r in rows if r["kind"] == "unallocated_line"}
    assert "'@SUM(A1)" in resources
    assert any(total.startswith("-1.00") for total in resources.values())
