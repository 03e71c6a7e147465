"""The report as one csv file: one table per section, each introduced by a `# section: KEY` row and
separated by an empty row, so a spreadsheet or `grep` finds each block. Money to the cent without
thousands separators, so every amount parses as a number.
"""

from __future__ import annotations

import csv
import io

from gpulens.attribution.report.model import WeeklyReport
from gpulens.attribution.report.tables import format_cell, sections


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
            writer.writerow([format_cell(c, grouping=False) for c in row])
    return buf.getvalue()
