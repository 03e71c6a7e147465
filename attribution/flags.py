"""docs/design.md §7 flags: underutilized (GPU, job) pairs and divergent runs, as `gpulens flags` and the
explorer show them.

Waste is money: the cost of the GPU time a job held x (1 - mean SM activity), priced exactly as the
allocation prices it (`allocate.job_gpu_cost`), so `flags` and `attribute` agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import duckdb

from gpulens.attribution import allocate as alloc
from gpulens.attribution.model import DivergentRun, Flags, UnderutilizedGpu
from gpulens.metrics import SM_THRESHOLD_DEFAULT


def newest_usage_end(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The end of the newest usage hour in the warehouse (UTC), or None when there is no usage."""
    row = con.execute("SELECT max(hour) + INTERVAL 1 HOUR FROM gpu_usage_hourly").fetchone()
    return row[0] if row and row[0] is not None else None


def underutilized(
    con: duckdb.DuckDBPyConnection, window: alloc.Window, sm_threshold: float
) -> tuple[UnderutilizedGpu, ...]:
    """(GPU, job) pairs held >= 1 h in the window whose mean SM activity (else the coarse
    utilization, labelled) is below the threshold, with the money that idle share cost."""
    priced = alloc.job_gpu_cost(con, window)
    found = con.execute(
        f"""
        WITH pairs AS (
            SELECT node, instance_id, gpu, any_value(team) AS team, job_id,
                   any_value(model) AS model,
                   sum(gpu_seconds) / 3600.0 AS hours,
                   sum(gpu_seconds * sm_active)
                       / nullif(sum(gpu_seconds) FILTER (WHERE sm_active IS NOT NULL), 0) AS sm,
                   sum(gpu_seconds * utilization)
                       / nullif(sum(gpu_seconds) FILTER (WHERE utilization IS NOT NULL), 0) AS util
            FROM {priced.usage}
            WHERE job_id IS NOT NULL
            GROUP BY node, instance_id, gpu, job_id),
        waste AS (SELECT instance_id, gpu, job_id, sum(waste) AS waste FROM {priced.cost} GROUP BY ALL)
        SELECT node, instance_id, gpu, team, job_id, hours, coalesce(sm, util) AS measured,
               CASE WHEN sm IS NULL THEN 'utilization' ELSE 'sm_active' END AS measure,
               coalesce(w.waste, 0), model
        FROM pairs LEFT JOIN waste w USING (instance_id, gpu, job_id)
        WHERE hours >= 1.0 AND coalesce(sm, util) < ?
        ORDER BY coalesce(w.waste, 0) DESC, node, gpu, job_id""",
        [sm_threshold],
    ).fetchall()
    return tuple(
        UnderutilizedGpu(
            node=n,
            instance_id=i,
            gpu=g,
            team=t,
            job_id=j,
            hours=float(h),
            sm_active=float(s),
            waste=Decimal(w),
            measure=m,
            model=mo,
        )
        for n, i, g, t, j, h, s, m, w, mo in found
    )


def divergent_runs(con: duckdb.DuckDBPyConnection) -> tuple[DivergentRun, ...]:
    """One entry per run and anomaly kind (nan, spike, divergence), at its first step; the team
    normalized as docs/design.md §6 normalizes tags (rows ingested before `ingest runs` did so)."""
    found = con.execute("""
        SELECT job_id,
               any_value(NULLIF(lower(trim(team)), '')) FILTER (WHERE NULLIF(trim(team), '') IS NOT NULL),
               kind, min(step)
        FROM train_anomalies GROUP BY job_id, kind ORDER BY job_id, min(step), kind""").fetchall()
    return tuple(DivergentRun(job_id=j, team=t, kind=k, step=int(s)) for j, t, k, s in found)


# docs/design.md §7 thresholds, read back to tell when an episode is over: a spike is >= 25 % above
# its baseline, a divergence >= 10 % above the running minimum.
SPIKE_RATIO = 1.25
DIVERGENCE_RATIO = 1.10
SPIKE_STEPS = 3  # a spike is confirmed on its third step: its baseline is the steps before those
BASELINE_STEPS = 20


def recovery(points: Sequence[tuple[int, datetime | None, float]], kind: str, onset: int) -> datetime | None:
    """When the episode that `kind` reported at step `onset` was over: the time of the first later step
    whose loss is back (finite after a NaN; below 1.25 x the mean of the 20 steps before a spike; within
    10 % of the minimum before a divergence); None when it never came back. `points` are (step, ts,
    loss) of the kept steps (not redone) of one rank, in step order."""
    before = [loss for step, _, loss in points if step <= onset - SPIKE_STEPS and math.isfinite(loss)]
    if kind == "nan":
        limit = math.inf
    elif kind == "spike" and before:
        recent = before[-BASELINE_STEPS:]
        limit = SPIKE_RATIO * sum(recent) / len(recent)
    elif kind == "divergence" and before:
        limit = DIVERGENCE_RATIO * min(before)
    else:
        return None
    return next(
        (ts for step, ts, loss in points if step > onset and math.isfinite(loss) and loss < limit), None
    )


def episode_end(con: duckdb.DuckDBPyConnection, run: DivergentRun) -> tuple[datetime | None, str]:
    """When money stopped burning on `run`'s anomaly: its recovery, else the run's last step; with
    which of the two it was (`recovered`, `run ended`)."""
    rows = con.execute(
        """
        WITH r AS (SELECT min(rank) AS lowest FROM train_metrics WHERE job_id = ?)
        SELECT step, ts, coalesce(loss, 'NaN'::DOUBLE) FROM train_metrics m, r
        WHERE m.job_id = ? AND m.rank IS NOT DISTINCT FROM r.lowest AND NOT coalesce(m.redone, false)
        ORDER BY step""",
        [run.job_id, run.job_id],
    ).fetchall()
    back = recovery([(int(s), t, float(v)) for s, t, v in rows], run.kind, run.step)
    if back is not None:
        return back, "recovered"
    last = max((t for _, t, _ in rows if t is not None), default=None)
    return last, "run ended"


def find_flags(
    con: duckdb.DuckDBPyConnection,
    *,
    window: timedelta = timedelta(hours=24),
    until: datetime | None = None,
    sm_threshold: float = SM_THRESHOLD_DEFAULT,
) -> Flags:
    """Flags for [until - window, until); `until` defaults to the end of the newest usage hour."""
    end = alloc.naive_utc(until) if until is not None else newest_usage_end(con)
    pairs: tuple[UnderutilizedGpu, ...] = ()
    if end is not None:
        pairs = underutilized(con, alloc.Window(end - window, end), sm_threshold)
    return Flags(underutilized=pairs, divergent_runs=divergent_runs(con), currency=billing_currency(con))


def billing_currency(con: duckdb.DuckDBPyConnection) -> str:
    """The currency most cost lines are billed in (USD for an empty warehouse), for showing waste."""
    row = con.execute(
        "SELECT currency FROM cost_line_items WHERE currency IS NOT NULL "
        "GROUP BY currency ORDER BY count(*) DESC, currency LIMIT 1"
    ).fetchone()
    return str(row[0]) if row else "USD"
