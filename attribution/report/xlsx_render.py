"""The report as an xlsx workbook: one sheet per section, money as numbers in a currency format.

Amounts are written at full precision (as doubles) and displayed to the cent, so a SUM over a column
in the spreadsheet reproduces the report's total instead of the sum of rounded cents.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from decimal import Decimal

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from gpulens.attribution.report.model import WeeklyReport
from gpulens.attribution.report.tables import Cell, sections


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
        sheet.write_row(3, 0, table.columns, fmt["head"])
        for r, row in enumerate(table.rows, start=4):
            for c, cell in enumerate(row):
                _write(sheet, r, c, cell, fmt)
        sheet.set_column(0, len(table.columns) - 1, 16)
        sheet.freeze_panes(4, 0)
    book.close()
    return buf.getvalue()


def _write(sheet: Worksheet, r: int, c: int, cell: Cell, fmt: dict[str, Format]) -> None:
    value = cell.value
    if value is None:
        sheet.write_blank(r, c, None)
    elif isinstance(value, Decimal):
        sheet.write_number(r, c, float(value), fmt["money"])
    elif isinstance(value, datetime | date):
        sheet.write_datetime(r, c, value, fmt["time"])
    elif isinstance(value, int | float):
        sheet.write_number(r, c, value, fmt.get(cell.kind))
    else:
        sheet.write_string(r, c, str(value))
