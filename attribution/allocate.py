"""SPEC §6 allocation: the only place money is split.

Each step below is a function named for the table it produces, whose inputs are the tables it
reads; each materializes one TEMP table on the caller's connection (read-only connections allow
temp tables), so a month is split inside DuckDB, never in Python. Money stays DECIMAL(38, 10).
Every split is exact: a piece of money is cut with a running sum (`telescoped`), so the parts add
up to the whole to the last digit and the invariant (teams + idle + unallocated = total) holds by
construction; `Allocation.__post_init__` checks it anyway.

Order (SPEC §6): direct (team tag) -> shared GPU (usage split inside each line's own window, the
rest idle) -> shared other (cluster tag, split by the cluster's GPU-seconds) -> unallocated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Literal

import duckdb

from gpulens.attribution.ingest.fields import MONEY, literal
from gpulens.attribution.instances import GPUS_PER_INSTANCE
from gpulens.attribution.model import (
    Allocation,
    Basis,
    DailyAllocation,
    IdleMode,
    TeamCost,
    UnallocatedLine,
)
from gpulens.errors import GpulensError


@dataclass(frozen=True)
class Options:
    """How to allocate: which tags name teams and clusters, idle kept apart or shared, which cost."""

    tag_key: str = "team"
    cluster_tag_key: str = "cluster"
    idle: IdleMode = "separate"
    basis: Basis = "amortized"


@dataclass(frozen=True)
class Window:
    """[start, end) in naive UTC; `period` set when the lines are chosen by billing period."""

    start: datetime
    end: datetime
    period: str | None = None


# An EC2 instance appears in CUR as `i-0abc...` and in some FOCUS exports as its ARN; usage rollups
# carry the bare instance id.
def resource_key_sql(column: str) -> str:
    return f"regexp_replace({column}, '^arn:aws[a-z-]*:ec2:[^:]*:[0-9]*:instance/', '')"


# --- helpers ---------------------------------------------------------------------------------------


def _table(con: duckdb.DuckDBPyConnection, name: str, sql: str) -> str:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
    return name


def tag_value_sql(tags: str, key: str) -> str:
    """The tag `key` as SPEC §6 normalizes it: `team` matches `team`, `user:team`, `user_team` (any
    case); the value trimmed and lower-cased; empty means untagged."""
    k = key.strip().lower()
    spellings = ", ".join(literal(s) for s in (k, f"user:{k}", f"user_{k}"))
    return (
        f"NULLIF(lower(trim(list_filter(map_entries({tags}), "
        f"lambda e: lower(e.key) IN ({spellings}) AND NULLIF(trim(e.value), '') IS NOT NULL)[1].value)), '')"
    )


def telescoped(amount: str, cumulative: str, previous: str) -> str:
    """The part of `amount` between two cumulative fractions, rounded so that parts sum exactly."""
    return f"(CAST({amount} * {cumulative} AS {MONEY}) - CAST({amount} * {previous} AS {MONEY}))"


def naive_utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def month_window(period: str) -> Window:
    try:
        start = datetime.strptime(period, "%Y-%m")
    except ValueError as exc:
        raise GpulensError(f"period {period!r} is not YYYY-MM", field="period") from exc
    end = (start + timedelta(days=32)).replace(day=1)
    return Window(start, end, period)


# --- step 1: the lines of the window, with team and cluster ------------------------------------------


def window_lines(con: duckdb.DuckDBPyConnection, window: Window, options: Options) -> str:
    """_a_lines: every line of the window with its cost (amortized or billed), team and cluster.

    A billing period takes its lines whole; any other window takes the part of each line's usage
    window that overlaps it, prorated by time (a zero-length line counts where it starts).
    """
    cost = "amortized_cost" if options.basis == "amortized" else "unblended_cost"
    start, end = literal(window.start.isoformat(sep=" ")), literal(window.end.isoformat(sep=" "))
    if window.period is not None:
        where = f"billing_period = {literal(window.period)}"
        clip_start, clip_end, fraction = "usage_start", "usage_end", "1.0"
    else:
        where = (
            f"(usage_start < {end}::TIMESTAMP AND usage_end > {start}::TIMESTAMP) OR "
            f"(usage_start = usage_end AND usage_start >= {start}::TIMESTAMP AND usage_start < {end}::TIMESTAMP)"
        )
        clip_start = f"greatest(usage_start, {start}::TIMESTAMP)"
        clip_end = f"least(usage_end, {end}::TIMESTAMP)"
        fraction = (
            f"CASE WHEN usage_end = usage_start THEN 1.0 ELSE "
            f"epoch(least(usage_end, {end}::TIMESTAMP) - greatest(usage_start, {start}::TIMESTAMP)) "
            f"/ epoch(usage_end - usage_start) END"
        )
    return _table(
        con,
        "_a_lines",
        f"""
        SELECT row_number() OVER () AS line_no,
               {clip_start} AS usage_start, {clip_end} AS usage_end,
               resource_id, {resource_key_sql("resource_id")} AS resource_key, instance_type, line_item_type, product_code, currency,
               {tag_value_sql("tags", options.tag_key)} AS team,
               {tag_value_sql("tags", options.cluster_tag_key)} AS cluster,
               CAST({cost} * {fraction} AS {MONEY}) AS cost,
               CAST(unblended_cost * {fraction} AS {MONEY}) AS billed
        FROM cost_line_items WHERE {where}""",
    )


# --- step 2: usage of the window ---------------------------------------------------------------------


def window_usage(con: duckdb.DuckDBPyConnection, window: Window) -> str:
    """_a_usage: hourly GPU usage in the window; team and cluster normalized like tags; `busy` is the
    mean SM activity, or the coarse utilization where SM activity is unmeasured (NULL: unknown)."""
    return _table(
        con,
        "_a_usage",
        f"""
        SELECT hour, node, instance_id, NULLIF(lower(trim(cluster)), '') AS cluster, gpu, gpu_uuid, model, job_id,
               NULLIF(lower(trim(team)), '') AS team, gpu_seconds, sm_active, utilization,
               coalesce(sm_active, utilization) AS busy
        FROM gpu_usage_hourly
        WHERE hour >= {literal(window.start.isoformat(sep=" "))}::TIMESTAMP
          AND hour < {literal(window.end.isoformat(sep=" "))}::TIMESTAMP""",
    )


def gpu_counts(con: duckdb.DuckDBPyConnection, lines: str, usage: str) -> str:
    """_a_gpus: GPUs per instance: AWS's table by instance type, else distinct GPUs seen."""
    known = ", ".join(f"({literal(k)}, {v})" for k, v in GPUS_PER_INSTANCE.items())
    return _table(
        con,
        "_a_gpus",
        f"""
        WITH types(instance_type, gpus) AS (VALUES {known}),
        seen AS (SELECT instance_id, count(DISTINCT coalesce(gpu_uuid, CAST(gpu AS VARCHAR))) AS gpus
                 FROM {usage} GROUP BY instance_id),
        typed AS (SELECT resource_key AS instance_id, max(t.gpus) AS gpus
                  FROM {lines} l JOIN types t ON lower(l.instance_type) = t.instance_type GROUP BY 1)
        SELECT s.instance_id, coalesce(t.gpus, s.gpus) AS gpus
        FROM seen s LEFT JOIN typed t USING (instance_id)""",
    )


# --- step 3: GPU instance lines, cut into hours, split by GPU-seconds ----------------------------------


def _pieces(lines: str, unit: Literal["hour", "day"]) -> str:
    """SQL: the lines of the query `lines` (with line_no, usage_start, usage_end, cost) cut at UTC `unit`
    boundaries, one row per piece with `{unit}`, `piece_seconds` and `piece_cost`. The pieces' costs
    are telescoped over the running seconds, so they add up to the line's cost exactly; a zero-length
    line is one piece, a whole `unit` long, carrying all its cost."""
    return f"""
        WITH cut AS (
            SELECT l.*, p.{unit},
                   CASE WHEN l.usage_end = l.usage_start THEN epoch(INTERVAL 1 {unit}) ELSE
                        epoch(least(l.usage_end, p.{unit} + INTERVAL 1 {unit}) - greatest(l.usage_start, p.{
        unit
    }))
                        END AS piece_seconds,
                   greatest(epoch(l.usage_end - l.usage_start), 0.0) AS line_seconds
            FROM ({lines}) l,
                 LATERAL (SELECT unnest(generate_series(date_trunc('{unit}', l.usage_start),
                          greatest(l.usage_end - INTERVAL 1 MICROSECOND, l.usage_start), INTERVAL 1 {unit}))
                          AS {unit}) p
        ),
        running AS (
            SELECT *, sum(piece_seconds) OVER w AS done FROM cut
            WINDOW w AS (PARTITION BY line_no ORDER BY {unit} ROWS UNBOUNDED PRECEDING)
        )
        SELECT *, {
        telescoped(
            "cost",
            "CASE WHEN line_seconds = 0 THEN 1.0 ELSE done / line_seconds END",
            "CASE WHEN line_seconds = 0 THEN 0.0 ELSE (done - piece_seconds) / line_seconds END",
        )
    } AS piece_cost
        FROM running"""


def gpu_line_hours(con: duckdb.DuckDBPyConnection, lines: str, gpus: str) -> str:
    """_a_gpu_hours: lines of instances with usage rollups, cut at UTC hour boundaries."""
    pieces = _pieces(
        f"SELECT l.*, g.gpus FROM {lines} l JOIN {gpus} g ON l.resource_key = g.instance_id", "hour"
    )
    return _table(
        con,
        "_a_gpu_hours",
        f"""
        SELECT line_no, resource_id, resource_key, team AS line_team, line_item_type, product_code, gpus, hour,
               piece_seconds, piece_cost AS cost
        FROM ({pieces})""",
    )


def gpu_time_cost(con: duckdb.DuckDBPyConnection, gpu_hours: str, usage: str) -> str:
    """_a_gpu_time: the cost of each job's GPU time in each piece (SPEC §6):
    piece cost x team_gpu_seconds / (gpus_on_instance x piece seconds); usage beyond capacity
    (a wrong GPU count) scales down so that shares never exceed the piece.

    Several lines can cover one instance-hour (SavingsPlanCoveredUsage and its SavingsPlanNegation,
    a DiscountedUsage beside a data-transfer line of the same instance): each line's cost is split by
    the usage, but the usage itself is counted once. `counted` is the usage row's GPU-seconds spread
    over the pieces of its instance-hour by their length, so they add up to the row's seconds however
    many lines there are. Waste follows cost: each piece's share x (1 - busy), so a zero-cost
    negation line adds none, and the instance-hour's waste is its amortized cost's share x (1 - busy)."""
    return _table(
        con,
        "_a_gpu_time",
        f"""
        WITH covered AS (
            SELECT resource_key, hour, sum(piece_seconds) AS covered FROM {gpu_hours} GROUP BY ALL
        ),
        held AS (
            SELECT p.line_no, p.hour, p.resource_key AS instance_id, u.team, u.job_id, u.gpu, u.busy,
                   u.gpu_seconds * p.piece_seconds / 3600.0 AS seconds,
                   u.gpu_seconds * p.piece_seconds / c.covered AS counted
            FROM {gpu_hours} p JOIN {usage} u ON u.instance_id = p.resource_key AND u.hour = p.hour
                 JOIN covered c ON c.resource_key = p.resource_key AND c.hour = p.hour
        ),
        capacity AS (
            SELECT p.line_no, p.hour, p.cost,
                   greatest(p.gpus * p.piece_seconds, coalesce(sum(h.seconds), 0)) AS capacity
            FROM {gpu_hours} p LEFT JOIN held h USING (line_no, hour)
            GROUP BY p.line_no, p.hour, p.cost, p.gpus, p.piece_seconds
        )
        SELECT h.line_no, h.hour, h.instance_id, h.gpu, h.team, h.job_id, h.seconds, h.counted,
               CAST(c.cost * (h.seconds / c.capacity) AS {MONEY}) AS cost,
               CAST(c.cost * (h.seconds / c.capacity) * greatest(1.0 - coalesce(h.busy, 1.0), 0.0) AS {MONEY}) AS waste
        FROM held h JOIN capacity c USING (line_no, hour)""",
    )


def gpu_rows(con: duckdb.DuckDBPyConnection, gpu_hours: str, gpu_time: str) -> str:
    """_a_gpu_rows: direct pieces whole to the tag's team; untagged pieces to the jobs that held the
    GPUs (shared_gpu, or unallocated when the job has no team) and the remainder to idle. Waste and
    GPU-seconds go to the team that held the GPU, the GPU-seconds once per usage row (`counted`).
    Summed per UTC day (the hours were only for the split)."""
    return _table(
        con,
        "_a_gpu_rows",
        f"""
        WITH jobs AS (
            SELECT t.* EXCLUDE (instance_id, gpu), p.line_team, p.resource_id, p.line_item_type, p.product_code
            FROM {gpu_time} t JOIN {gpu_hours} p USING (line_no, hour)
        ),
        held AS (SELECT line_no, hour, sum(cost) AS held FROM {gpu_time} GROUP BY ALL),
        parts AS (
        -- direct: the whole piece to the tagged team
        SELECT hour, line_team AS team, 'direct' AS category, NULL AS job_id, resource_id, line_item_type,
               product_code, cost, CAST(0 AS {MONEY}) AS waste, 0.0 AS gpu_seconds
        FROM {gpu_hours} WHERE line_team IS NOT NULL
        UNION ALL
        -- what the jobs on a tagged instance held: no money moves, waste and hours are measured
        SELECT hour, team, 'direct', job_id, resource_id, line_item_type, product_code,
               CAST(0 AS {MONEY}), waste, counted
        FROM jobs WHERE line_team IS NOT NULL
        UNION ALL
        SELECT hour, team, CASE WHEN team IS NULL THEN 'unallocated' ELSE 'shared_gpu' END, job_id, resource_id,
               line_item_type, product_code, cost, waste, counted
        FROM jobs WHERE line_team IS NULL
        UNION ALL
        SELECT p.hour, NULL, 'idle', NULL, p.resource_id, p.line_item_type, p.product_code,
               p.cost - coalesce(h.held, 0), CAST(0 AS {MONEY}), 0.0
        FROM {gpu_hours} p LEFT JOIN held h USING (line_no, hour) WHERE p.line_team IS NULL)
        SELECT CAST(hour AS DATE) AS day, team, category, job_id, resource_id, line_item_type, product_code,
               sum(cost) AS cost, sum(waste) AS waste, sum(gpu_seconds) AS gpu_seconds
        FROM parts GROUP BY ALL""",
    )


# --- step 4: every other line, cut into days ----------------------------------------------------------


def other_line_days(con: duckdb.DuckDBPyConnection, lines: str, gpus: str) -> str:
    """_a_other_days: lines of resources without usage rollups, cut at UTC day boundaries."""
    pieces = _pieces(
        f"SELECT * FROM {lines} WHERE resource_key IS NULL OR resource_key NOT IN (SELECT instance_id FROM {gpus})",
        "day",
    )
    return _table(
        con,
        "_a_other_days",
        f"""
        SELECT line_no, day, resource_id, team, cluster, line_item_type, product_code, piece_cost AS cost
        FROM ({pieces})""",
    )


def _team_shares(usage: str, group: str) -> str:
    """SQL: each team's running fraction of its `group`'s GPU-seconds in `usage`, as (`group`, team,
    since, upto) with the last team's `upto` exactly 1, for `telescoped` splits that add up."""
    return f"""
        WITH s AS (SELECT {group}, team, sum(gpu_seconds) AS seconds FROM {usage}
                   WHERE {group} IS NOT NULL AND team IS NOT NULL GROUP BY ALL HAVING sum(gpu_seconds) > 0),
        r AS (SELECT *, sum(seconds) OVER (PARTITION BY {group} ORDER BY team ROWS UNBOUNDED PRECEDING) AS done,
                     sum(seconds) OVER (PARTITION BY {group}) AS total,
                     row_number() OVER (PARTITION BY {group} ORDER BY team DESC) = 1 AS last
              FROM s)
        SELECT {group}, team, CASE WHEN last THEN 1.0 ELSE done / total END AS upto,
               (done - seconds) / total AS since
        FROM r"""


def cluster_shares(con: duckdb.DuckDBPyConnection, usage: str) -> str:
    """_a_cluster_shares: each team's running fraction of its cluster's GPU-seconds in the window."""
    return _table(con, "_a_cluster_shares", _team_shares(usage, "cluster"))


def other_rows(con: duckdb.DuckDBPyConnection, other_days: str, shares: str) -> str:
    """_a_other_rows: direct by tag; shared_other by the cluster's GPU-seconds; the rest unallocated."""
    return _table(
        con,
        "_a_other_rows",
        f"""
        SELECT CAST(day AS DATE) AS day, team, 'direct' AS category, NULL AS job_id, resource_id, line_item_type,
               product_code, cost, CAST(0 AS {MONEY}) AS waste, 0.0 AS gpu_seconds
        FROM {other_days} WHERE team IS NOT NULL
        UNION ALL
        SELECT o.day, s.team, 'shared_other', NULL, o.resource_id, o.line_item_type, o.product_code,
               {telescoped("o.cost", "s.upto", "s.since")}, CAST(0 AS {MONEY}), 0.0
        FROM {other_days} o JOIN {shares} s ON o.cluster = s.cluster WHERE o.team IS NULL
        UNION ALL
        SELECT day, NULL, 'unallocated', NULL, resource_id, line_item_type, product_code, cost,
               CAST(0 AS {MONEY}), 0.0
        FROM {other_days}
        WHERE team IS NULL AND (cluster IS NULL OR cluster NOT IN (SELECT cluster FROM {shares}))""",
    )


# --- step 5: --idle share ---------------------------------------------------------------------------


def idle_shared(con: duckdb.DuckDBPyConnection, rows: str, usage: str) -> str:
    """_a_idle_shared: idle of each instance spread over its teams by their GPU-seconds in the window
    (`--idle share`); idle of an instance no team used stays idle."""
    return _table(
        con,
        "_a_idle_shared",
        f"""
        WITH r AS ({_team_shares(usage, "instance_id")})
        SELECT i.day, r.team, 'shared_gpu' AS category, NULL AS job_id, i.resource_id, i.line_item_type,
               i.product_code, {telescoped("i.cost", "r.upto", "r.since")} AS cost,
               CAST(0 AS {MONEY}) AS waste, 0.0 AS gpu_seconds
        FROM {rows} i JOIN r ON {resource_key_sql("i.resource_id")} = r.instance_id WHERE i.category = 'idle'
        UNION ALL
        SELECT * FROM {rows}
        WHERE category <> 'idle' OR {resource_key_sql("resource_id")} NOT IN (SELECT instance_id FROM r)""",
    )


# --- a job's GPU time, priced --------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuTimeCost:
    """Temp tables of one window's priced GPU time: `cost` (`gpu_time_cost`'s rows: line_no, hour,
    instance_id, gpu, team, job_id, seconds, counted, cost, waste) and the `usage` it was priced from."""

    cost: str
    usage: str


def job_gpu_cost(con: duckdb.DuckDBPyConnection, window: Window, options: Options = Options()) -> GpuTimeCost:
    """The cost of each (job, GPU, hour) of GPU time in `window`, on tagged and shared instances alike,
    priced by the same steps as the allocation (so waste in `flags` and spend in the report agree)."""
    lines = window_lines(con, window, options)
    usage = window_usage(con, window)
    gpu_hours = gpu_line_hours(con, lines, gpu_counts(con, lines, usage))
    return GpuTimeCost(gpu_time_cost(con, gpu_hours, usage), usage)


def job_cost_since(
    con: duckdb.DuckDBPyConnection, priced: GpuTimeCost, job_id: str, since: datetime
) -> Decimal:
    """What `job_id`'s GPU time in `priced` cost from the hour `since` (naive UTC) on; 0 when none."""
    row = con.execute(
        f"SELECT coalesce(sum(cost), 0) FROM {priced.cost} WHERE job_id = ? AND hour >= ?", [job_id, since]
    ).fetchone()
    return Decimal(row[0]) if row else Decimal(0)


# --- the whole split ---------------------------------------------------------------------------------


def allocation_rows(con: duckdb.DuckDBPyConnection, window: Window, options: Options) -> str:
    """_a_rows: the allocation of the window, per day, team, category, job and resource."""
    lines = window_lines(con, window, options)
    usage = window_usage(con, window)
    gpus = gpu_counts(con, lines, usage)
    gpu_hours = gpu_line_hours(con, lines, gpus)
    gpu = gpu_rows(con, gpu_hours, gpu_time_cost(con, gpu_hours, usage))
    other = other_rows(con, other_line_days(con, lines, gpus), cluster_shares(con, usage))
    both = _table(con, "_a_both", f"SELECT * FROM {gpu} UNION ALL SELECT * FROM {other}")
    if options.idle == "share":
        both = idle_shared(con, both, usage)
    return _table(
        con,
        "_a_rows",
        f"""
        SELECT day, team, category, job_id, resource_id, line_item_type, product_code,
               sum(cost) AS cost, sum(waste) AS waste, sum(gpu_seconds) AS gpu_seconds
        FROM {both} GROUP BY ALL""",
    )


def _currency(con: duckdb.DuckDBPyConnection, lines: str) -> str:
    found = [r[0] for r in con.execute(f"SELECT DISTINCT currency FROM {lines} ORDER BY 1").fetchall()]
    if len(found) > 1:
        raise GpulensError(
            f"the window mixes currencies ({', '.join(found)}); allocate each billing account's currency apart"
        )
    return found[0] if found else "USD"


def team_costs(con: duckdb.DuckDBPyConnection, rows: str, usage: str) -> tuple[TeamCost, ...]:
    """Per team: direct and shared money, waste, and GPU hours measured from all its usage."""
    found = con.execute(f"""
        WITH money AS (
            SELECT team, sum(cost) FILTER (WHERE category = 'direct') AS direct,
                   sum(cost) FILTER (WHERE category IN ('shared_gpu', 'shared_other')) AS shared,
                   sum(waste) AS waste
            FROM {rows} WHERE team IS NOT NULL GROUP BY team),
        hours AS (SELECT team, sum(gpu_seconds) / 3600.0 AS gpu_hours FROM {usage}
                  WHERE team IS NOT NULL GROUP BY team)
        SELECT team, coalesce(direct, 0), coalesce(shared, 0), coalesce(gpu_hours, 0), coalesce(waste, 0)
        FROM money FULL JOIN hours USING (team)""").fetchall()
    teams = [
        TeamCost(
            team=t,
            direct=Decimal(d),
            shared=Decimal(s),
            gpu_hours=Decimal(str(round(h, 6))),
            waste=Decimal(w),
        )
        for t, d, s, h, w in found
    ]
    return tuple(sorted(teams, key=lambda t: (-t.total, t.team)))


def unallocated_lines(con: duckdb.DuckDBPyConnection, rows: str) -> tuple[UnallocatedLine, ...]:
    found = con.execute(f"""
        SELECT resource_id, line_item_type, product_code, sum(cost) AS cost FROM {rows}
        WHERE category = 'unallocated' GROUP BY ALL ORDER BY abs(sum(cost)) DESC, 1, 2""").fetchall()
    return tuple(UnallocatedLine(r, t, p, Decimal(c)) for r, t, p, c in found)


def _allocation(con: duckdb.DuckDBPyConnection, window: Window, options: Options, label: str) -> Allocation:
    rows = allocation_rows(con, window, options)
    total, billed = con.execute(
        "SELECT coalesce(sum(cost), 0), coalesce(sum(billed), 0) FROM _a_lines"
    ).fetchone() or (0, 0)
    by_kind = dict(
        con.execute(
            f"SELECT category, sum(cost) FROM {rows} WHERE category IN ('idle', 'unallocated') GROUP BY 1"
        ).fetchall()
    )
    return Allocation(
        period=label,
        currency=_currency(con, "_a_lines"),
        basis=options.basis,
        teams=team_costs(con, rows, "_a_usage"),
        idle=Decimal(by_kind.get("idle", 0)),
        unallocated=Decimal(by_kind.get("unallocated", 0)),
        total=Decimal(total),
        billed_total=Decimal(billed),
        unallocated_lines=unallocated_lines(con, rows),
    )


# --- public API --------------------------------------------------------------------------------------


def allocate(
    con: duckdb.DuckDBPyConnection,
    start: datetime,
    end: datetime,
    *,
    tag_key: str = "team",
    cluster_tag_key: str = "cluster",
    idle: IdleMode = "separate",
    basis: Basis = "amortized",
    label: str | None = None,
) -> Allocation:
    """Allocates the cost of the UTC window [start, end): each line counts for the part of its usage
    window inside it. Raises `InvariantViolation` if the result does not reconcile."""
    window = Window(naive_utc(start), naive_utc(end))
    options = Options(tag_key, cluster_tag_key, idle, basis)
    return _allocation(con, window, options, label or f"{window.start:%Y-%m-%d}/{window.end:%Y-%m-%d}")


def allocate_period(
    con: duckdb.DuckDBPyConnection,
    period: str,
    *,
    tag_key: str = "team",
    cluster_tag_key: str = "cluster",
    idle: IdleMode = "separate",
    basis: Basis = "amortized",
    label: str | None = None,
) -> Allocation:
    """Allocates billing period `YYYY-MM`: all its lines, whole (the invoice's total)."""
    options = Options(tag_key, cluster_tag_key, idle, basis)
    return _allocation(con, month_window(period), options, label or period)


def daily_allocations(
    con: duckdb.DuckDBPyConnection,
    start: datetime,
    end: datetime,
    *,
    tag_key: str = "team",
    cluster_tag_key: str = "cluster",
    idle: IdleMode = "separate",
    basis: Basis = "amortized",
    label: str | None = None,
) -> list[DailyAllocation]:
    """The allocation of [start, end) as rows per UTC day, team, category, job and resource
    (`label` is accepted for symmetry with `allocate` and unused)."""
    window = Window(naive_utc(start), naive_utc(end))
    rows = allocation_rows(con, window, Options(tag_key, cluster_tag_key, idle, basis))
    return _daily(con, rows)


def _daily(con: duckdb.DuckDBPyConnection, rows: str) -> list[DailyAllocation]:
    found = con.execute(f"""
        SELECT day, team, category, job_id, resource_id, sum(cost), sum(waste), sum(gpu_seconds) FROM {rows}
        GROUP BY ALL ORDER BY day, category, team NULLS LAST, job_id NULLS LAST, resource_id NULLS LAST""").fetchall()
    return [
        DailyAllocation(
            day=d,
            team=t,
            category=c,
            job_id=j,
            resource_id=r,
            cost=Decimal(m),
            waste=Decimal(w),
            gpu_seconds=float(s),
        )
        for d, t, c, j, r, m, w, s in found
    ]


def store_allocations(
    con: duckdb.DuckDBPyConnection,
    period: str,
    *,
    tag_key: str = "team",
    cluster_tag_key: str = "cluster",
    idle: IdleMode = "separate",
    basis: Basis = "amortized",
    now: datetime | None = None,
) -> Allocation:
    """Allocates `period` and replaces its rows (for that basis) in the `allocations` table, in one
    transaction; returns the allocation. The explorer and the report read the table."""
    allocation = allocate_period(
        con, period, tag_key=tag_key, cluster_tag_key=cluster_tag_key, idle=idle, basis=basis
    )
    stamp = naive_utc(now or datetime.now(timezone.utc))
    con.begin()
    try:
        con.execute("DELETE FROM allocations WHERE period = ? AND basis = ?", [period, basis])
        con.execute(
            """INSERT INTO allocations (period, basis, day, team, category, job_id, resource_id, cost, waste,
                                        gpu_seconds, currency, computed_at)
               SELECT ?, ?, day, team, category, job_id, resource_id, sum(cost), sum(waste), sum(gpu_seconds), ?, ?
               FROM _a_rows GROUP BY day, team, category, job_id, resource_id""",
            [period, basis, allocation.currency, stamp],
        )
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return allocation
