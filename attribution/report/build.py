"""Build a `WeeklyReport` from the warehouse: money from `allocate`, flags from `find_flags`, and
the non-money facts (GPU-hours, SM activity, freshness, coverage) from plain queries here.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import duckdb

from gpulens.attribution import allocate as alloc
from gpulens.attribution.allocate import allocate
from gpulens.attribution.bridge import cost_bridge
from gpulens.attribution.flags import episode_end, find_flags
from gpulens.attribution.goodput import goodput_window
from gpulens.attribution.model import Allocation, DivergentRun
from gpulens.attribution.report.model import (
    DivergentSpend,
    FleetUsage,
    Freshness,
    IsoWeek,
    ReportOptions,
    WeeklyReport,
)

# Lines that measure usage over their own time window: they tell which days the CUR covers. Fees,
# taxes and monthly commitments span the whole month and would make any partial month look complete.
_USAGE_TYPES = ("Usage", "DiscountedUsage", "SavingsPlanCoveredUsage")


def build_weekly_report(
    con: duckdb.DuckDBPyConnection,
    week: IsoWeek,
    options: ReportOptions = ReportOptions(),
    *,
    now: datetime | None = None,
) -> WeeklyReport:
    """The report for `week` (Monday 00:00 UTC to the next Monday) and its comparison week."""
    previous = week.previous()
    allocation = week_allocation(con, week, options)
    flags = find_flags(con, window=timedelta(days=7), until=week.end, sm_threshold=options.sm_threshold)
    bridge = cost_bridge(con, week.start, week.end, label=week.label, currency=allocation.currency)
    return WeeklyReport(
        week=week,
        options=options,
        generated_at=now or datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0),
        allocation=allocation,
        previous=week_allocation(con, previous, options),
        usage=fleet_usage(con, week.start, week.end),
        previous_usage=fleet_usage(con, previous.start, previous.end),
        underutilized=flags.underutilized,
        divergent=divergent_spend(con, week, flags.divergent_runs, options),
        freshness=freshness(con, week),
        bridge=bridge,
        previous_freshness=freshness(con, previous),
        lost=goodput_window(
            con, alloc.Window(week.start, week.end), options=_alloc_options(options), label=week.label
        ),
    )


def _alloc_options(options: ReportOptions) -> alloc.Options:
    return alloc.Options(options.tag_key, options.cluster_tag_key, options.idle, options.basis)


def week_allocation(con: duckdb.DuckDBPyConnection, week: IsoWeek, options: ReportOptions) -> Allocation:
    return allocate(
        con,
        week.start,
        week.end,
        tag_key=options.tag_key,
        cluster_tag_key=options.cluster_tag_key,
        idle=options.idle,
        basis=options.basis,
        label=week.label,
    )


def fleet_usage(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> FleetUsage:
    """GPU-hours held and their GPU-second-weighted SM activity in [start, end)."""
    hours, sm = con.execute(
        """
        SELECT coalesce(sum(gpu_seconds), 0) / 3600.0,
               sum(gpu_seconds * sm_active) / nullif(sum(gpu_seconds) FILTER (WHERE sm_active IS NOT NULL), 0)
        FROM gpu_usage_hourly WHERE hour >= ? AND hour < ?
        """,
        [start, end],
    ).fetchone() or (0.0, None)
    return FleetUsage(float(hours), None if sm is None else float(sm))


def divergent_spend(
    con: duckdb.DuckDBPyConnection, week: IsoWeek, divergent: tuple[DivergentRun, ...], options: ReportOptions
) -> tuple[DivergentSpend, ...]:
    """Divergent runs whose anomaly began before the week ended and was not over before it began,
    with what their GPU time cost from the hour of the onset (or the week's start, if earlier) to the
    hour the episode ended (the loss recovered or the run stopped: `flags.episode_end`), else to the
    end of the week. A recovered spike no longer burns money until the week's end."""
    found = [(run, _onset(con, run), *episode_end(con, run)) for run in divergent]
    runs = [
        (run, onset, end, why)
        for run, onset, end, why in found
        if (onset is None or onset < week.end)
        and (end is None or end >= week.start)
        and _active(con, run, week)
    ]
    onsets = [max(_hour(onset), week.start) for _, onset, _, _ in runs if onset is not None]
    if not onsets:
        return tuple(DivergentSpend(run, onset, None, end, why) for run, onset, end, why in runs)
    priced = alloc.job_gpu_cost(con, alloc.Window(min(onsets), week.end), _alloc_options(options))
    return tuple(
        DivergentSpend(
            run,
            onset,
            None
            if onset is None
            else alloc.job_cost_since(con, priced, run.job_id, max(_hour(onset), week.start), end),
            end if end is not None and end < week.end else None,
            why if end is not None and end < week.end else None,
        )
        for run, onset, end, why in runs
    )


def _active(con: duckdb.DuckDBPyConnection, run: DivergentRun, week: IsoWeek) -> bool:
    """The run logged a step in the week or its job held a GPU in it: a run of another month whose
    last record said nothing about its end is not this week's news."""
    row = con.execute(
        """SELECT EXISTS (SELECT 1 FROM train_metrics
                          WHERE job_id = $job AND ts >= $start AND ts < $end)
               OR EXISTS (SELECT 1 FROM gpu_usage_hourly
                          WHERE job_id = $job AND hour >= $start AND hour < $end)""",
        {"job": run.job_id, "start": week.start, "end": week.end},
    ).fetchone()
    return bool(row and row[0])


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _onset(con: duckdb.DuckDBPyConnection, run: DivergentRun) -> datetime | None:
    row = con.execute(
        "SELECT min(ts) FROM train_metrics WHERE job_id = ? AND step = ? AND NOT coalesce(redone, false)",
        [run.job_id, run.step],
    ).fetchone()
    return None if row is None else row[0]


def freshness(con: duckdb.DuckDBPyConnection, week: IsoWeek) -> Freshness:
    last = con.execute(
        "SELECT ingested_at, billing_period FROM deliveries ORDER BY ingested_at DESC LIMIT 1"
    ).fetchone()
    newest_hour = con.execute("SELECT max(hour) FROM gpu_usage_hourly").fetchone()
    types = ", ".join(f"'{t}'" for t in _USAGE_TYPES)
    newest_end = con.execute(
        f"SELECT max(usage_end) FROM cost_line_items WHERE line_item_type IN ({types})"
    ).fetchone()
    cur_days = _covered_days(
        con,
        f"""
        SELECT DISTINCT d.day FROM days d JOIN cost_line_items c
          ON c.usage_start < d.day + INTERVAL 1 DAY AND c.usage_end > d.day
        WHERE c.line_item_type IN ({types})""",
        week,
    )
    usage_days = _covered_days(
        con,
        """
        SELECT DISTINCT d.day FROM days d JOIN gpu_usage_hourly u
          ON u.hour >= d.day AND u.hour < d.day + INTERVAL 1 DAY""",
        week,
    )
    return Freshness(
        last_delivery_at=last[0] if last else None,
        last_delivery_period=last[1] if last else None,
        newest_usage_hour=newest_hour[0] if newest_hour else None,
        newest_cur_usage_end=newest_end[0] if newest_end else None,
        cur_missing_days=tuple(d for d in week.days() if d not in cur_days),
        usage_missing_days=tuple(d for d in week.days() if d not in usage_days),
    )


def _covered_days(con: duckdb.DuckDBPyConnection, query: str, week: IsoWeek) -> set[date]:
    """The days of `week` that `query` (over a `days(day TIMESTAMP)` relation) returns."""
    days = ", ".join(f"(TIMESTAMP '{d.isoformat()}')" for d in week.days())
    rows = con.execute(f"WITH days(day) AS (VALUES {days}) {query}").fetchall()
    return {r[0].date() if isinstance(r[0], datetime) else r[0] for r in rows}
