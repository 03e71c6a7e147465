"""The report as a printable pdf (reportlab platypus): the same sections and charts as the html."""

from __future__ import annotations

import io
from html import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from gpulens.attribution.report.charts import charts, to_drawing
from gpulens.attribution.report.model import WeeklyReport
from gpulens.attribution.report.tables import Cell, format_cell, sections
from gpulens.attribution.report.tables import Table as Section

_STYLES = getSampleStyleSheet()
_CELL = ParagraphStyle("cell", parent=_STYLES["BodyText"], fontSize=7.5, leading=9)
_NOTE = ParagraphStyle("note", parent=_STYLES["BodyText"], fontSize=8, textColor=colors.HexColor("#555555"))
_BANNER = ParagraphStyle(
    "banner",
    parent=_STYLES["BodyText"],
    fontSize=11,
    leading=14,
    backColor=colors.HexColor("#fff3cd"),
    borderColor=colors.HexColor("#e0b100"),
    borderWidth=1,
    borderPadding=6,
    spaceAfter=10,
)
_GRID = TableStyle(
    [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 7.5),
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7.5),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f3f5f8")),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#dddddd")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
)
_NUMERIC = ("money", "hours", "ratio", "change", "int")


def _cell(cell: Cell, currency: str) -> object:
    """Numbers stay plain strings (one text run each, right-aligned); text wraps as a Paragraph."""
    text = format_cell(cell, currency)
    return text if cell.kind in _NUMERIC else Paragraph(escape(text), _CELL)


def _section(section: Section, currency: str) -> list[Flowable]:
    out: list[Flowable] = [Paragraph(escape(section.title), _STYLES["Heading2"])]
    if section.note:
        out.append(Paragraph(escape(section.note), _NOTE))
    if section.key == "methods":
        return out + [Paragraph(escape(format_cell(row[0])), _STYLES["BodyText"]) for row in section.rows]
    if not section.rows:
        return out + [Paragraph("none this week", _STYLES["BodyText"])]
    data = [list(section.columns), *([_cell(c, currency) for c in row] for row in section.rows)]
    style = TableStyle(_GRID.getCommands())
    for col, cell in enumerate(section.rows[0]):
        if cell.kind in _NUMERIC:
            style.add("ALIGN", (col, 0), (col, -1), "RIGHT")
    return out + [Table(data, style=style, repeatRows=1, hAlign="LEFT")]


def render_pdf(report: WeeklyReport) -> bytes:
    """The whole report as pdf bytes, A4 landscape; the incomplete-week notice sits on page one."""
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=landscape(A4),
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=12 * mm,
        bottomMargin=12 * mm,
        title=f"GPU spend {report.week.label}",
        author="gpulens",
    )
    tables = sections(report)
    story: list[Flowable] = [
        Paragraph(f"GPU spend, week {escape(report.week.label)}", _STYLES["Title"]),
        Paragraph(
            f"{report.week.start:%a %Y-%m-%d} to {report.week.end:%a %Y-%m-%d} 00:00 UTC, "
            f"{escape(report.currency)}, {escape(report.allocation.basis)} cost",
            _NOTE,
        ),
    ]
    if report.incomplete_reasons:
        story.append(
            Paragraph(
                "Incomplete week: "
                + escape("; ".join(report.incomplete_reasons))
                + ". Totals below cover only the data received.",
                _BANNER,
            )
        )
    story += _section(tables[0], report.currency)
    story += [Spacer(1, 6 * mm), *(to_drawing(c, width=doc.width * 0.62) for c in charts(report))]
    for section in tables[1:]:
        story += _section(section, report.currency)
    doc.build(story)
    return buf.getvalue()
