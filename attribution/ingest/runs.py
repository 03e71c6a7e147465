"""Training runs (`train_metrics`, `train_anomalies`): the trainer's JSONL (SPEC §4 records) or CSV
`step,loss[,job_id,team,ts,...]`; without a job_id the file's stem is the job id.

The loss-curve detector is injected (`detect`): attribution may not import gpulens.trainer (SPEC §1);
the CLI passes `gpulens.trainer.health.scan`. Anomalies the trainer reported online (`"kind":"anomaly"`)
are kept beside the ones found offline. Re-ingesting a job replaces its rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import duckdb

from gpulens.attribution.ingest.delivery import read_sql
from gpulens.errors import GpulensError

METRIC_COLUMNS = ("job_id", "team", "rank", "step", "ts", "loss", "step_seconds", "tokens", "mfu")
KINDS = ("nan", "spike", "divergence")


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


def _metric_row(rec: dict[str, Any], path: Path, row: int) -> tuple[Any, ...]:
    step = _number(rec.get("step"), path, row, "step", int)
    if step is None:
        raise GpulensError("a step record needs a step", path=path, row=row, field="step")
    return (
        str(rec.get("job_id") or path.stem),
        rec.get("team") or None,
        _number(rec.get("rank"), path, row, "rank", int),
        step,
        _ts(rec.get("ts"), path, row),
        _number(rec.get("loss"), path, row, "loss"),
        _number(rec.get("step_seconds"), path, row, "step_seconds"),
        _number(rec.get("tokens"), path, row, "tokens", int),
        _number(rec.get("mfu"), path, row, "mfu"),
    )


def read_jsonl(path: Path) -> dict[str, _Run]:
    """Step and anomaly records of a trainer JSONL log, per job; other kinds are ignored."""
    runs: dict[str, _Run] = {}
    with path.open(encoding="utf-8") as fh:
        for row, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GpulensError(f"not a JSON object ({exc.msg})", path=path, row=row) from None
            kind = rec.get("kind", "step")
            if kind == "step":
                m = _metric_row(rec, path, row)
                runs.setdefault(m[0], _Run([], [])).metrics.append(m)
            elif kind == "anomaly" and rec.get("anomaly") in KINDS:
                job = str(rec.get("job_id") or path.stem)
                step = _number(rec.get("step"), path, row, "step", int)
                online = (
                    job,
                    rec.get("team") or None,
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
        names = [d[0] for d in cur.description]
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


def _is_jsonl(path: Path) -> bool:
    """The trainer's log is one JSON object per line; anything else is read as CSV."""
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                return line.lstrip().startswith(b"{")
    return False


def ingest_runs(
    con: duckdb.DuckDBPyConnection, paths: Sequence[Path | str], *, detect: Detector
) -> RunsResult:
    """Loads runs; each job's metrics and anomalies replace what the warehouse held for it."""
    runs: dict[str, _Run] = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise GpulensError("no such file", path=p)
        found = read_jsonl(p) if _is_jsonl(p) else read_csv_run(con, p)
        for job, run in found.items():
            merged = runs.setdefault(job, _Run([], []))
            merged.metrics += run.metrics
            merged.online += run.online
    anomalies = {job: _anomalies(run, detect) for job, run in runs.items()}
    con.begin()
    try:
        for job, run in runs.items():
            con.execute("DELETE FROM train_metrics WHERE job_id = ?", [job])
            con.execute("DELETE FROM train_anomalies WHERE job_id = ?", [job])
            if run.metrics:
                con.executemany(
                    f"INSERT INTO train_metrics ({', '.join(METRIC_COLUMNS)}) VALUES "
                    f"({', '.join('?' for _ in METRIC_COLUMNS)})",
                    run.metrics,
                )
            if anomalies[job]:
                con.executemany(
                    "INSERT INTO train_anomalies (job_id, team, rank, step, kind, loss) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    anomalies[job],
                )
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return RunsResult(
        tuple(sorted(runs)),
        sum(len(r.metrics) for r in runs.values()),
        sum(len(a) for a in anomalies.values()),
    )
