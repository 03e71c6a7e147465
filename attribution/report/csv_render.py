"""The report as one csv file: one table per section, each introduced by a `# section: KEY` row and
separated by an empty row, so a spreadsheet or `grep` finds each block. Money to the cent without
thousands separators, so every amount parses as a number.
"""

from __future__ import annotations

import csv
import io

from gpulens.attribution.report.model import WeeklyReport
from gpulens.attribution.report.tables import Cell, format_cell, sections

# A spreadsheet evaluates a cell that starts with one of these as a formula. Team names, job ids and
# resource ids come from free-form tags and labels that anyone who can tag a resource controls
# (CSV injection, OWASP); such text cells get a leading apostrophe. Numbers are never touched.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(cell: Cell) -> str:
    """The cell as csv text: money to the cent without separators; text never read as a formula."""
    text = format_cell(cell, grouping=False)
    return "'" + text if cell.kind == "text" and text.startswith(_FORMULA_START) else text


def render_csv(report: WeeklyReport) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["# gpulens weekly report", report.week.label, report.currency, report.allocation.basis])
    if report.incomplete_reasons:
        writer.writerow(["# incomplete week", "; ".join(report.incomplete_reasons)])
    for table in sections(report):
        writer.writerow([])
        writer.writerow([f"# section: {table.key}", table.title])
        writer.writerow(table.columns)
        for row in table.rows:
            writer.writerow([csv_cell(c) for c in row])
    return buf.getvalue()
