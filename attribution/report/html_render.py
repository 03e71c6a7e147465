"""The report as one self-contained html page: inline CSS, inline SVG charts, no script, no URL.

Mail clients strip <style> blocks and block remote content, so layout-critical styles are inline on
the elements and nothing is fetched from any host.
"""

from __future__ import annotations

from html import escape

from gpulens.attribution.report.charts import charts, to_svg
from gpulens.attribution.report.model import WeeklyReport
from gpulens.attribution.report.tables import Cell, Table, format_cell, sections

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;color:#1d1d1d;margin:24px;max-width:960px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 6px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:12px;margin:4px 0}
td,th{padding:3px 8px;border-bottom:1px solid #e4e4e4}
th{background:#f3f5f8;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
p.note{font-size:11px;color:#555;margin:2px 0 8px}
"""
_BANNER = "background:#fff3cd;border:1px solid #e0b100;padding:10px 14px;margin:12px 0;font-weight:bold"
_NUMERIC = ("money", "hours", "ratio", "change", "int")


def _td(cell: Cell, currency: str) -> str:
    cls = ' class="num" style="text-align:right"' if cell.kind in _NUMERIC else ""
    return f"<td{cls}>{escape(format_cell(cell, currency))}</td>"


def _table(table: Table, currency: str) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(_td(c, currency) for c in row) + "</tr>" for row in table.rows)
    if not table.rows:
        body = f'<tr><td colspan="{len(table.columns)}">none this week</td></tr>'
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    return (
        f'<h2 id="{table.key}">{escape(table.title)}</h2>{note}'
        f'<table style="border-collapse:collapse"><tr>{head}</tr>{body}</table>'
    )


def _banner(report: WeeklyReport) -> str:
    reasons = report.incomplete_reasons
    if not reasons:
        return ""
    return (
        f'<div class="incomplete" style="{_BANNER}">Incomplete week: '
        f"{escape('; '.join(reasons))}. Totals below cover only the data received.</div>"
    )


def render_html(report: WeeklyReport) -> str:
    """The whole report as an html document (utf-8 text)."""
    tables = sections(report)
    svgs = "".join(f"<div>{to_svg(c)}</div>" for c in charts(report))
    body = [
        f"<h1>GPU spend, week {escape(report.week.label)}</h1>",
        f'<p class="note">{report.week.start:%a %Y-%m-%d} to {report.week.end:%a %Y-%m-%d} 00:00 UTC, '
        f"{escape(report.currency)}, {escape(report.allocation.basis)} cost</p>",
        _banner(report),
        _table(tables[0], report.currency),
        svgs,
        *(_table(t, report.currency) for t in tables[1:]),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>GPU spend {escape(report.week.label)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>"
    )
