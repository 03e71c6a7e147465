"""The report's sections as typed tables: the one arrangement every renderer draws from.

Each cell carries its kind (money, hours, ratio, ...) so that html, pdf, csv and xlsx format the same
`Decimal` the same way; nothing here computes money, it only places what `allocate` returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from gpulens.attribution.model import CENT
from gpulens.attribution.report.model import WeeklyReport

Kind = Literal["text", "money", "hours", "ratio", "change", "int", "time"]
Value = str | int | float | Decimal | datetime | date | None


@dataclass(frozen=True)
class Cell:
    value: Value
    kind: Kind = "text"


@dataclass(frozen=True)
class Table:
    """One report section: `key` names the CSV section and the xlsx sheet, `title` the heading."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""


def cents(amount: Decimal) -> Decimal:
    """Round money to the cent for display, half away from zero as accountants do."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def format_cell(cell: Cell, *, grouping: bool = True) -> str:
    """The text of a cell as html, pdf and csv show it; csv passes `grouping=False` (no 1,000 commas)."""
    value = cell.value
    if value is None:
        return ""
    sep = "," if grouping else ""
    if cell.kind == "money" and isinstance(value, Decimal):
        return f"{cents(value):{sep}.2f}"
    if cell.kind == "hours":
        return f"{float(value):{sep}.1f}"  # type: ignore[arg-type]
    if cell.kind in ("ratio", "change"):
        return f"{float(value) * 100:+.1f}%" if cell.kind == "change" else f"{float(value) * 100:.1f}%"  # type: ignore[arg-type]
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def money(amount: Decimal | None) -> Cell:
    return Cell(amount, "money")


def text(value: object) -> Cell:
    return Cell(None if value is None else str(value), "text")


def _change(now: Decimal, before: Decimal) -> Cell:
    """Relative change as a ratio; blank when the previous week had no spend to compare with."""
    return Cell(None if before == 0 else float((now - before) / before), "change")


def headline(report: WeeklyReport) -> Table:
    now, before = report.allocation, report.previous
    prev_waste = sum((t.waste for t in before.teams), Decimal(0))
    rows = (
        (
            text("Total spend"),
            money(now.total),
            money(before.total),
            money(now.total - before.total),
            _change(now.total, before.total),
        ),
        (
            text("GPU-hours"),
            Cell(report.usage.gpu_hours, "hours"),
            Cell(report.previous_usage.gpu_hours, "hours"),
            Cell(report.usage.gpu_hours - report.previous_usage.gpu_hours, "hours"),
            Cell(None, "change"),
        ),
        (
            text("Fleet SM activity"),
            Cell(report.usage.sm_active, "ratio"),
            Cell(report.previous_usage.sm_active, "ratio"),
            Cell(None, "text"),
            Cell(None, "change"),
        ),
        (
            text("Waste (held GPUs left idle)"),
            money(report.waste),
            money(prev_waste),
            money(report.waste - prev_waste),
            _change(report.waste, prev_waste),
        ),
        (
            text("Idle (GPU time nobody held)"),
            money(now.idle),
            money(before.idle),
            money(now.idle - before.idle),
            _change(now.idle, before.idle),
        ),
        (
            text("Unallocated"),
            money(now.unallocated),
            money(before.unallocated),
            money(now.unallocated - before.unallocated),
            _change(now.unallocated, before.unallocated),
        ),
    )
    return Table(
        "headline",
        f"Headline, week {report.week.label}",
        ("measure", "this week", "previous week", "change", "change %"),
        rows,
    )


def teams(report: WeeklyReport) -> Table:
    """Spend per team against the previous week, then idle, unallocated and the total as their own rows."""
    now = {t.team: t for t in report.allocation.teams}
    before = {t.team: t for t in report.previous.teams}
    zero = Decimal(0)
    rows = []
    for name in sorted(now.keys() | before.keys(), key=lambda n: (-(now[n].total if n in now else zero), n)):
        t, p = now.get(name), before.get(name)
        total, prev = (t.total if t else zero), (p.total if p else zero)
        rows.append(
            (
                text(name),
                text("team"),
                money(t.direct if t else zero),
                money(t.shared if t else zero),
                money(total),
                money(prev),
                money(total - prev),
                _change(total, prev),
                Cell(float(t.gpu_hours) if t else 0.0, "hours"),
                money(t.waste if t else zero),
            )
        )
    alloc, prev_alloc = report.allocation, report.previous
    for label, kind, amount, prev in (
        ("idle GPU time", "idle", alloc.idle, prev_alloc.idle),
        ("unallocated", "unallocated", alloc.unallocated, prev_alloc.unallocated),
        ("total", "total", alloc.total, prev_alloc.total),
    ):
        rows.append(
            (
                text(label),
                text(kind),
                money(None),
                money(None),
                money(amount),
                money(prev),
                money(amount - prev),
                _change(amount, prev),
                Cell(None, "hours"),
                money(None),
            )
        )
    return Table(
        "teams",
        "Spend per team",
        (
            "team",
            "category",
            "direct",
            "shared",
            "total",
            "previous week",
            "change",
            "change %",
            "GPU-hours",
            "waste",
        ),
        tuple(rows),
        note=f"{report.currency}, {report.allocation.basis} cost; idle is kept "
        f"{'apart' if report.options.idle == 'separate' else 'inside the teams shared cost'}.",
    )


def underutilized(report: WeeklyReport) -> Table:
    ranked = sorted(report.underutilized, key=lambda u: (-u.waste, u.node or "", u.gpu or 0))
    rows = tuple(
        (
            text(u.team),
            text(u.job_id),
            text(u.node),
            text(u.instance_id),
            Cell(u.gpu, "int"),
            text(u.model),
            Cell(u.hours, "hours"),
            Cell(u.sm_active, "ratio"),
            text(u.measure),
            money(u.waste),
        )
        for u in ranked[: report.options.top]
    )
    return Table(
        "underutilized",
        "Top underutilized jobs and GPUs",
        ("team", "job_id", "node", "instance_id", "gpu", "model", "hours", "activity", "measure", "waste"),
        rows,
        note=f"GPUs held by a job with mean activity below {report.options.sm_threshold:.0%} during "
        f"the week, by waste; top {report.options.top} of {len(ranked)}.",
    )


def divergent(report: WeeklyReport) -> Table:
    rows = tuple(
        (
            text(d.run.job_id),
            text(d.run.team),
            text(d.run.kind),
            Cell(d.run.step, "int"),
            Cell(d.onset, "time"),
            money(d.spend_after_onset),
        )
        for d in report.divergent
    )
    return Table(
        "divergent_runs",
        "Divergent training runs",
        ("job_id", "team", "kind", "step", "onset", "spend after onset"),
        rows,
        note="Spend after onset: what the job's GPU time cost from the hour of the anomaly (or the "
        "week's start, if earlier) to the end of the week, priced as the allocation prices it.",
    )


def unallocated(report: WeeklyReport) -> Table:
    lines = sorted(report.allocation.unallocated_lines, key=lambda u: (-abs(u.cost), u.resource_id or ""))
    rows = tuple(
        (
            text(u.resource_id or "(no resource id)"),
            text(u.line_item_type),
            text(u.product_code),
            money(u.cost),
        )
        for u in lines
    )
    return Table(
        "unallocated",
        "Unallocated spend by resource",
        ("resource_id", "line_item_type", "product_code", "cost"),
        rows,
        note=f"Tag these resources with `{report.options.tag_key}` (or `{report.options.cluster_tag_key}`) "
        "to allocate them.",
    )


def reconciliation(report: WeeklyReport) -> Table:
    """SPEC §6: sum of team totals + idle + unallocated = the period's total cost, shown line by line."""
    a = report.allocation
    direct = sum((t.direct for t in a.teams), Decimal(0))
    shared = sum((t.shared for t in a.teams), Decimal(0))
    parts = direct + shared + a.idle + a.unallocated
    rows = (
        (text("teams, direct"), money(direct)),
        (text("teams, shared"), money(shared)),
        (text("idle"), money(a.idle)),
        (text("unallocated"), money(a.unallocated)),
        (text("sum of the parts"), money(parts)),
        (text(f"CUR total ({a.basis})"), money(a.total)),
        (text("difference"), money(parts - a.total)),
        (text("CUR total (billed, unblended), for reference"), money(a.billed_total)),
    )
    return Table(
        "reconciliation",
        "Reconciliation to the CUR total",
        ("line", "amount"),
        rows,
        note="Teams + idle + unallocated = the week's total cost, to the cent (SPEC §6).",
    )


def freshness(report: WeeklyReport) -> Table:
    f = report.freshness
    rows = (
        (text("last CUR delivery ingested"), Cell(f.last_delivery_at, "time")),
        (text("billing period of that delivery"), text(f.last_delivery_period)),
        (text("newest CUR usage line ends"), Cell(f.newest_cur_usage_end, "time")),
        (text("newest usage hour"), Cell(f.newest_usage_hour, "time")),
        (
            text("days without CUR usage lines"),
            text(", ".join(d.isoformat() for d in f.cur_missing_days) or "none"),
        ),
        (
            text("days without usage rollups"),
            text(", ".join(d.isoformat() for d in f.usage_missing_days) or "none"),
        ),
        (text("report generated"), Cell(report.generated_at, "time")),
    )
    return Table("freshness", "Data freshness", ("item", "value"), rows)


def methods(report: WeeklyReport) -> Table:
    o = report.options
    notes = (
        f"Cost basis: {report.allocation.basis}. Amortized cost spreads Savings Plan and Reserved Instance "
        "commitments over the usage they cover (effective cost), so a team pays for what it used, not for "
        "when the invoice was cut; unused commitment is unallocated.",
        f"Direct: a line whose resource carries the `{o.tag_key}` tag belongs to that team, whole.",
        "Shared GPU: an untagged GPU instance is split inside each CUR line's time window in proportion to the "
        "GPU-seconds each team held on it; the rest of the window is idle"
        + (" and kept apart." if o.idle == "separate" else ", spread over the instance's teams."),
        f"Shared other: untagged lines with the `{o.cluster_tag_key}` tag are split by the teams' GPU-seconds "
        "on that cluster.",
        "Waste: the cost of GPU time a team held times (1 - SM activity). Unallocated: everything else, "
        "listed by resource id.",
        f"Week: {report.week.start:%Y-%m-%d} 00:00 to {report.week.end:%Y-%m-%d} 00:00 UTC; lines that "
        "straddle the boundary count for the part inside the week.",
    )
    return Table("methods", "Methods", ("note",), tuple((text(n),) for n in notes))


def sections(report: WeeklyReport) -> tuple[Table, ...]:
    """Every section in report order; the same tuple feeds all four renderers."""
    return (
        headline(report),
        teams(report),
        underutilized(report),
        divergent(report),
        unallocated(report),
        reconciliation(report),
        freshness(report),
        methods(report),
    )
