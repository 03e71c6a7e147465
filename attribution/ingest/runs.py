"""Training runs (`train_metrics`, `train_anomalies`): the trainer's JSONL (SPEC §4 records) or CSV
`step,loss[,job_id,team,ts,...]`; without a job_id the file's stem is the job id.

The loss-curve detector is injected (`detect`): attribution may not import gpulens.trainer (SPEC §1);
the CLI passes `gpulens.trainer.health.scan`. Anomalies the trainer reported online (`"kind":"anomaly"`)
are kept beside the ones found offline. Re-ingesting a job replaces its rows.

Rows are parsed and checked in Python (so a bad cell is named by file, row and column), then loaded
with one INSERT per table from an Arrow table (`bulk.py`), never one per row.
Team names are normalized as SPEC §6 normalizes tag values (trimmed, lower-cased).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from gpulens.attribution.ingest.bulk import insert_rows
from gpulens.attribution.ingest.delivery import read_sql
from gpulens.errors import GpulensError
from gpulens.wire import ANOMALY, STEP, is_anomaly_kind, looks_like_jsonl, read_records

METRIC_COLUMNS = ("job_id", "team", "rank", "step", "ts", "loss", "step_seconds", "tokens", "mfu")
METRICS_SCHEMA = pa.schema([
    ("job_id", pa.string()), ("team", pa.string()), ("rank", pa.int32()), ("step", pa.int64()),
    ("ts", pa.timestamp("us")), ("loss", pa.float64()), ("step_seconds", pa.float64()),
    ("tokens", pa.int64()), ("mfu", pa.float64()),
])  # fmt: skip
ANOMALIES_SCHEMA = pa.schema([
    ("job_id", pa.string()), ("team", pa.string()), ("rank", pa.int32()), ("step", pa.int64()),
    ("kind", pa.string()), ("loss", pa.float64()),
])  # fmt: skip


class Anomaly(Protocol):
    step: int
    kind: str
    loss: float


Detector = Callable[[Iterable[tuple[int, float]]], Sequence[Anomaly]]


@dataclass(frozen=True)
class RunsResult:
    jobs: tuple[str, ...]
    metrics: int
    anomalies: int


@dataclass
class _Run:
    metrics: list[tuple[Any, ...]]
    online: list[tuple[Any, ...]]


def _number(value: Any, path: Path, row: int, field: str, kind: type = float) -> Any:
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise GpulensError(f"{value!r} is not a number", path=path, row=row, field=field) from None


def _ts(value: Any, path: Path, row: int) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return datetime.fromtimestamp(float(value), timezone.utc).replace(tzinfo=None)
    except (TypeError, ValueError):
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise GpulensError(f"{value!r} is not a timestamp", path=path, row=row, field="ts") from None
        return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def _team(value: Any) -> str | None:
    """SPEC §6 normalization, as for tags and usage: `" Vision "` is team `vision`."""
    return (str(value).strip().lower() or None) if value is not None else None


def _loss(rec: dict[str, Any], path: Path, row: int, null_is_nan: bool) -> float | None:
    """The loss. JSON has no NaN, so the trainer writes a non-finite loss as `null` (SPEC §4): in
    JSONL a present `null` is NaN; an absent key (or an empty CSV cell) is a step without a loss."""
    if null_is_nan and "loss" in rec and rec["loss"] is None:
        return math.nan
    return _number(rec.get("loss"), path, row, "loss")


def _metric_row(rec: dict[str, Any], path: Path, row: int, *, null_is_nan: bool = False) -> tuple[Any, ...]:
    step = _number(rec.get("step"), path, row, "step", int)
    if step is None:
        raise GpulensError("a step record needs a step", path=path, row=row, field="step")
    return (
        str(rec.get("job_id") or path.stem),
        _team(rec.get("team")),
        _number(rec.get("rank"), path, row, "rank", int),
        step,
        _ts(rec.get("ts"), path, row),
        _loss(rec, path, row, null_is_nan),
        _number(rec.get("step_seconds"), path, row, "step_seconds"),
        _number(rec.get("tokens"), path, row, "tokens", int),
        _number(rec.get("mfu"), path, row, "mfu"),
    )


def read_jsonl(path: Path) -> dict[str, _Run]:
    """Step and anomaly records of a trainer JSONL log, per job; other kinds are ignored."""
    runs: dict[str, _Run] = {}
    for row, rec in read_records(path):
        kind = rec["kind"]
        if kind == STEP:
            m = _metric_row(rec, path, row, null_is_nan=True)
            runs.setdefault(m[0], _Run([], [])).metrics.append(m)
        elif kind == ANOMALY and is_anomaly_kind(rec.get("anomaly")):
            job = str(rec.get("job_id") or path.stem)
            step = _number(rec.get("step"), path, row, "step", int)
            if step is None:
                raise GpulensError("an anomaly record needs a step", path=path, row=row, field="step")
            online = (
                job,
                _team(rec.get("team")),
                _number(rec.get("rank"), path, row, "rank", int),
                step,
                rec["anomaly"],
                _number(rec.get("loss"), path, row, "loss"),
            )
            runs.setdefault(job, _Run([], [])).online.append(online)
    return runs


def read_csv_run(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, _Run]:
    """CSV `step,loss[,job_id,team,ts,rank,step_seconds,tokens,mfu]`; DuckDB parses, rows are checked here."""
    try:
        cur = con.execute(f"SELECT * FROM {read_sql(str(path))}")
        names = [str(d[0]).strip().lower() for d in cur.description]  # `Step,Loss` as `runs check` reads it
        records = cur.fetchall()
    except duckdb.Error as exc:
        raise GpulensError(f"cannot be read ({str(exc).splitlines()[0]})", path=path) from exc
    for name in ("step", "loss"):
        if name not in names:
            raise GpulensError("required column missing (step,loss[,job_id,team,ts])", path=path, field=name)
    runs: dict[str, _Run] = {}
    for row, values in enumerate(records, start=1):
        m = _metric_row(dict(zip(names, values, strict=True)), path, row)
        runs.setdefault(m[0], _Run([], [])).metrics.append(m)
    return runs


def _anomalies(run: _Run, detect: Detector) -> list[tuple[Any, ...]]:
    """Offline anomalies of the run's loss curve (lowest rank, by step) plus the online ones, once each."""
    rank = min((m[2] for m in run.metrics if m[2] is not None), default=None)
    curve = sorted((m[3], m[5]) for m in run.metrics if m[2] == rank and m[5] is not None)
    job, team = (
        (run.metrics[0][0], run.metrics[0][1]) if run.metrics else (run.online[0][0], run.online[0][1])
    )
    found = {(a[3], a[4]): a for a in run.online}
    for a in detect(curve):
        loss = None if a.loss is None or not math.isfinite(a.loss) else float(a.loss)
        found.setdefault((int(a.step), str(a.kind)), (job, team, rank, int(a.step), str(a.kind), loss))
    return sorted(found.values(), key=lambda a: (a[3], a[4]))


def ingest_runs(
    con: duckdb.DuckDBPyConnection, paths: Sequence[Path | str], *, detect: Detector
) -> RunsResult:
    """Loads runs; each job's metrics and anomalies replace what the warehouse held for it."""
    runs: dict[str, _Run] = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise GpulensError("no such file", path=p)
        found = read_jsonl(p) if looks_like_jsonl(p) else read_csv_run(con, p)
        for job, run in found.items():
            merged = runs.setdefault(job, _Run([], []))
            merged.metrics += run.metrics
            merged.online += run.online
    anomalies = {job: _anomalies(run, detect) for job, run in runs.items()}
    metrics = [m for run in runs.values() for m in run.metrics]
    found = [a for rows in anomalies.values() for a in rows]
    con.begin()
    try:
        for table, rows, schema in (
            ("train_metrics", metrics, METRICS_SCHEMA),
            ("train_anomalies", found, ANOMALIES_SCHEMA),
        ):
            con.execute(f"DELETE FROM {table} WHERE list_contains(?, job_id)", [sorted(runs)])
            insert_rows(con, table, rows, schema)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return RunsResult(tuple(sorted(runs)), len(metrics), len(found))
