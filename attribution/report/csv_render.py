"""The report as one csv file: one table per section, each introduced by a `# section: KEY` row and
separated by an empty row, so a spreadsheet or `grep` finds each block. Money to the cent without
thousands separators, so every amount parses as a number.
"""

from __future__ import annotations

import csv
import io

from gpulens.attribution.present import csv_text
from gpulens.attribution.report.model import WeeklyReport
from gpulens.attribution.report.tables import Cell, format_cell, sections


def csv_cell(cell: Cell) -> str:
    """The cell as csv text: money to the cent without separators; text never read as a formula
    (`present.csv_text`, shared with the explorer's downloads). Numbers are never touched."""
    text = format_cell(cell)
    return csv_text(text) if cell.kind == "text" else text


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
