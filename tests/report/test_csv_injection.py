"""report.csv never hands a spreadsheet a formula: team names, job ids and resource ids come from
free-form tags and labels (CSV injection); numbers, including negative money, are left alone."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gpulens.attribution.report.csv_render import csv_cell
from gpulens.attribution.report.tables import Cell


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
