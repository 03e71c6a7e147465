"""The report's sections as typed tables: the one arrangement every renderer draws from.

Each cell carries its kind (money, hours, ratio, ...) so that html, pdf, csv and xlsx format the same
`Decimal` the same way; nothing here computes money, it only places what `allocate` (and the bridge,
attribution/bridge.py) returned. People read money with its currency, two decimals and thousands
(`$1,234.57`, attribution/present.py); the csv keeps plain numbers (`1234.57`) under a header naming
the currency. A cell that is a sum or a difference of other cells says so (`Formula`), so the xlsx
writes it as a spreadsheet formula over the cells it adds up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from gpulens.attribution.money import round_parts
from gpulens.attribution.present import format_count, format_hours, format_money, to_cents
from gpulens.attribution.report.model import WeeklyReport

Kind = Literal["text", "money", "hours", "ratio", "change", "int", "time"]
Value = str | int | float | Decimal | datetime | date | None


@dataclass(frozen=True)
class Formula:
    """A cell computed from cells of its table: `sum` of rows `first`..`last` of its own column, or
    `sub`: the cell at `cells[0]` minus the one at `cells[1]`, each a (row, column) of the table's rows."""

    op: Literal["sum", "sub"]
    cells: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Cell:
    """`shown`: the cents a money cell shows where they differ from rounding `value` alone: the parts
    of a total are rounded together (`money.round_parts`), so that the parts shown add up to the total
    shown. The xlsx writes `value` at full precision and sums it by formula."""

    value: Value
    kind: Kind = "text"
    formula: Formula | None = None
    shown: Decimal | None = None


@dataclass(frozen=True)
class Table:
    """One report section: `key` names the CSV section and the xlsx sheet, `title` the heading."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""


def cents(amount: Decimal) -> Decimal:
    """Round money to the cent for display, half away from zero as accountants do (`present.to_cents`)."""
    return to_cents(amount)


def format_cell(cell: Cell, currency: str | None = None) -> str:
    """The text of a cell: for people (html, pdf) when `currency` is given (`$1,234.57`, `1,234.5 h`,
    `1,000,000`), else for machines (csv: `1234.57`, `1234.5`, `1000000`)."""
    value = cell.value
    if value is None:
        return ""
    if cell.kind == "money" and isinstance(value, Decimal):
        amount = cell.shown if cell.shown is not None else cents(value)
        return format_money(amount, currency) if currency else f"{amount:.2f}"
    if cell.kind == "hours":
        return format_hours(value) if currency else f"{float(value):.1f}"  # type: ignore[arg-type]
    if cell.kind == "int" and currency:
        return format_count(value)  # type: ignore[arg-type]
    if cell.kind in ("ratio", "change"):
        return f"{float(value) * 100:+.1f}%" if cell.kind == "change" else f"{float(value) * 100:.1f}%"  # type: ignore[arg-type]
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def money(amount: Decimal | None, shown: Decimal | None = None) -> Cell:
    return Cell(amount, "money", shown=shown)


def _parts(amounts: list[Decimal], total: Decimal) -> list[Decimal]:
    """The cents shown for parts of `total`: rounded together so that they add up to it, as shown."""
    return round_parts(amounts, total)


def text(value: object) -> Cell:
    return Cell(None if value is None else str(value), "text")


def _change(now: Decimal, before: Decimal, days: tuple[int, int] = (7, 7)) -> Cell:
    """Relative change as a ratio; blank when the previous week had no spend to compare with. Where
    the two weeks have data for a different number of days (`days`: this week's, the previous'), the
    change compares per-day rates, so that 6 days are not read as a drop against 7."""
    days_now, days_before = days
    if before == 0 or days_now == 0 or days_before == 0:
        return Cell(None, "change")
    return Cell(float((now * days_before) / (before * days_now)) - 1.0, "change")


def _delta(
    row: int,
    now: Decimal,
    before: Decimal,
    cols: tuple[int, int] = (1, 2),
    shown: tuple[Decimal, Decimal] | None = None,
) -> Cell:
    """`now - before` as the formula over the two cells it subtracts (row `row`, columns `cols`); shown
    as the difference of the two figures shown (`shown`), so that the row reads right."""
    return Cell(
        now - before,
        "money",
        Formula("sub", ((row, cols[0]), (row, cols[1]))),
        None if shown is None else shown[0] - shown[1],
    )


def _days_note(report: WeeklyReport) -> str:
    days_now, days_before = report.cost_days
    if days_now == days_before:
        return ""
    return (
        f"This week has CUR usage lines for {days_now} of 7 days, the previous week for {days_before}: "
        "change % compares spend per day with data; the change column compares the totals as they are."
    )


def headline(report: WeeklyReport) -> Table:
    now, before = report.allocation, report.previous
    prev_waste = sum((t.waste for t in before.teams), Decimal(0))
    days = report.cost_days
    rows = (
        (
            text("Total spend"),
            money(now.total),
            money(before.total),
            _delta(0, now.total, before.total),
            _change(now.total, before.total, days),
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
            _delta(3, report.waste, prev_waste),
            _change(report.waste, prev_waste, days),
        ),
        (
            text("Idle (GPU time nobody held)"),
            money(now.idle),
            money(before.idle),
            _delta(4, now.idle, before.idle),
            _change(now.idle, before.idle, days),
        ),
        (
            text("Unallocated"),
            money(now.unallocated),
            money(before.unallocated),
            _delta(5, now.unallocated, before.unallocated),
            _change(now.unallocated, before.unallocated, days),
        ),
    )
    return Table(
        "headline",
        f"Headline, week {report.week.label}",
        ("measure", "this week", "previous week", "change", "change %"),
        rows,
        note=_days_note(report),
    )


def teams(report: WeeklyReport) -> Table:
    """Spend per team against the previous week, then idle, unallocated and the total as their own rows."""
    now = {t.team: t for t in report.allocation.teams}
    before = {t.team: t for t in report.previous.teams}
    zero = Decimal(0)
    days = report.cost_days
    alloc, prev_alloc = report.allocation, report.previous
    names = sorted(now.keys() | before.keys(), key=lambda n: (-(now[n].total if n in now else zero), n))
    totals = [now[n].total if n in now else zero for n in names]
    prevs = [before[n].total if n in before else zero for n in names]
    # The cents shown: teams, idle and unallocated add up to the total shown, each week; a team's
    # direct and shared add up to its total shown.
    shown = _parts([*totals, alloc.idle, alloc.unallocated], alloc.total) + [cents(alloc.total)]
    shown_prev = _parts([*prevs, prev_alloc.idle, prev_alloc.unallocated], prev_alloc.total)
    shown_prev.append(cents(prev_alloc.total))
    rows: list[tuple[Cell, ...]] = []
    for i, name in enumerate(names):
        t = now.get(name)
        total, prev = totals[i], prevs[i]
        direct, shared = _parts([t.direct, t.shared], shown[i]) if t else [zero, zero]
        rows.append(
            (
                text(name),
                text("team"),
                money(t.direct if t else zero, direct),
                money(t.shared if t else zero, shared),
                money(total, shown[i]),
                money(prev, shown_prev[i]),
                _delta(i, total, prev, (4, 5), (shown[i], shown_prev[i])),
                _change(total, prev, days),
                Cell(float(t.gpu_hours) if t else 0.0, "hours"),
                money(t.waste if t else zero),
            )
        )
    for label, kind, amount, prev in (
        ("idle GPU time", "idle", alloc.idle, prev_alloc.idle),
        ("unallocated", "unallocated", alloc.unallocated, prev_alloc.unallocated),
        ("total", "total", alloc.total, prev_alloc.total),
    ):
        r = len(rows)
        # the total row adds up every row above it: in the xlsx, a SUM over them
        added = Formula("sum", ((0, 0), (r - 1, 0))) if kind == "total" and r > 0 else None
        rows.append(
            (
                text(label),
                text(kind),
                money(None),
                money(None),
                Cell(amount, "money", added, shown[r]),
                Cell(prev, "money", added, shown_prev[r]),
                _delta(r, amount, prev, (4, 5), (shown[r], shown_prev[r])),
                _change(amount, prev, days),
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
        f"{'apart' if report.options.idle == 'separate' else 'inside the teams shared cost'}. "
        + _days_note(report),
    )


def cost_kinds(report: WeeklyReport) -> Table:
    """Each team's spend split into GPU instance time (EC2, SageMaker, Capacity Blocks), the storage
    behind training (FSx, S3, EFS, EBS) and everything else, beside each other (docs/design.md §6)."""
    zero = Decimal(0)
    rows = []
    for t in sorted(report.allocation.teams, key=lambda t: (-t.total, t.team)):
        other = t.total - t.gpu - t.storage
        gpu, storage, rest = _parts([t.gpu, t.storage, other], t.total)
        rows.append(
            (
                text(t.team),
                money(t.gpu, gpu),
                money(t.storage, storage),
                money(other if other else zero, rest),
                money(t.total, cents(t.total)),
            )
        )
    return Table(
        "cost_kinds",
        "GPU and storage cost by team",
        ("team", "gpu", "storage", "other", "total"),
        tuple(rows),
        note="Storage is the FSx, S3, EFS and EBS spend shared to a team by its cluster tag or tagged to it; "
        "other is the rest of its tagged spend (networking, control planes).",
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
            Cell(d.ended, "time") if d.ended is not None else text("end of week"),
            text(d.ended_by or "still running"),
            money(d.spend_after_onset),
        )
        for d in report.divergent
    )
    return Table(
        "divergent_runs",
        "Divergent training runs",
        ("job_id", "team", "kind", "step", "onset", "until", "ended by", "spend after onset"),
        rows,
        note="Spend after onset: what the job's GPU time cost from the hour of the anomaly (or the "
        "week's start, if earlier) to the hour the episode ended (the loss recovered, or the run's last "
        "step), else to the end of the week, priced as the allocation prices it.",
    )


def lost_training(report: WeeklyReport) -> Table:
    """docs/design.md §8 in money, per team: productive steps, each cause of lost time, and GPU time of
    jobs without a run log, adding up to the team's GPU spend."""
    from gpulens.attribution.goodput import BADPUT, PRODUCTIVE

    lost = report.lost
    if lost is None:
        return Table("lost_training", "What lost training time cost", ("team", "cause", "cost"), ())
    seconds: dict[str | None, dict[str, float]] = {}
    for job in lost.jobs:
        into = seconds.setdefault(job.team, dict.fromkeys(job.seconds, 0.0))
        for bucket, s in job.seconds.items():
            into[bucket] += s
    costs = lost.team_cost()
    rows: list[tuple[Cell, ...]] = []
    order = sorted(costs, key=lambda t: (-sum((costs[t][b] for b in BADPUT), Decimal(0)), t or ""))
    for team in order:
        spend = lost.gpu_cost.get(team, Decimal(0))

        def share(amount: Decimal, spend: Decimal = spend) -> Cell:
            return Cell(None if spend == 0 else float(amount / spend), "ratio")

        for bucket in BADPUT:
            if seconds[team][bucket] > 0 or costs[team][bucket] != 0:
                amount = costs[team][bucket]
                rows.append(
                    (
                        text(team),
                        text(bucket),
                        Cell(seconds[team][bucket] / 3600, "hours"),
                        money(amount),
                        share(amount),
                    )
                )
        logged = sum(costs[team].values(), Decimal(0))
        productive = costs[team][PRODUCTIVE]
        rows.append(
            (
                text(team),
                text("productive"),
                Cell(seconds[team][PRODUCTIVE] / 3600, "hours"),
                money(productive),
                share(productive),
            )
        )
        rows.append(
            (
                text(team),
                text("GPU time of jobs without a run log"),
                text(None),
                money(spend - logged),
                share(spend - logged),
            )
        )
        rows.append((text(team), text("GPU spend"), text(None), money(spend), share(spend)))
    return Table(
        "lost_training",
        "What lost training time cost",
        ("team", "cause", "wall hours", "cost", "share of GPU spend"),
        tuple(rows),
        note="Each run's wall time (rank 0, first start to last end) is cut into productive steps and the "
        "causes of lost time: wasted progress (steps a restart ran again), checkpoint save and load, data "
        "waits, eval, init, restarts and other. A cause costs the job's GPU spend in the week x its share of "
        "the run's wall time; a team's rows add up to its GPU spend (the price of its GPU time, as the "
        "allocation prices it).",
    )


_COMMITMENT_TYPES = ("SavingsPlanRecurringFee", "SavingsPlanUpfrontFee", "RIFee", "Purchase")


def what_to_do(line_item_type: str, resource_id: str | None, tag_key: str) -> str:
    """The action that moves an unallocated line, or why none does: commitment fees, tax and credits
    belong to no team and no tag moves them; usage of an untagged resource does."""
    if line_item_type in _COMMITMENT_TYPES:
        return "none: a commitment fee (the unused part of a Savings Plan or RI; see the bridge)"
    if line_item_type == "Fee":
        return "none: a fee (an RI's upfront fee, support, marketplace)"
    if line_item_type == "Tax":
        return "none: tax"
    if line_item_type in ("Credit", "Refund"):
        return "none: a credit or refund"
    if resource_id is None:
        return "none: the line names no resource"
    return f"tag it with `{tag_key}`"


def unallocated(report: WeeklyReport) -> Table:
    lines = sorted(report.allocation.unallocated_lines, key=lambda u: (-abs(u.cost), u.resource_id or ""))
    shown = _parts([u.cost for u in lines], report.allocation.unallocated)
    rows = tuple(
        (
            text(u.resource_id or "(no resource id)"),
            text(u.line_item_type),
            text(u.product_code),
            money(u.cost, shown[i]),
            text(what_to_do(u.line_item_type, u.resource_id, report.options.tag_key)),
        )
        for i, u in enumerate(lines)
    )
    return Table(
        "unallocated",
        "Unallocated spend by resource",
        ("resource_id", "line_item_type", "product_code", "cost", "what to do"),
        rows,
        note=f"Usage of a resource without the `{report.options.tag_key}` (or "
        f"`{report.options.cluster_tag_key}`) tag is allocated once it is tagged; commitment fees, tax and "
        "credits belong to no team and no tag moves them.",
    )


def reconciliation(report: WeeklyReport) -> Table:
    """docs/design.md §6: team totals + idle + unallocated = the period's total cost, line by line."""
    a = report.allocation
    direct = sum((t.direct for t in a.teams), Decimal(0))
    shared = sum((t.shared for t in a.teams), Decimal(0))
    parts = direct + shared + a.idle + a.unallocated
    # shown: each part and the sum of the parts as shown (which is the total shown when it reconciles)
    shown = _parts([direct, shared, a.idle, a.unallocated], parts)
    shown_parts = sum(shown, Decimal(0))
    rows = (
        (text("teams, direct"), money(direct, shown[0])),
        (text("teams, shared"), money(shared, shown[1])),
        (text("idle"), money(a.idle, shown[2])),
        (text("unallocated"), money(a.unallocated, shown[3])),
        (text("sum of the parts"), Cell(parts, "money", Formula("sum", ((0, 1), (3, 1))), shown_parts)),
        (text(f"CUR total ({a.basis})"), money(a.total)),
        (
            text("difference"),
            Cell(parts - a.total, "money", Formula("sub", ((4, 1), (5, 1))), shown_parts - cents(a.total)),
        ),
        (text("CUR total (billed, unblended), for reference"), money(a.billed_total)),
    )
    return Table(
        "reconciliation",
        "Reconciliation to the CUR total",
        ("line", "amount"),
        rows,
        note="Teams + idle + unallocated = the week's total cost, to the cent (docs/design.md §6).",
    )


def bridge(report: WeeklyReport) -> Table:
    """From the amortized total to the bill, one kind of line a row (attribution/bridge.py): each row's
    amortized and billed cost and their difference; the rows add up to the two totals."""
    b = report.bridge
    columns = ("line", "line item types", "amortized", "billed", "billed - amortized")
    if b is None:
        return Table("bridge", "From amortized cost to the bill", columns, ())
    amortized = _parts([line.amortized for line in b.lines], b.amortized_total)
    billed = _parts([line.billed for line in b.lines], b.billed_total)
    rows: list[tuple[Cell, ...]] = [
        (
            text(line.label),
            text(", ".join(line.line_types) or "none"),
            money(line.amortized, amortized[i]),
            money(line.billed, billed[i]),
            _delta(i, line.billed, line.amortized, (3, 2), (billed[i], amortized[i])),
        )
        for i, line in enumerate(b.lines)
    ]
    total = Formula("sum", ((0, 0), (len(rows) - 1, 0)))
    amortized_total, billed_total = cents(b.amortized_total), cents(b.billed_total)
    rows.append(
        (
            text("total"),
            text(""),
            Cell(b.amortized_total, "money", total, amortized_total),
            Cell(b.billed_total, "money", total, billed_total),
            Cell(b.difference, "money", total, billed_total - amortized_total),
        )
    )
    return Table(
        "bridge",
        "From amortized cost to the bill",
        columns,
        tuple(rows),
        note=f"{b.currency}, the week's CUR lines (straddling lines prorated) summed as amortized and as "
        "billed cost. Savings Plans and RIs: amortized cost charges the covered usage its effective cost and "
        "leaves only the unused commitment as a fee; the bill charges the commitment fees in full and the "
        "covered usage nothing (an SP's on-demand price and its negation cancel). The amortized total is the "
        "report's total; the billed total is the invoice's view of the same week." + _billed_note(report),
    )


def _billed_note(report: WeeklyReport) -> str:
    """Under billed cost the commitment fees sit outside every team: say how much, where a finance
    reader would otherwise see a team's spend drop and unallocated jump with no reason given."""
    b = report.bridge
    if b is None or report.allocation.basis != "billed":
        return ""
    fees = sum((line.billed for line in b.lines if line.key == "commitment_fees"), Decimal(0))
    return (
        f" This report is on billed cost: the commitment fees ({format_money(fees, b.currency)}) are "
        "unallocated, outside every team, and the usage they cover costs the teams nothing."
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
        "Shared GPU: an untagged GPU instance is split inside each CUR line's time window in proportion to "
        "the GPU-seconds each team held on it; the rest of the window is idle"
        + (" and kept apart." if o.idle == "separate" else ", spread over the instance's teams."),
        f"Shared other: untagged lines with the `{o.cluster_tag_key}` tag are split by the teams' "
        "GPU-seconds on that cluster.",
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
        cost_kinds(report),
        underutilized(report),
        divergent(report),
        lost_training(report),
        unallocated(report),
        reconciliation(report),
        bridge(report),
        freshness(report),
        methods(report),
    )
