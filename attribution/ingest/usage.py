"""Hourly GPU usage rollups (`gpu_usage_hourly`, docs/design.md §5) from CSV/Parquet files or from Prometheus.

Re-ingesting an hour of a node replaces it, so overlapping exports never double GPU-seconds.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from gpulens.attribution.ingest import promql
from gpulens.attribution.ingest.bulk import insert_rows
from gpulens.attribution.ingest.delivery import is_parquet, read_sql
from gpulens.attribution.ingest.fields import Field, quote
from gpulens.errors import GpulensError

COLUMNS: dict[str, str] = {
    "hour": "timestamp", "node": "text", "instance_id": "text", "cluster": "text", "gpu": "number",
    "gpu_uuid": "text", "model": "text", "job_id": "text", "team": "text", "gpu_seconds": "number",
    "sm_active": "number", "utilization": "number",
}  # fmt: skip
REQUIRED = ("hour", "gpu_seconds")
# Range checks: (column, SQL predicate that is true on a bad value, what is wrong).
RANGES = (
    ("gpu_seconds", "gpu_seconds < 0 OR gpu_seconds > 3600", "is outside 0..3600 seconds of an hour"),
    ("sm_active", "sm_active < 0 OR sm_active > 1", "is outside the ratio range 0..1"),
    ("utilization", "utilization < 0 OR utilization > 1", "is outside the ratio range 0..1"),
    (
        "hour",
        "hour <> date_trunc('hour', hour)",
        "is not on the hour (a rollup row is one UTC hour, HH:00:00)",
    ),
)
# A rollup row is keyed by (hour, GPU, job) (docs/design.md §5); the GPU is its host's GPU index
# (else its UUID).
HOST = "coalesce(instance_id, node)"
GPU = "coalesce(CAST(gpu AS VARCHAR), gpu_uuid)"
KEY = f"hour, {HOST}, {GPU}, job_id"
STAGE = "_gpulens_usage_stage"
ROW_SCHEMA = pa.schema([
    ("hour", pa.timestamp("us")), ("node", pa.string()), ("instance_id", pa.string()),
    ("cluster", pa.string()), ("gpu", pa.int32()), ("gpu_uuid", pa.string()), ("model", pa.string()),
    ("job_id", pa.string()),
    ("team", pa.string()), ("gpu_seconds", pa.float64()), ("sm_active", pa.float64()),
    ("utilization", pa.float64()),
])  # fmt: skip


@dataclass(frozen=True)
class UsageRow:
    """One rollup row, as from Prometheus (gpu_seconds: seconds of the hour held; ratios 0..1)."""

    hour: datetime
    node: str | None
    instance_id: str | None
    cluster: str | None
    gpu: int | None
    gpu_uuid: str | None
    model: str | None
    job_id: str | None
    team: str | None
    gpu_seconds: float
    sm_active: float | None
    utilization: float | None


def _fields(columns: dict[str, str]) -> list[Field]:
    out = []
    for name, kind in COLUMNS.items():
        src = name if name in columns else None
        target_kind = "number" if kind == "number" else kind
        out.append(Field(name, src, target_kind, columns.get(name, "VARCHAR")))  # type: ignore[arg-type]
    return out


def _stage_file(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Appends one file to the stage, naming the first bad row and column if a cell does not parse."""
    con.execute(f"CREATE OR REPLACE TEMP VIEW _gpulens_usage_raw AS SELECT * FROM {read_sql(str(path))}")
    columns = {str(r[0]): str(r[1]) for r in con.execute("DESCRIBE _gpulens_usage_raw").fetchall()}
    for name in REQUIRED:
        if name not in columns:
            raise GpulensError(
                f"required column missing (usage files have {', '.join(COLUMNS)})", path=path, field=name
            )
    fields = _fields(columns)
    numbered = f"SELECT row_number() OVER () AS _row, * FROM {read_sql(str(path))}"
    if is_parquet(path):
        reader = read_sql(str(path), row_numbers=True)
        numbered = f"SELECT file_row_number + 1 AS _row, * EXCLUDE (file_row_number) FROM {reader}"
    typed = ", ".join(f"{f.cast(safe=True)} AS {quote(f.name)}" for f in fields)
    con.execute("SET threads = 1")  # row_number() in file order for error messages
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _gpulens_usage_num AS {numbered}")
    finally:
        con.execute("RESET threads")
    for f in fields:
        if f.source is None or f.kind == "text":
            continue
        hit = con.execute(
            f"SELECT _row, {f.raw()} FROM _gpulens_usage_num WHERE NULLIF(trim({f.raw()}), '') IS NOT NULL "
            f"AND {f.cast(safe=True)} IS NULL ORDER BY _row LIMIT 1"
        ).fetchone()
        if hit:
            kind = "a timestamp" if f.kind == "timestamp" else "a number"
            raise GpulensError(f"{hit[1]!r} is not {kind}", path=path, row=int(hit[0]), field=f.name)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _gpulens_usage_typed AS SELECT _row, {typed} FROM _gpulens_usage_num"
    )
    for name, bad, problem in (*((n, f"{n} IS NULL", "is empty") for n in REQUIRED), *RANGES):
        hit = con.execute(
            f"SELECT _row, {name} FROM _gpulens_usage_typed WHERE {bad} ORDER BY _row LIMIT 1"
        ).fetchone()
        if hit:
            raise GpulensError(f"{hit[1]!r} {problem}", path=path, row=int(hit[0]), field=name)
    _refuse_duplicate_keys(con, path)
    con.execute(f"INSERT INTO {STAGE} SELECT * EXCLUDE (_row) FROM _gpulens_usage_typed")


def _refuse_duplicate_keys(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """A second row for one (hour, GPU, job) in a load would double that job's GPU-seconds and charge."""
    hit = con.execute(f"""
        WITH t AS (SELECT _row, hour, {HOST} AS host, {GPU} AS gpu_key, job_id,
                          row_number() OVER (PARTITION BY {KEY} ORDER BY _row) AS nth
                   FROM _gpulens_usage_typed)
        SELECT min(_row) FROM t
        WHERE nth > 1 OR EXISTS (
            SELECT 1 FROM {STAGE} s
            WHERE s.hour = t.hour AND coalesce(s.instance_id, s.node) IS NOT DISTINCT FROM t.host
              AND coalesce(CAST(s.gpu AS VARCHAR), s.gpu_uuid) IS NOT DISTINCT FROM t.gpu_key
              AND s.job_id IS NOT DISTINCT FROM t.job_id)""").fetchone()
    if hit and hit[0] is not None:
        raise GpulensError(
            "repeats the hour, GPU and job of an earlier row of this load (its GPU-seconds would count "
            "twice); "
            "remove the duplicate or load the files separately",
            path=path,
            row=int(hit[0]),
        )


def _new_stage(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {STAGE} AS SELECT * FROM gpu_usage_hourly LIMIT 0")


def _commit_stage(con: duckdb.DuckDBPyConnection) -> int:
    """Replaces, in one transaction, the rows of the (hour, GPU) pairs the stage carries: a later
    load of a host-hour's other GPUs keeps the first load's."""
    con.begin()
    try:
        con.execute(f"""
            DELETE FROM gpu_usage_hourly g USING (SELECT DISTINCT hour, {HOST} AS host, {GPU} AS gpu_key
                                                 FROM {STAGE}) k
            WHERE g.hour = k.hour AND coalesce(g.instance_id, g.node) IS NOT DISTINCT FROM k.host
              AND coalesce(CAST(g.gpu AS VARCHAR), g.gpu_uuid) IS NOT DISTINCT FROM k.gpu_key""")
        con.execute(f"INSERT INTO gpu_usage_hourly BY NAME SELECT * FROM {STAGE}")
        count = con.execute(f"SELECT count(*) FROM {STAGE}").fetchone()
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return int(count[0]) if count else 0


def ingest_usage_files(con: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> int:
    """Loads CSV/Parquet rollup files (columns of docs/design.md §5); returns the rows loaded."""
    _new_stage(con)
    for path in paths:
        if not path.exists():
            raise GpulensError("no such file", path=path)
        try:
            _stage_file(con, path)
        except duckdb.Error as exc:
            raise GpulensError(f"cannot be read ({str(exc).splitlines()[0]})", path=path) from exc
    return _commit_stage(con)


def ingest_usage_rows(con: duckdb.DuckDBPyConnection, rows: Iterable[UsageRow]) -> int:
    """Loads rollup rows computed elsewhere (Prometheus); returns the rows loaded."""
    _new_stage(con)
    insert_rows(con, STAGE, [tuple(getattr(r, name) for name in COLUMNS) for r in rows], ROW_SCHEMA)
    return _commit_stage(con)


# --- Prometheus --------------------------------------------------------------------------------------


def query_range(
    base_url: str, query: str, start: datetime, end: datetime, *, timeout: float = 30.0
) -> list[dict]:
    """Prometheus `/api/v1/query_range` at a 1 h step; the `result` matrix."""
    params = urllib.parse.urlencode(
        {
            "query": query,
            "start": start.replace(tzinfo=timezone.utc).timestamp(),
            "end": end.replace(tzinfo=timezone.utc).timestamp(),
            "step": "3600",
        }
    )
    url = f"{base_url.rstrip('/')}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
        raise GpulensError(f"Prometheus query failed: {exc}", path=base_url) from exc
    if body.get("status") != "success":
        raise GpulensError(f"Prometheus query failed: {body.get('error', body)}", path=base_url)
    return list(body["data"]["result"])


def _by_gpu_hour(result: list[dict]) -> dict[tuple[str, str, datetime], float]:
    out = {}
    for series in result:
        m = series["metric"]
        for t, v in series["values"]:
            hour = datetime.fromtimestamp(float(t), timezone.utc).replace(tzinfo=None) - timedelta(hours=1)
            out[(m.get("node", ""), m.get("gpu", ""), hour)] = float(v)
    return out


def _by_job_hour(result: list[dict]) -> dict[tuple[str, str, str, datetime], float]:
    out = {}
    for series in result:
        job = series["metric"].get("job_id", "")
        for (node, gpu, hour), value in _by_gpu_hour([series]).items():
            out[(node, gpu, job, hour)] = value
    return out


def usage_from_prometheus(base_url: str, start: datetime, end: datetime) -> list[UsageRow]:
    """Rollups for the hours in [start, end) from the agent's counters (PromQL in `promql.py`):
    each evaluation at T covers (T - 1h, T] and is stamped T - 1h; nodes join `gpulens_node_info`
    for instance_id and cluster."""
    first, last = start + timedelta(hours=1), end
    held = query_range(base_url, promql.HELD_SECONDS_PER_HOUR, first, last)
    sm = _by_gpu_hour(query_range(base_url, promql.SM_ACTIVE_MEAN_PER_HOUR, first, last))
    util = _by_gpu_hour(query_range(base_url, promql.UTILIZATION_MEAN_PER_HOUR, first, last))
    # The job's own mean over its held seconds (docs/design.md §5); the GPU's whole-hour mean only
    # where the counters carry no job labels (an exporter that does not map jobs).
    job_sm = _by_job_hour(query_range(base_url, promql.SM_ACTIVE_MEAN_PER_JOB_HOUR, first, last))
    job_util = _by_job_hour(query_range(base_url, promql.UTILIZATION_MEAN_PER_JOB_HOUR, first, last))
    nodes = {
        s["metric"].get("node", ""): s["metric"] for s in query_range(base_url, promql.NODE_INFO, first, last)
    }
    rows = []
    for series in held:
        m = series["metric"]
        node, gpu = m.get("node", ""), m.get("gpu", "")
        info = nodes.get(node, {})
        for t, v in series["values"]:
            hour = datetime.fromtimestamp(float(t), timezone.utc).replace(tzinfo=None) - timedelta(hours=1)
            seconds = min(max(float(v), 0.0), 3600.0)  # increase() extrapolates past the hour's edges
            if seconds <= 0:
                continue
            rows.append(
                UsageRow(
                    hour=hour,
                    node=node or None,
                    instance_id=info.get("instance_id"),
                    cluster=info.get("cluster"),
                    gpu=int(gpu) if gpu.isdigit() else None,
                    gpu_uuid=m.get("uuid"),
                    model=m.get("model"),
                    job_id=m.get("job_id"),
                    team=m.get("team"),
                    gpu_seconds=seconds,
                    sm_active=job_sm.get((node, gpu, m.get("job_id", ""), hour), sm.get((node, gpu, hour))),
                    utilization=job_util.get(
                        (node, gpu, m.get("job_id", ""), hour), util.get((node, gpu, hour))
                    ),
                )
            )
    return rows
