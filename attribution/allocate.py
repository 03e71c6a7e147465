"""Allocation (docs/design.md §6): the only place money is split.

Each step below is a function named for the table it produces, whose inputs are the tables it
reads (passed by name, never looked up by a fixed name); each materializes one TEMP table on the
caller's connection (read-only connections allow temp tables), so a month is split inside DuckDB,
never in Python. Money stays DECIMAL(38, 10). Every split is exact: a piece of money is cut with a
running sum (`telescoped`), so the parts add up to the whole to the last digit and the invariant
(teams + idle + unallocated = total) holds by construction; `Allocation.__post_init__` checks it anyway.

Order (docs/design.md §6): direct (team tag) -> shared GPU (usage split inside each line's own
window by billed instance-seconds, the rest idle; SageMaker training jobs and HyperPod nodes like
EC2; Capacity Block and capacity-reservation charges over the instances that ran in them) ->
shared other (cluster tag, split by the cluster's GPU-seconds) -> unallocated.
"""

from __future__ import annotations

import re
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

# Services whose spend is the data behind training (data sets, checkpoints), shown beside GPU cost
# per team: CUR product codes and FOCUS service names, lower-cased.
STORAGE_PRODUCTS = (
    "amazonfsx", "amazons3", "amazonefs", "amazon fsx", "amazon simple storage service",
    "amazon elastic file system",
)  # fmt: skip


@dataclass(frozen=True)
class Options:
    """How to allocate: which tags name teams and clusters, idle kept apart or shared, which cost,
    and (where payers bill in several currencies) which currency's lines."""

    tag_key: str = "team"
    cluster_tag_key: str = "cluster"
    idle: IdleMode = "separate"
    basis: Basis = "amortized"
    currency: str | None = None


@dataclass(frozen=True)
class Window:
    """[start, end) in naive UTC; `period` set when the lines are chosen by billing period."""

    start: datetime
    end: datetime
    period: str | None = None


def resource_key_sql(column: str) -> str:
    """The key that matches a CUR line's resource to usage rows' `instance_id` (both sides go
    through it): lower-cased; an EC2 instance ARN (some FOCUS exports) becomes its bare `i-...` id;
    a SageMaker training-job ARN becomes the job's name, so a rollup may carry either
    (docs/attribution.md, "SageMaker"). Any other id (a HyperPod cluster ARN, fs-1) is kept whole."""
    ec2 = f"regexp_replace({column}, '^arn:aws[a-z-]*:ec2:[^:]*:[0-9]*:instance/', '')"
    return f"lower(regexp_replace({ec2}, '^arn:aws[a-z-]*:sagemaker:[^:]*:[0-9]*:training-job/', ''))"


def reservation_key_sql(column: str) -> str:
    """A capacity reservation's id (`cr-...`) from its ARN or id, lower-cased."""
    return f"NULLIF(lower(regexp_extract({column}, 'cr-[0-9A-Za-z]+')), '')"


# The line's instance type: the export's column, else the one its usage type names
# (`BoxUsage:p4d.24xlarge`, `USE1-Train:ml.p4d.24xlarge`, `UnusedBox:p5.48xlarge`).
INSTANCE_TYPE_SQL = (
    "lower(coalesce(NULLIF(trim(instance_type), ''), "
    "NULLIF(regexp_extract(usage_type, ':((ml\\.)?[a-z][a-z0-9-]*\\.[0-9a-z]+)$', 1), '')))"
)


# --- helpers ---------------------------------------------------------------------------------------


def _table(con: duckdb.DuckDBPyConnection, name: str, sql: str) -> str:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
    return name


def tag_value_sql(tags: str, key: str) -> str:
    """The tag `key` as docs/design.md §6 normalizes it: `team` matches `team`, `user:team`,
    `user_team` (any case); the value trimmed and lower-cased; empty means untagged."""
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


_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def month_window(period: str) -> Window:
    """The billing period `YYYY-MM` (two-digit month: `2024-9` is refused, not read as September)."""
    if not _PERIOD.match(period):
        raise GpulensError(f"period {period!r} is not YYYY-MM (e.g. 2026-09)", field="period")
    start = datetime.strptime(period, "%Y-%m")
    end = (start + timedelta(days=32)).replace(day=1)
    return Window(start, end, period)


# --- step 1: the lines of the window, with team, cluster and what they bill --------------------------


def window_lines(con: duckdb.DuckDBPyConnection, window: Window, options: Options) -> str:
    """_a_lines: every line of the window with its cost (amortized or billed), team and cluster.

    A billing period takes its lines whole; any other window takes the part of each line's usage
    window that overlaps it, prorated by time (a zero-length line counts where it starts).
    `instances` is how many instances the line bills over its window: its usage amount in hours
    over the window's hours for instance usage (a daily line billing 6 instance-hours: 0.25; an
    hour from 00:30: 0.5; a Capacity Block of 4 instances: 4), else 1. A capacity-reservation line
    (the reservation's own charge, not an instance's) has `reservation` set; `unused` marks the
    unused part of an On-Demand Capacity Reservation, which no one held.
    """
    cost = "amortized_cost" if options.basis == "amortized" else "unblended_cost"
    start, end = literal(window.start.isoformat(sep=" ")), literal(window.end.isoformat(sep=" "))
    if window.period is not None:
        where = f"billing_period = {literal(window.period)}"
        clip_start, clip_end, fraction = "usage_start", "usage_end", "1.0"
    else:
        where = (
            f"((usage_start < {end}::TIMESTAMP AND usage_end > {start}::TIMESTAMP) OR "
            f"(usage_start = usage_end AND usage_start >= {start}::TIMESTAMP "
            f"AND usage_start < {end}::TIMESTAMP))"
        )
        clip_start = f"greatest(usage_start, {start}::TIMESTAMP)"
        clip_end = f"least(usage_end, {end}::TIMESTAMP)"
        fraction = (
            f"CASE WHEN usage_end = usage_start THEN 1.0 ELSE "
            f"epoch(least(usage_end, {end}::TIMESTAMP) - greatest(usage_start, {start}::TIMESTAMP)) "
            f"/ epoch(usage_end - usage_start) END"
        )
    if options.currency is not None:
        where = f"({where}) AND currency = {literal(options.currency.strip().upper())}"
    reservation_line = (
        "(coalesce(resource_id, '') LIKE '%capacity-reservation/%' OR "
        "(resource_id IS NULL AND capacity_reservation_arn IS NOT NULL))"
    )
    return _table(
        con,
        "_a_lines",
        f"""
        WITH l AS (
            SELECT *, {INSTANCE_TYPE_SQL} AS itype,
                   CASE WHEN {reservation_line}
                        THEN {reservation_key_sql("coalesce(capacity_reservation_arn, resource_id)")} END
                       AS reservation
            FROM cost_line_items WHERE {where})
        SELECT row_number() OVER () AS line_no,
               {clip_start} AS usage_start, {clip_end} AS usage_end,
               resource_id, {resource_key_sql("resource_id")} AS resource_key, itype AS instance_type,
               line_item_type, product_code, currency, reservation,
               reservation IS NOT NULL AND (upper(coalesce(capacity_reservation_status, '')) = 'UNUSED'
                   OR coalesce(usage_type, '') ILIKE '%UnusedBox%' OR coalesce(usage_type, '') ILIKE
                       '%UnusedDed%')
                   AS unused,
               CASE WHEN itype IS NOT NULL AND usage_amount > 0 AND usage_end > usage_start
                    THEN usage_amount * 3600.0 / epoch(usage_end - usage_start) ELSE 1.0 END AS
                        billed_instances,
               {tag_value_sql("tags", options.tag_key)} AS team,
               {tag_value_sql("tags", options.cluster_tag_key)} AS cluster,
               CAST({cost} * {fraction} AS {MONEY}) AS cost,
               CAST(unblended_cost * {fraction} AS {MONEY}) AS billed
        FROM l""",
    )


# --- step 2: usage -----------------------------------------------------------------------------------


def usage_between(con: duckdb.DuckDBPyConnection, name: str, start: datetime, end: datetime) -> str:
    """`name`: hourly GPU usage in [start, end); team and cluster normalized like tags; `host` is the
    usage row's instance key (`resource_key_sql`); `busy` is the mean SM activity, or the coarse
    utilization where SM activity is unmeasured (NULL: unknown)."""
    return _table(
        con,
        name,
        f"""
        SELECT hour, node, instance_id, {resource_key_sql("instance_id")} AS host,
               NULLIF(lower(trim(cluster)), '') AS cluster, gpu, gpu_uuid, model, job_id,
               NULLIF(lower(trim(team)), '') AS team, gpu_seconds, sm_active, utilization,
               coalesce(sm_active, utilization) AS busy
        FROM gpu_usage_hourly
        WHERE hour >= {literal(start.isoformat(sep=" "))}::TIMESTAMP
          AND hour < {literal(end.isoformat(sep=" "))}::TIMESTAMP""",
    )


def window_usage(con: duckdb.DuckDBPyConnection, window: Window) -> str:
    """_a_usage: hourly GPU usage in the window (GPU hours and the cluster shares of the period)."""
    return usage_between(con, "_a_usage", window.start, window.end)


def line_usage(con: duckdb.DuckDBPyConnection, window: Window, lines: str) -> str:
    """_a_line_usage: the usage inside the lines' own windows, which a billing period's lines may
    reach beyond the month (a Capacity Block bought in September for October)."""
    found = con.execute(f"SELECT min(usage_start), max(usage_end) FROM {lines}").fetchone()
    start = min(window.start, found[0]) if found and found[0] is not None else window.start
    end = max(window.end, found[1]) if found and found[1] is not None else window.end
    return usage_between(con, "_a_line_usage", start, end)


def line_hosts(con: duckdb.DuckDBPyConnection, lines: str) -> str:
    """_a_hosts: the usage keys whose GPU time each line bills: an instance's (or SageMaker job's)
    own lines bill it; a capacity-reservation charge bills every instance whose lines name that
    reservation, in any period (a block's fee is billed before its instances run); the unused part
    of a reservation bills no one."""
    return _table(
        con,
        "_a_hosts",
        f"""
        SELECT line_no, resource_key AS host FROM {lines} WHERE reservation IS NULL AND resource_key IS NOT
            NULL
        UNION
        SELECT l.line_no, m.host
        FROM {lines} l JOIN (
            SELECT DISTINCT {resource_key_sql("resource_id")} AS host,
                   {reservation_key_sql("capacity_reservation_arn")} AS reservation
            FROM cost_line_items
            WHERE capacity_reservation_arn IS NOT NULL AND resource_id IS NOT NULL
              AND resource_id NOT LIKE '%capacity-reservation/%') m USING (reservation)
        WHERE NOT l.unused""",
    )


def gpu_counts(con: duckdb.DuckDBPyConnection, lines: str, hosts: str, usage: str) -> str:
    """_a_gpus: the lines split by GPU time, with GPUs per instance: AWS's count for the line's own
    instance type (an instance resized mid-month changes its count), else the count of its host's
    other typed lines, else the distinct GPUs seen on the host. A line is split by GPU time when
    usage rollups exist for one of its hosts, or when it is a capacity-reservation charge (the
    reserved GPU-hours no one held are idle)."""
    known = ", ".join(f"({literal(k)}, {v})" for k, v in GPUS_PER_INSTANCE.items())
    return _table(
        con,
        "_a_gpus",
        f"""
        WITH types(instance_type, gpus) AS (VALUES {known}),
        seen AS (SELECT host, count(DISTINCT coalesce(gpu_uuid, coalesce(node, '') || '/' || CAST(gpu AS
            VARCHAR)))
                     AS gpus
                 FROM {usage} WHERE host IS NOT NULL GROUP BY host),
        typed_host AS (SELECT h.host, max(t.gpus) AS gpus FROM {hosts} h JOIN {lines} l USING (line_no)
                       JOIN types t ON l.instance_type = t.instance_type GROUP BY h.host),
        per_line AS (SELECT h.line_no, max(coalesce(th.gpus, s.gpus)) AS gpus, count(s.host) AS with_usage
                     FROM {hosts} h LEFT JOIN typed_host th USING (host) LEFT JOIN seen s USING (host)
                     GROUP BY h.line_no)
        SELECT l.line_no, coalesce(t.gpus, p.gpus, 1) AS gpus
        FROM {lines} l LEFT JOIN per_line p USING (line_no) LEFT JOIN types t ON l.instance_type =
            t.instance_type
        WHERE coalesce(p.with_usage, 0) > 0 OR l.reservation IS NOT NULL""",
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
    """_a_gpu_hours: the lines split by GPU time, cut at UTC hour boundaries, with their capacity:
    GPUs per instance x the piece's seconds x the instances the line bills (at least one for a
    capacity-reservation charge, whose usage amount may count the fee rather than hours)."""
    pieces = _pieces(
        f"""SELECT l.*, g.gpus,
                   CASE WHEN l.reservation IS NOT NULL THEN greatest(l.billed_instances, 1.0)
                        ELSE l.billed_instances END AS instances
            FROM {lines} l JOIN {gpus} g USING (line_no)""",
        "hour",
    )
    return _table(
        con,
        "_a_gpu_hours",
        f"""
        SELECT line_no, resource_id, team AS line_team, line_item_type, product_code, gpus, instances, hour,
               piece_seconds, piece_cost AS cost, gpus * piece_seconds * instances AS capacity,
               CASE WHEN line_seconds = 0 THEN 1.0 ELSE done / line_seconds END AS upto,
               CASE WHEN line_seconds = 0 THEN 0.0 ELSE (done - piece_seconds) / line_seconds END AS since
        FROM ({pieces})""",
    )


def gpu_time_cost(con: duckdb.DuckDBPyConnection, gpu_hours: str, hosts: str, usage: str) -> str:
    """_a_gpu_time: the cost of each job's GPU time in each piece (docs/design.md §6), split inside
    the line's own window: line cost x GPU-seconds / (gpus_on_instance x the line's billed
    instance-seconds), so a daily line billing 6 instance-hours prices 6 h of GPU time, whichever
    hours they were; usage beyond capacity (a wrong GPU count) scales down so that shares never
    exceed the line.

    Several lines can cover one instance-hour (SavingsPlanCoveredUsage and its SavingsPlanNegation,
    a DiscountedUsage beside a data-transfer line of the same instance, a Capacity Block's fee beside
    the instance's own line): each line's cost is split by the usage, but the usage itself is
    counted once. `counted` is the usage row's GPU-seconds spread over the pieces of its host-hour by
    their length, so they add up to the row's seconds however many lines there are. Waste follows
    cost: each piece's share x (1 - busy), so a zero-cost negation line adds none."""
    return _table(
        con,
        "_a_gpu_time",
        f"""
        WITH hp AS (SELECT p.line_no, p.hour, p.piece_seconds, h.host FROM {gpu_hours} p JOIN {hosts} h
            USING (line_no)),
        covered AS (SELECT host, hour, sum(piece_seconds) AS covered FROM hp GROUP BY ALL),
        held AS (
            SELECT hp.line_no, hp.hour, u.instance_id, u.team, u.job_id, u.gpu, u.busy,
                   u.gpu_seconds * hp.piece_seconds / 3600.0 AS seconds,
                   u.gpu_seconds * hp.piece_seconds / c.covered AS counted
            FROM hp JOIN {usage} u ON u.host = hp.host AND u.hour = hp.hour
                 JOIN covered c ON c.host = hp.host AND c.hour = hp.hour
        ),
        line_held AS (SELECT line_no, sum(seconds) AS seconds FROM held GROUP BY line_no),
        capacity AS (
            SELECT p.line_no, sum(p.cost) AS cost, greatest(sum(p.capacity), any_value(coalesce(l.seconds,
                0)))
                       AS capacity
            FROM {gpu_hours} p LEFT JOIN line_held l USING (line_no)
            GROUP BY p.line_no
        )
        SELECT h.line_no, h.hour, h.instance_id, h.gpu, h.team, h.job_id, h.seconds, h.counted,
               CAST(c.cost * (h.seconds / c.capacity) AS {MONEY}) AS cost,
               CAST(c.cost * (h.seconds / c.capacity) * greatest(1.0 - coalesce(h.busy, 1.0), 0.0) AS
                   {MONEY}) AS waste
        FROM held h JOIN capacity c USING (line_no)""",
    )


def _cost_kind(product_code: str) -> str:
    """SQL: 'storage' for the services behind training data (FSx, S3, EFS), else 'other'."""
    names = ", ".join(literal(p) for p in STORAGE_PRODUCTS)
    return f"CASE WHEN lower(coalesce({product_code}, '')) IN ({names}) THEN 'storage' ELSE 'other' END"


def gpu_rows(con: duckdb.DuckDBPyConnection, gpu_hours: str, gpu_time: str) -> str:
    """_a_gpu_rows: direct pieces whole to the tag's team; untagged pieces to the jobs that held the
    GPUs (shared_gpu, or unallocated when the job has no team) and the remainder to idle. Waste and
    GPU-seconds go to the team that held the GPU, the GPU-seconds once per usage row (`counted`).
    Summed per UTC day (the hours were only for the split); `cost_kind` is 'gpu'."""
    return _table(
        con,
        "_a_gpu_rows",
        f"""
        WITH jobs AS (
            SELECT t.* EXCLUDE (instance_id, gpu), p.line_team, p.resource_id, p.line_item_type,
                p.product_code
            FROM {gpu_time} t JOIN {gpu_hours} p USING (line_no, hour)
        ),
        -- what no job held, spread over the line's window by time (a running sum: it adds up exactly)
        unheld AS (SELECT p.line_no, sum(p.cost) - coalesce(any_value(h.held), 0) AS idle
                   FROM {gpu_hours} p LEFT JOIN (SELECT line_no, sum(cost) AS held FROM {gpu_time} GROUP BY
                       1) h
                        USING (line_no)
                   GROUP BY p.line_no),
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
        SELECT hour, team, CASE WHEN team IS NULL THEN 'unallocated' ELSE 'shared_gpu' END, job_id,
            resource_id,
               line_item_type, product_code, cost, waste, counted
        FROM jobs WHERE line_team IS NULL
        UNION ALL
        SELECT p.hour, NULL, 'idle', NULL, p.resource_id, p.line_item_type, p.product_code,
               {telescoped("u.idle", "p.upto", "p.since")}, CAST(0 AS {MONEY}), 0.0
        FROM {gpu_hours} p JOIN unheld u USING (line_no) WHERE p.line_team IS NULL)
        SELECT CAST(hour AS DATE) AS day, team, category, job_id, resource_id, line_item_type, product_code,
               'gpu' AS cost_kind, sum(cost) AS cost, sum(waste) AS waste, sum(gpu_seconds) AS gpu_seconds
        FROM parts GROUP BY ALL""",
    )


# --- step 4: every other line, cut into days ----------------------------------------------------------


def other_line_days(con: duckdb.DuckDBPyConnection, lines: str, gpus: str) -> str:
    """_a_other_days: the lines not split by GPU time, cut at UTC day boundaries."""
    pieces = _pieces(f"SELECT * FROM {lines} WHERE line_no NOT IN (SELECT line_no FROM {gpus})", "day")
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
        r AS (SELECT *, sum(seconds) OVER (PARTITION BY {group} ORDER BY team ROWS UNBOUNDED PRECEDING) AS
            done,
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
    """_a_other_rows: direct by tag; shared_other by the cluster's GPU-seconds; the rest unallocated.
    `cost_kind` says which of them is storage (FSx, S3, EFS) behind the GPU time."""
    kind = _cost_kind("product_code")
    return _table(
        con,
        "_a_other_rows",
        f"""
        SELECT CAST(day AS DATE) AS day, team, 'direct' AS category, NULL AS job_id, resource_id,
            line_item_type,
               product_code, {kind} AS cost_kind, cost, CAST(0 AS {MONEY}) AS waste, 0.0 AS gpu_seconds
        FROM {other_days} WHERE team IS NOT NULL
        UNION ALL
        SELECT o.day, s.team, 'shared_other', NULL, o.resource_id, o.line_item_type, o.product_code,
               {_cost_kind("o.product_code")}, {telescoped("o.cost", "s.upto", "s.since")}, CAST(0 AS
                   {MONEY}), 0.0
        FROM {other_days} o JOIN {shares} s ON o.cluster = s.cluster WHERE o.team IS NULL
        UNION ALL
        SELECT day, NULL, 'unallocated', NULL, resource_id, line_item_type, product_code, {kind}, cost,
               CAST(0 AS {MONEY}), 0.0
        FROM {other_days}
        WHERE team IS NULL AND (cluster IS NULL OR cluster NOT IN (SELECT cluster FROM {shares}))""",
    )


# --- step 5: --idle share ---------------------------------------------------------------------------


def idle_shared(con: duckdb.DuckDBPyConnection, rows: str, usage: str) -> str:
    """_a_idle_shared: idle of each instance spread over its teams by their GPU-seconds in the window
    (`--idle share`); idle of an instance no team used, and of an unheld reservation, stays idle."""
    return _table(
        con,
        "_a_idle_shared",
        f"""
        WITH r AS ({_team_shares(usage, "host")})
        SELECT i.day, r.team, 'shared_gpu' AS category, NULL AS job_id, i.resource_id, i.line_item_type,
               i.product_code, i.cost_kind, {telescoped("i.cost", "r.upto", "r.since")} AS cost,
               CAST(0 AS {MONEY}) AS waste, 0.0 AS gpu_seconds
        FROM {rows} i JOIN r ON {resource_key_sql("i.resource_id")} = r.host WHERE i.category = 'idle'
        UNION ALL
        SELECT * FROM {rows}
        WHERE category <> 'idle' OR resource_id IS NULL
           OR {resource_key_sql("resource_id")} NOT IN (SELECT host FROM r)""",
    )


# --- a job's GPU time, priced --------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuTimeCost:
    """Temp tables of one window's priced GPU time: `cost` (`gpu_time_cost`'s rows: line_no, hour,
    instance_id, gpu, team, job_id, seconds, counted, cost, waste) and the `usage` it was priced from."""

    cost: str
    usage: str


@dataclass(frozen=True)
class GpuTables:
    lines: str
    usage: str
    hosts: str
    gpus: str
    gpu_hours: str
    gpu_time: str


def _gpu_tables(con: duckdb.DuckDBPyConnection, window: Window, options: Options) -> GpuTables:
    lines = window_lines(con, window, options)
    usage = line_usage(con, window, lines)
    hosts = line_hosts(con, lines)
    gpus = gpu_counts(con, lines, hosts, usage)
    gpu_hours = gpu_line_hours(con, lines, gpus)
    return GpuTables(lines, usage, hosts, gpus, gpu_hours, gpu_time_cost(con, gpu_hours, hosts, usage))


def job_gpu_cost(con: duckdb.DuckDBPyConnection, window: Window, options: Options = Options()) -> GpuTimeCost:
    """The cost of each (job, GPU, hour) of GPU time in `window`, on tagged and shared instances alike,
    priced by the same steps as the allocation (so waste in `flags` and spend in the report agree)."""
    t = _gpu_tables(con, window, options)
    return GpuTimeCost(t.gpu_time, t.usage)


def job_cost_since(
    con: duckdb.DuckDBPyConnection,
    priced: GpuTimeCost,
    job_id: str,
    since: datetime,
    until: datetime | None = None,
) -> Decimal:
    """What `job_id`'s GPU time in `priced` cost from the hour `since` (naive UTC) on, up to the hour
    that holds `until` (included), or to the end of `priced`'s window; 0 when none."""
    row = con.execute(
        f"SELECT coalesce(sum(cost), 0) FROM {priced.cost} WHERE job_id = ? AND hour >= ?"
        " AND (CAST(? AS TIMESTAMP) IS NULL OR hour < ?)",
        [job_id, since, until, until],
    ).fetchone()
    return Decimal(row[0]) if row else Decimal(0)


# --- the whole split ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllocationTables:
    """The temp tables of one allocation: its `lines`, the window's `usage` and the result `rows`
    (per day, team, category, job, resource, product and cost kind)."""

    lines: str
    usage: str
    rows: str


def allocation_tables(con: duckdb.DuckDBPyConnection, window: Window, options: Options) -> AllocationTables:
    """Splits the window; returns the names of the tables it made (callers never guess them)."""
    t = _gpu_tables(con, window, options)
    usage = window_usage(con, window)
    gpu = gpu_rows(con, t.gpu_hours, t.gpu_time)
    other = other_rows(con, other_line_days(con, t.lines, t.gpus), cluster_shares(con, usage))
    both = _table(con, "_a_both", f"SELECT * FROM {gpu} UNION ALL SELECT * FROM {other}")
    if options.idle == "share":
        both = idle_shared(con, both, t.usage)
    rows = _table(
        con,
        "_a_rows",
        f"""
        SELECT day, team, category, job_id, resource_id, line_item_type, product_code, cost_kind,
               sum(cost) AS cost, sum(waste) AS waste, sum(gpu_seconds) AS gpu_seconds
        FROM {both} GROUP BY ALL""",
    )
    return AllocationTables(t.lines, usage, rows)


def allocation_rows(con: duckdb.DuckDBPyConnection, window: Window, options: Options) -> str:
    """_a_rows: the allocation of the window, per day, team, category, job and resource."""
    return allocation_tables(con, window, options).rows


def _currency(con: duckdb.DuckDBPyConnection, lines: str) -> str:
    found = [r[0] for r in con.execute(f"SELECT DISTINCT currency FROM {lines} ORDER BY 1").fetchall()]
    if len(found) > 1:
        choices = " or ".join(f"--currency {c}" for c in found)
        raise GpulensError(
            f"the period's lines are billed in {len(found)} currencies ({', '.join(found)}); allocate each "
            f"apart: pass {choices}"
        )
    return found[0] if found else "USD"


def team_costs(con: duckdb.DuckDBPyConnection, rows: str, usage: str) -> tuple[TeamCost, ...]:
    """Per team: direct and shared money, waste, GPU hours measured from all its usage, and which
    part of its money was GPU time and which the storage behind it (FSx, S3, EFS)."""
    found = con.execute(f"""
        WITH money AS (
            SELECT team, sum(cost) FILTER (WHERE category = 'direct') AS direct,
                   sum(cost) FILTER (WHERE category IN ('shared_gpu', 'shared_other')) AS shared,
                   sum(waste) AS waste,
                   sum(cost) FILTER (WHERE cost_kind = 'gpu') AS gpu,
                   sum(cost) FILTER (WHERE cost_kind = 'storage') AS storage
            FROM {rows} WHERE team IS NOT NULL GROUP BY team),
        hours AS (SELECT team, sum(gpu_seconds) / 3600.0 AS gpu_hours FROM {usage}
                  WHERE team IS NOT NULL GROUP BY team)
        SELECT team, coalesce(direct, 0), coalesce(shared, 0), coalesce(gpu_hours, 0), coalesce(waste, 0),
               coalesce(gpu, 0), coalesce(storage, 0)
        FROM money FULL JOIN hours USING (team)""").fetchall()
    teams = [
        TeamCost(
            team=t,
            direct=Decimal(d),
            shared=Decimal(s),
            gpu_hours=Decimal(str(round(h, 6))),
            waste=Decimal(w),
            gpu=Decimal(g),
            storage=Decimal(st),
        )
        for t, d, s, h, w, g, st in found
    ]
    return tuple(sorted(teams, key=lambda t: (-t.total, t.team)))


def unallocated_lines(con: duckdb.DuckDBPyConnection, rows: str) -> tuple[UnallocatedLine, ...]:
    found = con.execute(f"""
        SELECT resource_id, line_item_type, product_code, sum(cost) AS cost FROM {rows}
        WHERE category = 'unallocated' GROUP BY ALL ORDER BY abs(sum(cost)) DESC, 1, 2""").fetchall()
    return tuple(UnallocatedLine(r, t, p, Decimal(c)) for r, t, p, c in found)


def _allocation(
    con: duckdb.DuckDBPyConnection, window: Window, options: Options, label: str
) -> tuple[Allocation, AllocationTables]:
    tables = allocation_tables(con, window, options)
    currency = _currency(con, tables.lines)
    total, billed = con.execute(
        f"SELECT coalesce(sum(cost), 0), coalesce(sum(billed), 0) FROM {tables.lines}"
    ).fetchone() or (0, 0)
    by_kind = dict(
        con.execute(
            f"SELECT category, sum(cost) FROM {tables.rows} "
            "WHERE category IN ('idle', 'unallocated') GROUP BY 1"
        ).fetchall()
    )
    allocation = Allocation(
        period=label,
        currency=currency,
        basis=options.basis,
        teams=team_costs(con, tables.rows, tables.usage),
        idle=Decimal(by_kind.get("idle", 0)),
        unallocated=Decimal(by_kind.get("unallocated", 0)),
        total=Decimal(total),
        billed_total=Decimal(billed),
        unallocated_lines=unallocated_lines(con, tables.rows),
    )
    return allocation, tables


def _require_lines(con: duckdb.DuckDBPyConnection, period: str, currency: str | None) -> None:
    """A period without billing lines (or without lines in `currency`) is a mistake, not a zero bill."""
    held = con.execute(
        "SELECT billing_period, list(DISTINCT currency ORDER BY currency) FROM cost_line_items "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    currencies = dict(held)
    if period in currencies and (currency is None or currency.strip().upper() in currencies[period]):
        return
    if period in currencies:
        raise GpulensError(
            f"period {period} has no lines billed in {currency.strip().upper() if currency else ''}; "
            f"its currencies are {', '.join(currencies[period])}",
            field="currency",
        )
    have = ", ".join(str(p) for p, _ in held) or "none (run `gpulens ingest cur` first)"
    raise GpulensError(f"no billing lines for period {period}; the warehouse holds: {have}", field="period")


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
    currency: str | None = None,
) -> Allocation:
    """Allocates the cost of the UTC window [start, end): each line counts for the part of its usage
    window inside it. Raises `InvariantViolation` if the result does not reconcile."""
    window = Window(naive_utc(start), naive_utc(end))
    options = Options(tag_key, cluster_tag_key, idle, basis, currency)
    return _allocation(con, window, options, label or f"{window.start:%Y-%m-%d}/{window.end:%Y-%m-%d}")[0]


def allocate_period(
    con: duckdb.DuckDBPyConnection,
    period: str,
    *,
    tag_key: str = "team",
    cluster_tag_key: str = "cluster",
    idle: IdleMode = "separate",
    basis: Basis = "amortized",
    label: str | None = None,
    currency: str | None = None,
) -> Allocation:
    """Allocates billing period `YYYY-MM`: all its lines, whole (the invoice's total). A period with
    no lines is refused, naming the periods the warehouse holds."""
    options = Options(tag_key, cluster_tag_key, idle, basis, currency)
    return _period(con, period, options, label)[0]


def _period(
    con: duckdb.DuckDBPyConnection, period: str, options: Options, label: str | None
) -> tuple[Allocation, AllocationTables]:
    window = month_window(period)
    _require_lines(con, period, options.currency)
    return _allocation(con, window, options, label or period)


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
    currency: str | None = None,
) -> list[DailyAllocation]:
    """The allocation of [start, end) as rows per UTC day, team, category, job and resource
    (`label` is accepted for symmetry with `allocate` and unused)."""
    window = Window(naive_utc(start), naive_utc(end))
    tables = allocation_tables(con, window, Options(tag_key, cluster_tag_key, idle, basis, currency))
    return _daily(con, tables.rows)


def _daily(con: duckdb.DuckDBPyConnection, rows: str) -> list[DailyAllocation]:
    found = con.execute(f"""
        SELECT day, team, category, job_id, resource_id, sum(cost), sum(waste), sum(gpu_seconds), cost_kind
        FROM {rows}
        GROUP BY day, team, category, job_id, resource_id, cost_kind
        ORDER BY day, category, team NULLS LAST, job_id NULLS LAST, resource_id NULLS LAST,
                 cost_kind""").fetchall()
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
            cost_kind=k,
        )
        for d, t, c, j, r, m, w, s, k in found
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
    currency: str | None = None,
) -> Allocation:
    """Allocates `period` and replaces its rows (for that basis and currency) in the `allocations`
    table, in one transaction; returns the allocation. The explorer and the report read the table."""
    options = Options(tag_key, cluster_tag_key, idle, basis, currency)
    allocation, tables = _period(con, period, options, None)
    stamp = naive_utc(now or datetime.now(timezone.utc))
    con.begin()
    try:
        con.execute(
            "DELETE FROM allocations WHERE period = ? AND basis = ? AND currency = ?",
            [period, basis, allocation.currency],
        )
        con.execute(
            f"""INSERT INTO allocations (period, basis, day, team, category, job_id, resource_id, cost, waste,
                                        gpu_seconds, currency, computed_at, cost_kind, line_item_type,
                                            product_code)
               SELECT ?, ?, day, team, category, job_id, resource_id, sum(cost), sum(waste),
                   sum(gpu_seconds), ?, ?,
                      cost_kind, line_item_type, product_code
               FROM {tables.rows}
               GROUP BY day, team, category, job_id, resource_id, cost_kind, line_item_type, product_code""",
            [period, basis, allocation.currency, stamp],
        )
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return allocation
