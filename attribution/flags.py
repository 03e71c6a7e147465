"""SPEC §7 flags: underutilized (GPU, job) pairs and divergent runs, as `gpulens flags` and the
explorer show them.

Waste is money: the cost of the GPU time a job held x (1 - mean SM activity), priced exactly as the
allocation prices it (`allocate.job_gpu_cost`), so `flags` and `attribute` agree.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import duckdb

from gpulens.attribution import allocate as alloc
from gpulens.attribution.model import DivergentRun, Flags, UnderutilizedGpu


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
                   sum(gpu_seconds * sm_active) / nullif(sum(gpu_seconds) FILTER (WHERE sm_active IS NOT NULL), 0)
                       AS sm,
                   sum(gpu_seconds * utilization) / nullif(sum(gpu_seconds) FILTER (WHERE utilization IS NOT NULL), 0)
                       AS util
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
    normalized as SPEC §6 normalizes tags (rows ingested before `ingest runs` did so)."""
    found = con.execute("""
        SELECT job_id, any_value(NULLIF(lower(trim(team)), '')) FILTER (WHERE NULLIF(trim(team), '') IS NOT NULL),
               kind, min(step)
        FROM train_anomalies GROUP BY job_id, kind ORDER BY job_id, min(step), kind""").fetchall()
    return tuple(DivergentRun(job_id=j, team=t, kind=k, step=int(s)) for j, t, k, s in found)


def find_flags(
    con: duckdb.DuckDBPyConnection,
    *,
    window: timedelta = timedelta(hours=24),
    until: datetime | None = None,
    sm_threshold: float = 0.25,
) -> Flags:
    """Flags for [until - window, until); `until` defaults to the end of the newest usage hour."""
    end = alloc.naive_utc(until) if until is not None else newest_usage_end(con)
    pairs: tuple[UnderutilizedGpu, ...] = ()
    if end is not None:
        pairs = underutilized(con, alloc.Window(end - window, end), sm_threshold)
    return Flags(underutilized=pairs, divergent_runs=divergent_runs(con))
