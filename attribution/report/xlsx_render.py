"""The report as an xlsx workbook: one sheet per section, money as numbers in a currency format.

Amounts are written as the report shows them where a table rounds parts together so that they add up
to their total (`Cell.shown`, `money.round_parts`), else at full precision (as doubles), displayed
to the cent; either way a SUM over a column reproduces the report's total to the cent. Totals and
differences are formulas over the cells they add up (`tables.Formula`), with the computed value
cached for readers that do not calculate. Every column is sized to its widest cell as the report
shows it (no `####`), and each table has an autofilter on its header row.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from decimal import Decimal

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.utility import xl_rowcol_to_cell
from xlsxwriter.worksheet import Worksheet

from gpulens.attribution.report.model import WeeklyReport
from gpulens.attribution.report.tables import Cell, Formula, Table, format_cell, sections

HEADER_ROW = 3  # rows 0-2: title, note, incomplete-week warning
MIN_WIDTH, MAX_WIDTH = 8, 90  # characters


def _currency_format(currency: str) -> str:
    symbol = {"USD": '"$"', "EUR": '"€"', "GBP": '"£"'}.get(currency, f'"{currency} "')
    return f"{symbol}#,##0.00;-{symbol}#,##0.00"


def render_xlsx(report: WeeklyReport) -> bytes:
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True})
    fmt = {
        "money": book.add_format({"num_format": _currency_format(report.currency)}),
        "hours": book.add_format({"num_format": "#,##0.0"}),
        "ratio": book.add_format({"num_format": "0.0%"}),
        "change": book.add_format({"num_format": "+0.0%;-0.0%"}),
        "time": book.add_format({"num_format": "yyyy-mm-dd hh:mm"}),
        "int": book.add_format({"num_format": "0"}),
        "head": book.add_format({"bold": True, "bg_color": "#F3F5F8"}),
        "title": book.add_format({"bold": True, "font_size": 13}),
        "warn": book.add_format({"bold": True, "bg_color": "#FFF3CD"}),
    }
    for table in sections(report):
        sheet = book.add_worksheet(table.key[:31])
        sheet.write(0, 0, table.title, fmt["title"])
        sheet.write(1, 0, table.note or f"{report.currency}, week {report.week.label}")
        if report.incomplete_reasons and table.key == "headline":
            sheet.write(2, 0, "Incomplete week: " + "; ".join(report.incomplete_reasons), fmt["warn"])
        sheet.write_row(HEADER_ROW, 0, table.columns, fmt["head"])
        for r, row in enumerate(table.rows, start=HEADER_ROW + 1):
            for c, cell in enumerate(row):
                _write(sheet, r, c, cell, fmt)
        for c, width in enumerate(column_widths(table, report.currency)):
            sheet.set_column(c, c, width)
        sheet.autofilter(HEADER_ROW, 0, HEADER_ROW + max(len(table.rows), 1), len(table.columns) - 1)
        sheet.freeze_panes(HEADER_ROW + 1, 0)
    book.close()
    return buf.getvalue()


def column_widths(table: Table, currency: str) -> list[int]:
    """Characters per column: the widest of its header and its cells as the report shows them (money
    with symbol and thousands), plus room for the autofilter button."""
    widths = [len(c) + 3 for c in table.columns]
    for row in table.rows:
        for c, cell in enumerate(row):
            widths[c] = max(widths[c], len(format_cell(cell, currency)) + 2)
    return [min(max(w, MIN_WIDTH), MAX_WIDTH) for w in widths]


def formula_text(formula: Formula, c: int) -> str:
    """The spreadsheet formula of a cell in column `c`; table rows start below the header row."""

    def ref(row: int, col: int) -> str:
        return xl_rowcol_to_cell(HEADER_ROW + 1 + row, col)

    if formula.op == "sum":
        (first, _), (last, _) = formula.cells
        return f"=SUM({ref(first, c)}:{ref(last, c)})"
    (a_row, a_col), (b_row, b_col) = formula.cells
    return f"={ref(a_row, a_col)}-{ref(b_row, b_col)}"


def _write(sheet: Worksheet, r: int, c: int, cell: Cell, fmt: dict[str, Format]) -> None:
    value = cell.value
    if isinstance(value, Decimal) and cell.shown is not None:
        value = cell.shown
    if cell.formula is not None and isinstance(value, Decimal):
        sheet.write_formula(r, c, formula_text(cell.formula, c), fmt["money"], float(value))
    elif value is None:
        sheet.write_blank(r, c, None)
    elif isinstance(value, Decimal):
        sheet.write_number(r, c, float(value), fmt["money"])
    elif isinstance(value, datetime | date):
        sheet.write_datetime(r, c, value, fmt["time"])
    elif isinstance(value, int | float):
        sheet.write_number(r, c, value, fmt.get(cell.kind))
    else:
        sheet.write_string(r, c, str(value))
