"""Training runs (`train_metrics`, `train_phases`, `train_runs`, `train_anomalies`): the trainer's
JSONL (docs/design.md §4 records) or CSV `step,loss[,job_id,team,ts,...]`; without a job_id the file's
stem is the job id.

Attempts: a record's `attempt` when it carries one; else a `run start` after other records of the same
(job, rank), or a step number logged again, opens the next attempt (`AttemptCounter`). Every step is
kept; one that a later attempt of the same rank ran again is marked `redone` (its time is wasted
progress, docs/design.md §8) so that nothing counts it twice: a 3,000-step run that crashed at 2,000
and resumed from its step-1,500 checkpoint holds 3,500 rows, 3,000 of them not redone.

The loss-curve detector is injected (`detect`): attribution may not import gpulens.trainer
(docs/design.md §1); the CLI passes `gpulens.trainer.health.scan`. Anomalies the trainer reported
online (`"kind":"anomaly"`) are kept beside the ones found offline. Re-ingesting a job replaces its rows.

Rows are parsed and checked in Python (so a bad cell is named by file, row and column), then loaded
with one INSERT per table from an Arrow table (`bulk.py`), never one per row.
Team names are normalized as tags are (docs/design.md §6: trimmed, lower-cased).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from gpulens import runlogs
from gpulens.attribution.goodput import AttemptRow, JobRows, PhaseRow, StepRow
from gpulens.attribution.ingest.bulk import insert_rows
from gpulens.attribution.ingest.delivery import read_sql
from gpulens.errors import GpulensError
from gpulens.wire import ANOMALY, PHASE, RUN, STEP, is_anomaly_kind, read_records

# In the table's column order (benchmarks insert positionally).
METRIC_COLUMNS = (
    "job_id", "team", "rank", "step", "ts", "loss", "step_seconds", "tokens", "mfu",
    "attempt", "grad_norm", "lr", "redone",
)  # fmt: skip
METRICS_SCHEMA = pa.schema([
    ("job_id", pa.string()), ("team", pa.string()), ("rank", pa.int32()), ("step", pa.int64()),
    ("ts", pa.timestamp("us")), ("loss", pa.float64()), ("step_seconds", pa.float64()),
    ("tokens", pa.int64()), ("mfu", pa.float64()), ("attempt", pa.int32()), ("grad_norm", pa.float64()),
    ("lr", pa.float64()), ("redone", pa.bool_()),
])  # fmt: skip
ANOMALIES_SCHEMA = pa.schema([
    ("job_id", pa.string()), ("team", pa.string()), ("rank", pa.int32()), ("step", pa.int64()),
    ("kind", pa.string()), ("loss", pa.float64()),
])  # fmt: skip
PHASES_SCHEMA = pa.schema([
    ("job_id", pa.string()), ("team", pa.string()), ("rank", pa.int32()), ("attempt", pa.int32()),
    ("phase", pa.string()), ("start", pa.timestamp("us")), ("end", pa.timestamp("us")), ("step", pa.int64()),
])  # fmt: skip
RUNS_SCHEMA = pa.schema([
    ("job_id", pa.string()), ("team", pa.string()), ("attempt", pa.int32()), ("started", pa.timestamp("us")),
    ("ended", pa.timestamp("us")), ("world_size", pa.int32()),
])  # fmt: skip
# Positions in a metric row (METRIC_COLUMNS order).
_JOB, _TEAM, _RANK, _STEP, _TS, _LOSS, _SECONDS, _ATTEMPT, _REDONE = 0, 1, 2, 3, 4, 5, 6, 9, 12


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
    phases: int = 0
    attempts: int = 0
    redone: int = 0


@dataclass
class _Run:
    """One job's rows as read, in file order; `attempt` and `redone` of metric rows are set by `finish`."""

    metrics: list[list[Any]] = field(default_factory=list)
    online: list[tuple[Any, ...]] = field(default_factory=list)
    phases: list[tuple[Any, ...]] = field(default_factory=list)
    # (rank, attempt, event, ts, world_size) of `run` records
    events: list[tuple[int | None, int, str, datetime | None, int | None]] = field(default_factory=list)
    run_team: str | None = None  # the team a `run` record names: a log may hold nothing else

    def extend(self, other: _Run) -> None:
        self.metrics += other.metrics
        self.online += other.online
        self.phases += other.phases
        self.events += other.events
        self.run_team = self.run_team or other.run_team

    @property
    def job_id(self) -> str:
        first = self.metrics or self.phases or self.online
        return str(first[0][0]) if first else self._job

    _job: str = ""

    @property
    def team(self) -> str | None:
        named = (r[_TEAM] for r in (*self.metrics, *self.phases, *self.online) if r[_TEAM])
        return next(named, self.run_team)


class AttemptCounter:
    """The attempt of each record of one (job, rank), in the order they were logged (docs/design.md §4):
    the record's own `attempt`, else a new attempt at a `run start` that follows other records, or at
    a step number that is not above the last one."""

    def __init__(self) -> None:
        self.attempt = 1
        self.last_step: int | None = None
        self.seen = False

    def assign(
        self, kind: str, explicit: int | None, step: int | None = None, event: str | None = None
    ) -> int:
        if explicit is not None:
            if explicit != self.attempt:
                self.last_step = None
            self.attempt = explicit
        elif (kind == RUN and event == "start" and self.seen) or (
            kind == STEP and step is not None and self.last_step is not None and step <= self.last_step
        ):
            self.attempt, self.last_step = self.attempt + 1, None
        if kind == STEP:
            self.last_step = step
        self.seen = True
        return self.attempt


def _number(value: Any, path: Path, row: int, field: str, kind: type = float) -> Any:
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise GpulensError(f"{value!r} is not a number", path=path, row=row, field=field) from None


def _ts(value: Any, path: Path, row: int, field: str = "ts") -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return datetime.fromtimestamp(float(value), timezone.utc).replace(tzinfo=None)
    except (TypeError, ValueError):
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise GpulensError(f"{value!r} is not a timestamp", path=path, row=row, field=field) from None
        return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def _team(value: Any) -> str | None:
    """docs/design.md §6 normalization, as for tags and usage: `" Vision "` is team `vision`."""
    return (str(value).strip().lower() or None) if value is not None else None


def _loss(rec: dict[str, Any], path: Path, row: int, null_is_nan: bool) -> float | None:
    """The loss. JSON has no NaN, so the trainer writes a non-finite loss as `null` (docs/design.md §4):
    in JSONL a present `null` is NaN; an absent key (or an empty CSV cell) is a step without a loss."""
    if null_is_nan and "loss" in rec and rec["loss"] is None:
        return math.nan
    return _number(rec.get("loss"), path, row, "loss")


def _attempt(rec: dict[str, Any], path: Path, row: int) -> int | None:
    attempt = _number(rec.get("attempt"), path, row, "attempt", int)
    if attempt is not None and attempt < 1:
        raise GpulensError(
            f"{attempt} is not an attempt (they count from 1)", path=path, row=row, field="attempt"
        )
    return attempt


def _job(rec: dict[str, Any], path: Path) -> str:
    """A record without a job_id belongs to the log's job, named after its file."""
    return str(rec.get("job_id") or path.stem)


def _who(rec: dict[str, Any], path: Path, row: int) -> tuple[str, str | None, int | None]:
    """Job, team and rank: the columns every step, phase and anomaly row starts with."""
    return _job(rec, path), _team(rec.get("team")), _number(rec.get("rank"), path, row, "rank", int)


def _required_step(rec: dict[str, Any], path: Path, row: int, record: str) -> int:
    step = _number(rec.get("step"), path, row, "step", int)
    if step is None:
        raise GpulensError(f"{record} needs a step", path=path, row=row, field="step")
    return step


def _metric_row(rec: dict[str, Any], path: Path, row: int, *, null_is_nan: bool = False) -> list[Any]:
    step = _required_step(rec, path, row, "a step record")
    return [
        *_who(rec, path, row),
        step,
        _ts(rec.get("ts"), path, row),
        _loss(rec, path, row, null_is_nan),
        _number(rec.get("step_seconds"), path, row, "step_seconds"),
        _number(rec.get("tokens"), path, row, "tokens", int),
        _number(rec.get("mfu"), path, row, "mfu"),
        _attempt(rec, path, row),
        _number(rec.get("grad_norm"), path, row, "grad_norm"),
        _number(rec.get("lr"), path, row, "lr"),
        False,
    ]


def _phase_row(rec: dict[str, Any], path: Path, row: int, attempt: int) -> tuple[Any, ...]:
    start, end = _ts(rec.get("start"), path, row, "start"), _ts(rec.get("end"), path, row, "end")
    if start is None or end is None:
        raise GpulensError("a phase record needs a start and an end", path=path, row=row, field="start")
    if end < start:
        raise GpulensError("a phase cannot end before it starts", path=path, row=row, field="end")
    if not isinstance(rec.get("phase"), str) or not rec["phase"]:
        raise GpulensError("a phase record needs a phase name", path=path, row=row, field="phase")
    return (
        *_who(rec, path, row),
        attempt,
        rec["phase"],
        start,
        end,
        _number(rec.get("step"), path, row, "step", int),
    )


def _online_anomaly(rec: dict[str, Any], path: Path, row: int) -> tuple[Any, ...]:
    step = _required_step(rec, path, row, "an anomaly record")
    return (
        *_who(rec, path, row),
        step,
        rec["anomaly"],
        _number(rec.get("loss"), path, row, "loss"),
    )


Counters = dict[tuple[str, int | None], AttemptCounter]


def read_jsonl(path: Path, counters: Counters | None = None) -> dict[str, _Run]:
    """Step, phase, run and anomaly records of a trainer JSONL log, per job, with their attempts;
    `counters` carries attempt numbering from file to file (one job's attempts in several logs)."""
    counters = {} if counters is None else counters
    runs: dict[str, _Run] = {}
    for row, rec in read_records(path):
        kind = rec["kind"]
        job = _job(rec, path)
        rank = _number(rec.get("rank"), path, row, "rank", int)
        counter = counters.setdefault((job, rank), AttemptCounter())
        if kind == STEP:
            m = _metric_row(rec, path, row, null_is_nan=True)
            m[_ATTEMPT] = counter.assign(STEP, m[_ATTEMPT], m[_STEP])
            runs.setdefault(job, _Run()).metrics.append(m)
        elif kind == PHASE:
            attempt = counter.assign(PHASE, _attempt(rec, path, row))
            runs.setdefault(job, _Run()).phases.append(_phase_row(rec, path, row, attempt))
        elif kind == RUN and rec.get("event") in ("start", "end"):
            attempt = counter.assign(RUN, _attempt(rec, path, row), event=rec["event"])
            world = _number(rec.get("world_size"), path, row, "world_size", int)
            run = runs.setdefault(job, _Run(_job=job))
            run.events.append((rank, attempt, rec["event"], _ts(rec.get("ts"), path, row), world))
            run.run_team = run.run_team or _team(rec.get("team"))
        elif kind == ANOMALY and is_anomaly_kind(rec.get("anomaly")):
            runs.setdefault(job, _Run()).online.append(_online_anomaly(rec, path, row))
    return runs


def read_csv_run(
    con: duckdb.DuckDBPyConnection, path: Path, counters: Counters | None = None
) -> dict[str, _Run]:
    """CSV `step,loss[,job_id,team,ts,rank,step_seconds,tokens,mfu,attempt,...]`; DuckDB parses, rows are
    checked here."""
    counters = {} if counters is None else counters
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
        counter = counters.setdefault((m[_JOB], m[_RANK]), AttemptCounter())
        m[_ATTEMPT] = counter.assign(STEP, m[_ATTEMPT], m[_STEP])
        runs.setdefault(m[_JOB], _Run()).metrics.append(m)
    return runs


def read_other_log(path: Path, counters: Counters | None = None) -> dict[str, _Run]:
    """A log in a format `gpulens.runlogs` reads (llm.c and modded-nanogpt text, Hugging Face
    trainer_state.json, Lightning metrics.csv, W&B CSV, TensorBoard): one run whose job id is the
    file's stem, with its steps, losses, learning rates and gradient norms where the log has them."""
    counters = {} if counters is None else counters
    counter = counters.setdefault((path.stem, None), AttemptCounter())
    run = _Run(_job=path.stem)
    for row, rec in enumerate(runlogs.as_records(runlogs.read_log(path)), start=1):
        m = _metric_row(rec, path, row)
        m[_ATTEMPT] = counter.assign(STEP, m[_ATTEMPT], m[_STEP])
        run.metrics.append(m)
    return {path.stem: run}


def _read_any(con: duckdb.DuckDBPyConnection, path: Path, counters: Counters) -> dict[str, _Run]:
    """The reader for the file's format, as `runs check` detects it (docs/trainer.md)."""
    fmt = runlogs.detect_format(path)
    if fmt == runlogs.JSONL:
        return read_jsonl(path, counters)
    if fmt == runlogs.CSV:
        return read_csv_run(con, path, counters)
    return read_other_log(path, counters)


def read_runs(con: duckdb.DuckDBPyConnection, paths: Sequence[Path | str]) -> dict[str, _Run]:
    """Every job of the files, merged over files (given in the order they were logged), finished."""
    runs: dict[str, _Run] = {}
    counters: Counters = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise GpulensError("no such file", path=p)
        found = _read_any(con, p, counters)
        for job, run in found.items():
            runs.setdefault(job, _Run(_job=job)).extend(run)
    for run in runs.values():
        mark_redone(run.metrics)
    return {job: run for job, run in runs.items() if run.metrics or run.phases or run.events}


def mark_redone(metrics: Sequence[list[Any]]) -> None:
    """Marks each step row that a later attempt of the same rank ran again: a later attempt whose
    logged steps span this step number (it resumed from a checkpoint at or before it, and got past
    it), so a log that records every k-th step is judged as one that records every step."""
    spans: dict[int | None, dict[int, tuple[int, int]]] = {}  # rank -> attempt -> (first, last step)
    for m in metrics:
        first, last = spans.setdefault(m[_RANK], {}).get(m[_ATTEMPT], (m[_STEP], m[_STEP]))
        spans[m[_RANK]][m[_ATTEMPT]] = (min(first, m[_STEP]), max(last, m[_STEP]))
    later = {rank: _later_spans(by_attempt) for rank, by_attempt in spans.items()}
    for m in metrics:
        starts, ends = later[m[_RANK]][m[_ATTEMPT]]
        i = bisect.bisect_right(starts, m[_STEP]) - 1
        m[_REDONE] = i >= 0 and m[_STEP] <= ends[i]


def _later_spans(by_attempt: dict[int, tuple[int, int]]) -> dict[int, tuple[list[int], list[int]]]:
    """Per attempt, the step ranges of all later attempts merged (starts, ends), for a binary search:
    a job restarted hundreds of times is checked in n log n, not n x attempts."""
    found: dict[int, tuple[list[int], list[int]]] = {}
    after: list[tuple[int, int]] = []
    for attempt in sorted(by_attempt, reverse=True):
        starts: list[int] = []
        ends: list[int] = []
        for first, last in sorted(after):
            if starts and first <= ends[-1] + 1:
                ends[-1] = max(ends[-1], last)
            else:
                starts.append(first)
                ends.append(last)
        found[attempt] = (starts, ends)
        after.append(by_attempt[attempt])
    return found


def _record_start(m: Sequence[Any]) -> datetime | None:
    if m[_TS] is None:
        return None
    return m[_TS] - timedelta(seconds=m[_SECONDS] or 0.0)


def attempt_rows(run: _Run) -> list[tuple[Any, ...]]:
    """`train_runs` rows: per attempt of the lowest rank, its `run start` (else its first record's
    start), its clean `run end` (else NULL) and world size."""
    ranks = [m[_RANK] for m in run.metrics] + [p[2] for p in run.phases] + [e[0] for e in run.events]
    rank = min((r for r in ranks if r is not None), default=None)
    first: dict[int, datetime] = {}
    for attempt, t in [(m[_ATTEMPT], _record_start(m)) for m in run.metrics if m[_RANK] == rank] + [
        (p[3], p[5]) for p in run.phases if p[2] == rank
    ]:
        if t is not None:
            first[attempt] = min(first.get(attempt, t), t)
    started: dict[int, datetime | None] = dict.fromkeys(first)
    ended: dict[int, datetime] = {}
    world: dict[int, int] = {}
    for r, attempt, event, ts, size in run.events:
        if r != rank:
            continue
        if event == "start":
            started[attempt] = ts
            if size is not None:
                world[attempt] = size
        elif ts is not None:
            ended[attempt] = ts
    job, team = run.job_id, run.team  # once: `team` scans the rows
    return [(job, team, a, started[a] or first.get(a), ended.get(a), world.get(a)) for a in sorted(started)]


def job_rows(run: _Run) -> JobRows:
    """A job as goodput reads it (docs/design.md §8), from the rows `ingest runs` stores."""
    return JobRows(
        job_id=run.job_id,
        team=run.team,
        steps=[
            StepRow(m[_RANK], m[_ATTEMPT], m[_STEP], m[_TS], m[_SECONDS], m[_REDONE]) for m in run.metrics
        ],
        phases=[PhaseRow(p[2], p[3], p[4], p[5], p[6]) for p in run.phases],
        attempts=[AttemptRow(a, s, e) for _, _, a, s, e, _ in attempt_rows(run)],
    )


def _anomalies(run: _Run, detect: Detector) -> list[tuple[Any, ...]]:
    """Offline anomalies of the run's loss curve (lowest rank, by step, steps a later attempt redid
    left out) plus the online ones, once each."""
    rank = min((m[_RANK] for m in run.metrics if m[_RANK] is not None), default=None)
    curve = sorted(
        (m[_STEP], m[_LOSS])
        for m in run.metrics
        if m[_RANK] == rank and m[_LOSS] is not None and not m[_REDONE]
    )
    job, team = run.job_id, run.team
    found = {(a[3], a[4]): a for a in run.online}
    if curve:
        for a in detect(curve):
            loss = None if a.loss is None or not math.isfinite(a.loss) else float(a.loss)
            found.setdefault((int(a.step), str(a.kind)), (job, team, rank, int(a.step), str(a.kind), loss))
    return sorted(found.values(), key=lambda a: (a[3], a[4]))


def ingest_runs(
    con: duckdb.DuckDBPyConnection, paths: Sequence[Path | str], *, detect: Detector
) -> RunsResult:
    """Loads runs; each job's metrics, phases, attempts and anomalies replace what the warehouse held."""
    runs = read_runs(con, paths)
    anomalies = {job: _anomalies(run, detect) for job, run in runs.items()}
    metrics = [tuple(m) for run in runs.values() for m in run.metrics]
    phases = [p for run in runs.values() for p in run.phases]
    attempts = [a for run in runs.values() for a in attempt_rows(run)]
    found = [a for rows in anomalies.values() for a in rows]
    con.begin()
    try:
        for table, rows, schema in (
            ("train_metrics", metrics, METRICS_SCHEMA),
            ("train_anomalies", found, ANOMALIES_SCHEMA),
            ("train_phases", phases, PHASES_SCHEMA),
            ("train_runs", attempts, RUNS_SCHEMA),
        ):
            con.execute(f"DELETE FROM {table} WHERE list_contains(?, job_id)", [sorted(runs)])
            insert_rows(con, table, rows, schema)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    redone = sum(1 for m in metrics if m[_REDONE])
    return RunsResult(tuple(sorted(runs)), len(metrics), len(found), len(phases), len(attempts), redone)
