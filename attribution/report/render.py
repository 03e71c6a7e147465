"""All four renderings of one report, by file name, ready to deliver."""

from __future__ import annotations

from gpulens.attribution.report.csv_render import render_csv
from gpulens.attribution.report.html_render import render_html
from gpulens.attribution.report.model import WeeklyReport
from gpulens.attribution.report.pdf_render import render_pdf
from gpulens.attribution.report.xlsx_render import render_xlsx

CONTENT_TYPES = {
    "report.html": "text/html; charset=utf-8",
    "report.pdf": "application/pdf",
    "report.csv": "text/csv; charset=utf-8",
    "report.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def render_all(report: WeeklyReport) -> dict[str, bytes]:
    """`{"report.html": ..., "report.pdf": ..., "report.csv": ..., "report.xlsx": ...}`."""
    return {
        "report.html": render_html(report).encode("utf-8"),
        "report.pdf": render_pdf(report),
        "report.csv": render_csv(report).encode("utf-8"),
        "report.xlsx": render_xlsx(report),
    }
