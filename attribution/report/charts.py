"""Charts as data, drawn twice: inline SVG for the html (no script, no external file) and reportlab
graphics for the pdf. Both draw the same horizontal grouped bars from one `BarChart`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from html import escape

from reportlab.graphics.shapes import Drawing, Rect, String
from reportlab.lib import colors

from gpulens.attribution.present import format_money
from gpulens.attribution.report.model import WeeklyReport

PALETTE = ("#2f6db5", "#a9c4e6", "#d98b2b", "#8a8a8a")
LABEL_W, BAR_H, GAP, WIDTH, VALUE_W = 150.0, 14.0, 10.0, 640.0, 90.0


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[Decimal, ...]


@dataclass(frozen=True)
class BarChart:
    title: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    currency: str


@dataclass(frozen=True)
class _Bar:
    """One bar in chart coordinates: y from the top, x from the start of the bar area."""

    y: float
    width: float
    color: str
    value: Decimal


def spend_by_team(report: WeeklyReport) -> BarChart:
    now = {t.team: t.total for t in report.allocation.teams}
    before = {t.team: t.total for t in report.previous.teams}
    names = sorted(now.keys() | before.keys(), key=lambda n: (-now.get(n, Decimal(0)), n))
    zero = Decimal(0)
    cats = (*names, "idle", "unallocated")
    this = (*(now.get(n, zero) for n in names), report.allocation.idle, report.allocation.unallocated)
    prev = (*(before.get(n, zero) for n in names), report.previous.idle, report.previous.unallocated)
    return BarChart(
        "Spend per team, this week against the previous week",
        cats,
        (Series(report.week.label, this), Series(report.week.previous().label, prev)),
        report.currency,
    )


def composition(report: WeeklyReport) -> BarChart:
    a = report.allocation
    direct = sum((t.direct for t in a.teams), Decimal(0))
    shared = sum((t.shared for t in a.teams), Decimal(0))
    return BarChart(
        f"Where the week's {format_money(a.total, a.currency)} went",
        ("direct", "shared", "idle", "unallocated"),
        (Series(report.week.label, (direct, shared, a.idle, a.unallocated)),),
        a.currency,
    )


def _layout(chart: BarChart) -> tuple[float, list[tuple[str, float]], list[_Bar]]:
    """Height, category label positions and bars; negative values (credits) draw as zero-width bars."""
    top = max((v for s in chart.series for v in s.values), default=Decimal(0))
    scale = (WIDTH - LABEL_W - VALUE_W) / float(top) if top > 0 else 0.0
    group = BAR_H * len(chart.series) + GAP
    labels, bars = [], []
    for i, cat in enumerate(chart.categories):
        y0 = 28 + i * group
        labels.append((cat, y0 + BAR_H * len(chart.series) / 2))
        for j, s in enumerate(chart.series):
            bars.append(
                _Bar(
                    y0 + j * BAR_H,
                    max(float(s.values[i]) * scale, 0.0),
                    PALETTE[j % len(PALETTE)],
                    s.values[i],
                )
            )
    height = 28 + len(chart.categories) * group + 18
    return height, labels, bars


def to_svg(chart: BarChart) -> str:
    """Inline SVG markup for html5 (no xmlns, so no URL at all); text is real text, colours inline."""
    height, labels, bars = _layout(chart)
    out = [
        f'<svg width="{WIDTH:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH:.0f} {height:.0f}" role="img" aria-label="{escape(chart.title)}" '
        'style="font-family:Helvetica,Arial,sans-serif;font-size:11px">',
        f'<text x="0" y="14" font-weight="bold" font-size="13">{escape(chart.title)}</text>',
    ]
    for cat, y in labels:
        out.append(f'<text x="{LABEL_W - 6:.0f}" y="{y + 4:.1f}" text-anchor="end">{escape(cat)}</text>')
    for b in bars:
        out.append(
            f'<rect x="{LABEL_W:.0f}" y="{b.y:.1f}" width="{b.width:.1f}" height="{BAR_H - 2:.0f}" '
            f'fill="{b.color}"/>'
        )
        out.append(
            f'<text x="{LABEL_W + b.width + 4:.1f}" y="{b.y + BAR_H - 4:.1f}">'
            f"{escape(format_money(b.value, chart.currency))}</text>"
        )
    legend_y = height - 6
    for j, s in enumerate(chart.series):
        x = LABEL_W + j * 120
        out.append(f'<rect x="{x:.0f}" y="{legend_y - 9:.0f}" width="10" height="10" fill="{PALETTE[j]}"/>')
        out.append(f'<text x="{x + 14:.0f}" y="{legend_y:.0f}">{escape(s.name)}</text>')
    out.append("</svg>")
    return "".join(out)


def to_drawing(chart: BarChart, width: float = WIDTH) -> Drawing:
    """The same chart as a reportlab Drawing, scaled to `width` points; reportlab's y axis points up."""
    height, labels, bars = _layout(chart)
    k = width / WIDTH
    d = Drawing(width, height * k)
    d.add(String(0, (height - 14) * k, chart.title, fontName="Helvetica-Bold", fontSize=10))
    for cat, y in labels:
        d.add(String((LABEL_W - 6) * k, (height - y - 4) * k, cat, fontSize=8, textAnchor="end"))
    for b in bars:
        color = colors.HexColor(b.color)
        d.add(
            Rect(
                LABEL_W * k,
                (height - b.y - BAR_H + 2) * k,
                b.width * k,
                (BAR_H - 2) * k,
                fillColor=color,
                strokeColor=None,
            )
        )
        d.add(
            String(
                (LABEL_W + b.width + 4) * k,
                (height - b.y - BAR_H + 4) * k,
                format_money(b.value, chart.currency),
                fontSize=7,
            )
        )
    for j, s in enumerate(chart.series):
        x = (LABEL_W + j * 120) * k
        d.add(Rect(x, 4 * k, 8, 8, fillColor=colors.HexColor(PALETTE[j]), strokeColor=None))
        d.add(String(x + 11, 5 * k, s.name, fontSize=8))
    return d


def charts(report: WeeklyReport) -> tuple[BarChart, ...]:
    return (spend_by_team(report), composition(report))
