"""The only module of the explorer that opens the warehouse or calls attribution (docs/design.md, convention
11).

Every query aggregates in DuckDB and returns a small DataFrame (never hourly rows for the browser);
every value that comes from a URL is a bound parameter. Results are cached per query and arguments,
keyed also on the warehouse file's modification time, so a new `gpulens ingest` shows on the next
request. Money is read from `allocations` (what `gpulens attribute` wrote) and never re-split here;
flags come from `gpulens.attribution.flags.find_flags`, the function behind `gpulens flags`.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from gpulens.attribution.model import Flags
from gpulens.dashboards.explorer.readonly import ReadOnlyWarehouse
from gpulens.metrics import SM_THRESHOLD_DEFAULT

T = TypeVar("T")

# allocations.category -> the four groups the cost page stacks by.
CATEGORY_GROUP = {
    "direct": "direct",
    "shared_gpu": "shared",
    "shared_other": "shared",
    "idle": "idle",
    "unallocated": "unallocated",
}
GROUP_ORDER = ("direct", "shared", "idle", "unallocated")
_GROUP_SQL = (
    "CASE category WHEN 'shared_gpu' THEN 'shared' WHEN 'shared_other' THEN 'shared' ELSE category END"
)
# instance id -> the node name its agent reports; resource id -> the EC2/SageMaker instance type billed.
_NODES = "SELECT instance_id, any_value(node) AS node FROM gpu_usage_hourly GROUP BY instance_id"
_INSTANCE_TYPES = (
    "SELECT resource_id, any_value(instance_type) AS instance_type FROM cost_line_items "
    "WHERE instance_type IS NOT NULL AND instance_type <> '' GROUP BY resource_id"
)


@dataclass(frozen=True)
class CostFilter:
    """What the cost page shows: days `start`..`end` inclusive, some teams (empty: all), a cost basis."""

    start: date
    end: date
    teams: tuple[str, ...] = ()
    basis: str = "amortized"


@dataclass(frozen=True)
class DataRange:
    """What the warehouse holds: allocation days, periods, the newest usage hour."""

    periods: tuple[str, ...]
    first_day: date | None
    last_day: date | None
    newest_usage_hour: datetime | None
    teams: tuple[str, ...]
    currency: str


@dataclass(frozen=True)
class UtilFilter:
    window_hours: int = 24
    sm_threshold: float = SM_THRESHOLD_DEFAULT
    model: str = "all"  # all | a100 | h100
    teams: tuple[str, ...] = ()


class Queries:
    """Read-only access to one warehouse (and optionally a Prometheus for live views)."""

    def __init__(self, warehouse: Path, *, prometheus: str | None = None, cache_size: int = 256) -> None:
        self.warehouse = ReadOnlyWarehouse(warehouse)
        self.prometheus = prometheus.rstrip("/") if prometheus else None
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------
    def _version(self) -> int:
        return self.warehouse.version()

    def _cached(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        key = (self._version(), *key)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return value

    def memo(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        """Caches a page's rendered output like a query result (same key rules, same invalidation)."""
        return self._cached(("memo", *key), compute)

    def _frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self.warehouse.cursor() as con:
            return con.execute(sql, list(params)).df()

    # -- what is there --------------------------------------------------------------------------
    def data_range(self) -> DataRange:
        return self._cached(("range",), self._data_range)

    def _data_range(self) -> DataRange:
        with self.warehouse.cursor() as con:
            periods = tuple(
                r[0] for r in con.execute("SELECT DISTINCT period FROM allocations ORDER BY 1").fetchall()
            )
            first, last = con.execute("SELECT min(day), max(day) FROM allocations").fetchone() or (None, None)
            newest = (con.execute("SELECT max(hour) FROM gpu_usage_hourly").fetchone() or (None,))[0]
            teams = tuple(
                r[0]
                for r in con.execute(
                    "SELECT team FROM allocations WHERE team IS NOT NULL UNION "
                    "SELECT team FROM gpu_usage_hourly WHERE team IS NOT NULL UNION "
                    "SELECT team FROM train_metrics WHERE team IS NOT NULL ORDER BY 1"
                ).fetchall()
            )
            currency = (con.execute("SELECT any_value(currency) FROM allocations").fetchone() or (None,))[0]
        return DataRange(periods, first, last, newest, teams, currency or "USD")

    def counts(self) -> dict[str, int]:
        """Rows per table, for empty states ("run `gpulens ingest cur`")."""

        def compute() -> dict[str, int]:
            tables = ("cost_line_items", "gpu_usage_hourly", "train_metrics", "allocations")
            with self.warehouse.cursor() as con:
                return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}  # type: ignore[index]

        return self._cached(("counts",), compute)

    # -- /cost ----------------------------------------------------------------------------------
    def _cost_where(self, f: CostFilter) -> tuple[str, list[Any]]:
        where = "basis = ? AND day BETWEEN ? AND ?"
        params: list[Any] = [f.basis, f.start, f.end]
        if f.teams:
            where += " AND team IN (SELECT unnest(?::VARCHAR[]))"
            params.append(list(f.teams))
        return where, params

    def spend_by_day(self, f: CostFilter) -> pd.DataFrame:
        """day, team (NULL for idle/unallocated), grp (direct|shared|idle|unallocated), cost (currency)."""

        def compute() -> pd.DataFrame:
            where, params = self._cost_where(f)
            return self._frame(
                f"SELECT day, team, {_GROUP_SQL} AS grp, CAST(sum(cost) AS DOUBLE) AS cost "
                f"FROM allocations WHERE {where} GROUP BY ALL ORDER BY day, grp, team",
                params,
            )

        return self._cached(("spend_by_day", f), compute)

    def _usage_hours(self, f: CostFilter, by: str) -> tuple[str, list[Any]]:
        """GPU hours held per `by` in the filter's days, from the usage rollups (as `gpulens attribute`
        measures `gpu_hours`), as a SQL subquery and its parameters."""
        sql = (
            f"SELECT {by}, sum(gpu_seconds) / 3600 AS gpu_hours FROM gpu_usage_hourly "
            f"WHERE hour >= ? AND hour < ? + INTERVAL 1 DAY GROUP BY {by}"
        )
        return sql, [f.start, f.end]

    def cost_totals(self, f: CostFilter) -> dict[str, float]:
        """Totals of the range per group, waste, and GPU hours (of the filter's teams, from usage)."""

        def compute() -> dict[str, float]:
            where, params = self._cost_where(f)
            df = self._frame(
                f"SELECT {_GROUP_SQL} AS grp, CAST(sum(cost) AS DOUBLE) AS cost, "
                f"CAST(sum(waste) AS DOUBLE) AS waste FROM allocations WHERE {where} GROUP BY ALL",
                params,
            )
            out = {g: float(df.loc[df.grp == g, "cost"].sum()) for g in GROUP_ORDER}
            out["total"] = float(df.cost.sum())
            out["waste"] = float(df.waste.sum())
            hours = self.team_table(f)
            out["gpu_hours"] = float(hours.gpu_hours.sum())
            return out

        return self._cached(("cost_totals", f), compute)

    def cost_parts(self, f: CostFilter) -> dict[str, Decimal]:
        """Exact totals per group (direct, shared, idle, unallocated) and `total`, as Decimals: the cards
        round them together (`round_parts`) so the parts shown add up to the total shown."""

        def compute() -> dict[str, Decimal]:
            where, params = self._cost_where(f)
            with self.warehouse.cursor() as con:
                found = con.execute(
                    f"SELECT {_GROUP_SQL} AS grp, sum(cost) FROM allocations WHERE {where} GROUP BY ALL",
                    params,
                ).fetchall()
            out = {g: Decimal(0) for g in GROUP_ORDER}
            for group, cost in found:
                out[group] += Decimal(cost)
            out["total"] = sum((out[g] for g in GROUP_ORDER), Decimal(0))
            return out

        return self._cached(("cost_parts", f), compute)

    def team_table(self, f: CostFilter) -> pd.DataFrame:
        """Per team: direct, shared, total, of which GPU instance time and storage (FSx, S3, EFS: the
        data sets and checkpoints behind training), GPU hours, waste; idle and unallocated as own rows."""

        def compute() -> pd.DataFrame:
            where, params = self._cost_where(f)
            usage, usage_params = self._usage_hours(f, "team")
            return self._frame(
                f"""
                WITH a AS (
                    SELECT coalesce(team, '(' || category || ')') AS label, team,
                           sum(cost) FILTER (category = 'direct') AS direct,
                           sum(cost) FILTER (category IN ('shared_gpu', 'shared_other')) AS shared,
                           sum(cost) AS total, sum(waste) AS waste,
                           sum(cost) FILTER (cost_kind = 'gpu') AS gpu,
                           sum(cost) FILTER (cost_kind = 'storage') AS storage
                    FROM allocations WHERE {where} GROUP BY label, team)
                SELECT label AS team, round(CAST(coalesce(direct, 0) AS DOUBLE), 2) AS direct,
                       round(CAST(coalesce(shared, 0) AS DOUBLE), 2) AS shared,
                       round(CAST(total AS DOUBLE), 2) AS total,
                       round(CAST(coalesce(gpu, 0) AS DOUBLE), 2) AS gpu_cost,
                       round(CAST(coalesce(storage, 0) AS DOUBLE), 2) AS storage,
                       round(coalesce(u.gpu_hours, 0), 1) AS gpu_hours,
                       round(CAST(waste AS DOUBLE), 2) AS waste
                FROM a LEFT JOIN ({usage}) u ON u.team = a.team
                ORDER BY starts_with(label, '('), total DESC""",
                params + usage_params,
            )

        return self._cached(("team_table", f), compute)

    def team_jobs(self, f: CostFilter) -> pd.DataFrame:
        """Drill-down: per team, job and instance (resource id): node, instance type, category, cost,
        GPU hours, waste. A row without a job is a whole tagged resource (direct) or a cluster's share of
        an untagged one (shared): `job_id` says which, so 0 GPU hours there is not a mystery."""

        def compute() -> pd.DataFrame:
            where, params = self._cost_where(f)
            usage, usage_params = self._usage_hours(f, "job_id, instance_id")
            return self._frame(
                f"""
                WITH a AS (
                    SELECT team, job_id, resource_id, {_GROUP_SQL} AS category, sum(cost) AS cost,
                           sum(waste) AS waste, any_value(product_code) AS product_code
                    FROM allocations WHERE {where} AND team IS NOT NULL GROUP BY team, job_id, resource_id, 4)
                SELECT team,
                       coalesce(a.job_id, CASE WHEN category = 'direct' THEN '(tagged resource, no job)'
                                               ELSE '(cluster share, no job)' END) AS job_id,
                       coalesce(n.node, '') AS node,
                       coalesce(it.instance_type, a.product_code, '') AS instance_type,
                       coalesce(a.resource_id, '(no resource id)') AS resource_id, category,
                       round(CAST(cost AS DOUBLE), 2) AS cost,
                       round(CASE WHEN category IN ('direct', 'shared') THEN coalesce(u.gpu_hours, 0)
                                  ELSE 0 END, 1) AS gpu_hours,
                       round(CAST(waste AS DOUBLE), 2) AS waste
                FROM a LEFT JOIN ({usage}) u ON u.job_id = a.job_id AND u.instance_id = a.resource_id
                LEFT JOIN ({_NODES}) n ON n.instance_id = a.resource_id
                LEFT JOIN ({_INSTANCE_TYPES}) it ON it.resource_id = a.resource_id
                ORDER BY cost DESC, job_id, resource_id""",
                params + usage_params,
            )

        return self._cached(("team_jobs", f), compute)

    def idle(self, f: CostFilter) -> pd.DataFrame:
        """Idle drilled down per instance and day: GPU time paid for on shared nodes that no job held.
        Idle belongs to no team, so the team filter does not apply."""

        def compute() -> pd.DataFrame:
            where, params = self._cost_where(CostFilter(f.start, f.end, (), f.basis))
            return self._frame(
                f"""
                SELECT strftime(a.day, '%Y-%m-%d') AS day,
                       coalesce(a.resource_id, '(no resource id)') AS resource_id,
                       coalesce(n.node, '') AS node, coalesce(it.instance_type, '') AS instance_type,
                       round(CAST(sum(a.cost) AS DOUBLE), 2) AS cost
                FROM allocations a
                LEFT JOIN ({_NODES}) n ON n.instance_id = a.resource_id
                LEFT JOIN ({_INSTANCE_TYPES}) it ON it.resource_id = a.resource_id
                WHERE {where} AND category = 'idle'
                GROUP BY ALL ORDER BY 1, cost DESC, resource_id""",
                params,
            )

        return self._cached(("idle", f), compute)

    def unallocated(self, f: CostFilter) -> pd.DataFrame:
        """Unallocated spend by resource id, line type and service, largest first, with what to do
        about each row: a tag moves untagged usage; nothing moves a commitment fee, a tax or a credit."""

        def compute() -> pd.DataFrame:
            where, params = self._cost_where(CostFilter(f.start, f.end, (), f.basis))
            df = self._frame(
                "SELECT coalesce(resource_id, '(no resource id)') AS resource_id, "
                "coalesce(line_item_type, '') AS line_item_type, coalesce(product_code, '') AS service, "
                "round(CAST(sum(cost) AS DOUBLE), 2) AS cost, count(DISTINCT day) AS days "
                f"FROM allocations WHERE {where} AND category = 'unallocated' GROUP BY 1, 2, 3 "
                "ORDER BY abs(sum(cost)) DESC, 1, 2",
                params,
            )
            df["action"] = [
                unallocated_action(t, r) for t, r in zip(df.line_item_type, df.resource_id, strict=True)
            ]
            return df

        return self._cached(("unallocated", f), compute)

    # -- /utilization ---------------------------------------------------------------------------
    def flags(self, window_hours: int, sm_threshold: float) -> Flags:
        """`find_flags` over the window ending at the newest usage hour: exactly `gpulens flags`.

        Priced once per window: `find_flags` runs with a threshold of 1.0 (every pair held >= 1 h)
        and the pairs below `sm_threshold` are kept, which is the same set its own `measured <
        threshold` filter returns for any threshold <= 1, so moving the threshold slider costs nothing.
        """
        every = self._cached(("flags", window_hours), lambda: self._find_flags(window_hours))
        kept = tuple(u for u in every.underutilized if u.sm_active < sm_threshold)
        return Flags(underutilized=kept, divergent_runs=every.divergent_runs)

    def _find_flags(self, window_hours: int) -> Flags:
        from gpulens.attribution.flags import find_flags

        with self.warehouse.cursor() as con:
            return find_flags(con, window=timedelta(hours=window_hours), until=None, sm_threshold=1.0)

    def prewarm(self, windows: Sequence[int] = (24, 168, 720)) -> None:
        """Computes what the first page views need (flags per window priced once), e.g. at startup."""
        self.data_range()
        self.counts()
        for hours in windows:
            self.flags(hours, SM_THRESHOLD_DEFAULT)

    def underutilized(self, f: UtilFilter) -> pd.DataFrame:
        """The flagged (GPU, job) pairs as a table, filtered by model and team."""
        flags = self.flags(f.window_hours, f.sm_threshold)
        rows = [
            {
                "node": u.node,
                "instance_id": u.instance_id,
                "gpu": u.gpu,
                "model": u.model or "",
                "gpu_family": gpu_family(u.model),
                "team": u.team,
                "job_id": u.job_id,
                "hours": round(u.hours, 1),
                "sm_active": round(u.sm_active, 3),
                "measure": u.measure,
                "waste": u.waste,  # exact Decimal: the page rounds parts and total together
            }
            for u in flags.underutilized
        ]
        df = pd.DataFrame(
            rows,
            columns=[
                "node",
                "instance_id",
                "gpu",
                "model",
                "gpu_family",
                "team",
                "job_id",
                "hours",
                "sm_active",
                "measure",
                "waste",
            ],
        )
        if f.model != "all":
            df = df[df.gpu_family == f.model.upper()]
        if f.teams:
            df = df[df.team.isin(f.teams)]
        return df.sort_values("waste", ascending=False).reset_index(drop=True)

    def heatmap(self, f: UtilFilter, limit: int = 48) -> pd.DataFrame:
        """Mean SM activity per GPU per time bucket over the window, for the `limit` least busy GPUs.

        Buckets are 1 h for windows up to two days, 6 h up to ten, else 1 day. `measure` is
        `utilization` where only the coarse NVML counter exists (A100 without DCGM).
        """

        def compute() -> pd.DataFrame:
            rng = self.data_range()
            if rng.newest_usage_hour is None:
                return pd.DataFrame(columns=["gpu_label", "model", "bucket", "value", "measure"])
            end = rng.newest_usage_hour + timedelta(hours=1)
            bucket = 1 if f.window_hours <= 48 else (6 if f.window_hours <= 240 else 24)
            params: list[Any] = [end - timedelta(hours=f.window_hours), end]
            extra = ""
            if f.model != "all":
                extra += " AND model ILIKE ?"
                params.append(f"%{f.model}%")
            if f.teams:
                extra += " AND team IN (SELECT unnest(?::VARCHAR[]))"
                params.append(list(f.teams))
            return self._frame(
                f"""
                WITH u AS MATERIALIZED (
                    SELECT node, gpu, model, hour, gpu_seconds, coalesce(sm_active, utilization) AS v,
                           sm_active IS NULL AS coarse
                    FROM gpu_usage_hourly WHERE hour >= ? AND hour < ? {extra}),
                ranked AS (
                    SELECT node, gpu FROM u GROUP BY node, gpu
                    ORDER BY sum(v * gpu_seconds) / sum(gpu_seconds), node, gpu LIMIT {int(limit)})
                SELECT node || ' / GPU ' || gpu AS gpu_label, any_value(model) AS model,
                       time_bucket(INTERVAL '{bucket} hours', hour) AS bucket,
                       sum(v * gpu_seconds) / sum(gpu_seconds) AS value,
                       CASE WHEN bool_or(coarse) THEN 'utilization' ELSE 'sm_active' END AS measure
                FROM u SEMI JOIN ranked USING (node, gpu)
                GROUP BY node, gpu, bucket ORDER BY node, gpu, bucket""",
                params,
            )

        # The threshold only colours the title: one query serves every threshold.
        return self._cached(("heatmap", f.window_hours, f.model, f.teams, limit), compute)

    def coarse_nodes(self, window_hours: int) -> tuple[str, ...]:
        """Nodes that, in the window, report only the coarse utilization (no SM activity)."""

        def compute() -> tuple[str, ...]:
            newest = self.data_range().newest_usage_hour
            if newest is None:
                return ()
            start = newest + timedelta(hours=1) - timedelta(hours=window_hours)
            df = self._frame(
                "SELECT DISTINCT node FROM gpu_usage_hourly WHERE hour >= ? AND sm_active IS NULL ORDER BY 1",
                [start],
            )
            return tuple(df.node)

        return self._cached(("coarse", window_hours), compute)

    def live_sm(self) -> pd.DataFrame:
        """Current SM activity per GPU from Prometheus (`--prometheus`), else coarse utilization."""
        columns = ["node", "gpu", "job_id", "team", "value", "measure"]
        if not self.prometheus:
            return pd.DataFrame(columns=columns)
        rows = []
        for metric, measure in (
            ("gpulens_gpu_sm_active_ratio", "sm_active"),
            ("gpulens_gpu_utilization_ratio", "utilization"),
        ):
            for series in _prom_query(self.prometheus, metric):
                labels, value = series["metric"], float(series["value"][1])
                rows.append(
                    {
                        "node": labels.get("node"),
                        "gpu": labels.get("gpu"),
                        "job_id": labels.get("job_id"),
                        "team": labels.get("team"),
                        "value": value,
                        "measure": measure,
                    }
                )
        df = pd.DataFrame(rows, columns=columns)
        return df.drop_duplicates(["node", "gpu"], keep="first").sort_values(["node", "gpu"])

    # -- /training ------------------------------------------------------------------------------
    def runs(self, teams: tuple[str, ...] = ()) -> pd.DataFrame:
        """One row per run: steps, last loss, mean step time and MFU, anomalies, money after onset.

        A NULL loss is a non-finite one (the trainer logs NaN as null), so a run that ended in NaN
        shows NaN as its last loss.
        """

        def compute() -> pd.DataFrame:
            params: list[Any] = []
            where = ""
            if teams:
                where = "WHERE team IN (SELECT unnest(?::VARCHAR[]))"
                params.append(list(teams))
            df = self._frame(
                f"""
                SELECT job_id, any_value(team) AS team, max(step) AS steps,
                       arg_max(coalesce(loss, 'NaN'::DOUBLE), step) AS last_loss,
                       avg(step_seconds) AS step_seconds,
                       avg(mfu) AS mfu, min(ts) AS started, max(ts) AS last_seen
                FROM (SELECT * FROM train_metrics WHERE NOT coalesce(redone, false)) {where}
                GROUP BY job_id ORDER BY job_id""",
                params,
            )
            return self._with_anomalies(df)

        return self._cached(("runs", teams), compute)

    def _with_anomalies(self, runs: pd.DataFrame) -> pd.DataFrame:
        flags = self.flags(24, SM_THRESHOLD_DEFAULT)
        kinds: dict[str, list[str]] = {}
        first_step: dict[str, int] = {}
        for d in flags.divergent_runs:
            kinds.setdefault(d.job_id, []).append(d.kind)
            first_step[d.job_id] = min(first_step.get(d.job_id, d.step), d.step)
        after = self.cost_after(first_step, self._episode_ends(flags, first_step))
        runs["anomalies"] = [", ".join(sorted(kinds.get(j, []))) for j in runs.job_id]
        runs["onset_step"] = [first_step.get(j) for j in runs.job_id]
        runs["cost_after_onset"] = [after.get(j) for j in runs.job_id]
        runs["flagged"] = runs.job_id.isin(list(kinds))
        return runs.sort_values(
            ["flagged", "cost_after_onset", "job_id"], ascending=[False, False, True], na_position="last"
        ).reset_index(drop=True)

    def _episode_ends(self, flags: Flags, first_step: dict[str, int]) -> dict[str, date | None]:
        """When each job's first anomaly stopped costing money: it recovered or the run ended
        (`flags.episode_end`, as the weekly report reads it)."""
        from gpulens.attribution.flags import episode_end

        ends: dict[str, date | None] = {}
        with self.warehouse.cursor() as con:
            for run in flags.divergent_runs:
                if first_step.get(run.job_id) == run.step and run.job_id not in ends:
                    end = episode_end(con, run)[0]
                    ends[run.job_id] = end.date() if end is not None else None
        return ends

    def cost_after(
        self, onset_steps: dict[str, int], until: Mapping[str, date | None] | None = None
    ) -> dict[str, float]:
        """Money allocated to each job from the UTC day of its onset step on, up to the day its episode
        ended (`until`, where given), read from `allocations` (amortized; the table `gpulens attribute`
        writes is daily, so the onset and end days count whole)."""
        if not onset_steps:
            return {}
        ends = [None if until is None else until.get(j) for j in onset_steps]
        df = self._frame(
            """
            WITH o AS (SELECT unnest(?::VARCHAR[]) AS job_id, unnest(?::BIGINT[]) AS step,
                              unnest(?::DATE[]) AS until),
            onset AS (
                SELECT o.job_id, any_value(o.until) AS until, min(m.ts)::DATE AS day
                FROM o JOIN train_metrics m
                  ON m.job_id = o.job_id AND m.step >= o.step AND NOT coalesce(m.redone, false)
                GROUP BY o.job_id)
            SELECT onset.job_id, CAST(coalesce(sum(a.cost), 0) AS DOUBLE) AS cost
            FROM onset LEFT JOIN allocations a
              ON a.job_id = onset.job_id AND a.day >= onset.day AND a.basis = 'amortized'
                 AND (onset.until IS NULL OR a.day <= onset.until)
            GROUP BY onset.job_id""",
            [list(onset_steps), list(onset_steps.values()), ends],
        )
        return {j: round(float(c), 2) for j, c in zip(df.job_id, df.cost, strict=True)}

    def curve(self, job_id: str, points: int = 600) -> pd.DataFrame:
        """step, ts, loss, step_seconds, mfu, grad_norm, lr of one run (rank 0), bucketed in DuckDB to at
        most `points` (grad_norm and lr are NULL where the trainer did not send them)."""

        def compute() -> pd.DataFrame:
            return self._frame(
                f"""
                WITH r AS (SELECT step, ts, loss, step_seconds, mfu, grad_norm, lr FROM train_metrics
                           WHERE job_id = ? AND coalesce(rank, 0) = 0 AND NOT coalesce(redone, false)),
                     b AS (SELECT greatest(1, ceil(count(*) / {int(points)}))::BIGINT AS k FROM r),
                     n AS (SELECT *, (row_number() OVER (ORDER BY step) - 1) // (SELECT k FROM b) AS g FROM r)
                SELECT max(step) AS step, max(ts) AS ts,
                       CASE WHEN bool_or(isnan(loss) OR isinf(loss)) THEN 'NaN'::DOUBLE ELSE avg(loss) END
                           AS loss,
                       avg(step_seconds) AS step_seconds, avg(mfu) AS mfu, avg(grad_norm) AS grad_norm,
                       avg(lr) AS lr
                FROM n GROUP BY g ORDER BY step""",
                [job_id],
            )

        return self._cached(("curve", job_id, points), compute)

    def anomalies(self, job_id: str) -> pd.DataFrame:
        """The flagged anomalies of one run (what `gpulens flags` reports) at their detection step and
        time, with the last good step before each: the lowest finite loss at or before detection (rank
        0, unbucketed), which is where a researcher rolls back to."""
        flags = self.flags(24, SM_THRESHOLD_DEFAULT)
        found = [(d.step, d.kind) for d in flags.divergent_runs if d.job_id == job_id]
        columns = ["step", "kind", "ts", "last_good_step", "last_good_loss", "last_good_ts"]
        if not found:
            return pd.DataFrame(columns=columns)

        def compute() -> pd.DataFrame:
            return self._frame(
                """
                WITH a AS (SELECT unnest(?::BIGINT[]) AS step, unnest(?::VARCHAR[]) AS kind),
                     r AS (SELECT step, ts, loss FROM train_metrics
                           WHERE job_id = ? AND coalesce(rank, 0) = 0 AND NOT coalesce(redone, false))
                SELECT a.step, a.kind,
                       (SELECT min(ts) FROM r WHERE r.step >= a.step) AS ts,
                       arg_min(r.step, r.loss) AS last_good_step, min(r.loss) AS last_good_loss,
                       arg_min(r.ts, r.loss) AS last_good_ts
                FROM a LEFT JOIN r ON r.step <= a.step AND isfinite(r.loss)
                GROUP BY a.step, a.kind ORDER BY a.step""",
                [[st for st, _ in found], [k for _, k in found], job_id],
            )

        return self._cached(("anomalies", job_id, tuple(found)), compute)

    # -- /training: goodput (docs/design.md §8) --------------------------------------------------
    def goodput(self, teams: tuple[str, ...] = ()) -> pd.DataFrame:
        """One row per run over the warehouse's usage hours: attempts, wall seconds, goodput, seconds
        and money per bucket (`<bucket>_s`, `<bucket>_cost`), step MFU and effective MFU (useful FLOPs
        over wall time: the step-time-weighted MFU of the kept steps x goodput)."""
        from gpulens.attribution import allocate as alloc
        from gpulens.attribution.goodput import BUCKETS, goodput_window

        def compute() -> pd.DataFrame:
            columns = ["job_id", "team", "attempts", "wall_seconds", "goodput", "step_mfu", "effective_mfu"]
            columns += [f"{b}_s" for b in BUCKETS] + [f"{b}_cost" for b in BUCKETS]
            with self.warehouse.cursor() as con:
                # Every hour that holds usage or a run: a run's buckets are priced by its usage there.
                span = con.execute(
                    """SELECT min(t), max(t) FROM (
                           SELECT hour AS t FROM gpu_usage_hourly UNION ALL
                           SELECT hour + INTERVAL 1 HOUR FROM gpu_usage_hourly UNION ALL
                           SELECT ts FROM train_metrics UNION ALL
                           SELECT started FROM train_runs UNION ALL SELECT ended FROM train_runs)"""
                ).fetchone()
                if not span or span[0] is None or span[1] <= span[0]:
                    return pd.DataFrame(columns=columns)
                report = goodput_window(con, alloc.Window(span[0], span[1]))
                # Step MFU weighted by step time over the kept steps: x goodput it is useful FLOPs over
                # wall time, whether the trainer logged every step or every k-th.
                mfu = dict(
                    con.execute(
                        """SELECT job_id, sum(mfu * step_seconds) / nullif(sum(step_seconds), 0)
                           FROM train_metrics WHERE coalesce(rank, 0) = 0 AND NOT coalesce(redone, false)
                           GROUP BY job_id"""
                    ).fetchall()
                )
            rows = []
            for job in report.jobs:
                if teams and job.team not in teams:
                    continue
                step_mfu = mfu.get(job.job_id)
                effective = (
                    step_mfu * job.goodput if step_mfu is not None and job.goodput is not None else None
                )
                rows.append(
                    [job.job_id, job.team, job.attempts, job.wall_seconds, job.goodput, step_mfu, effective]
                    + [job.seconds[b] for b in BUCKETS]
                    + [float(job.cost[b]) for b in BUCKETS]
                )
            return pd.DataFrame(rows, columns=columns)

        return self._cached(("goodput", teams), compute)


# Line types that no tag can move: the commitment itself, taxes, credits (docs/design.md §6).
COMMITMENT_TYPES = ("SavingsPlanRecurringFee", "SavingsPlanUpfrontFee", "RIFee", "Fee")
FIXED_ACTIONS = {
    "SavingsPlanRecurringFee": "Commitment fee: no tag moves it. Amortized keeps only the unused part here; "
    "use the commitment or buy less of it",
    "SavingsPlanUpfrontFee": "Upfront commitment payment: no tag moves it; Amortized spreads it over "
    "the usage",
    "RIFee": "Reserved Instance fee: no tag moves it. Amortized keeps only the unused part here",
    "Fee": "Fee on the account: no tag moves it; share it by policy",
    "Tax": "Tax: no tag moves it; share it by policy",
    "Credit": "Credit: no tag moves it; it lowers the bill",
    "Refund": "Refund: no tag moves it; it lowers the bill",
}


def unallocated_action(line_item_type: str, resource_id: str) -> str:
    """What someone can do about one unallocated row, by its CUR line type."""
    if line_item_type in FIXED_ACTIONS:
        return FIXED_ACTIONS[line_item_type]
    if resource_id.startswith("("):
        return "No resource id: no tag can reach it; share it by policy"
    return "Tag this resource with the team (or cluster) tag, then run `gpulens attribute` again"


def gpu_family(model: str | None) -> str:
    """A100 / H100 / other, from an NVML model name such as 'NVIDIA H100 80GB HBM3'."""
    text = (model or "").upper()
    for family in ("H100", "H200", "A100", "A10G", "L4"):
        if family in text:
            return family
    return "other"


def _prom_query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError):
        return []  # the live panel says "no live data"; the warehouse views still work
    return list(body.get("data", {}).get("result", []))
