"""Goodput (docs/design.md §8): every second of a job's timeline in one bucket, then in money.

A job's timeline is built from the rows `ingest runs` keeps (the same rows whether they come from a
JSONL log or from the warehouse, so `gpulens runs goodput LOG` and `gpulens goodput` agree), as small
pure steps:

1. `build_timeline`: the lowest rank's steps, phases and attempts, as intervals in epoch seconds;
2. `bucket_intervals`: each interval labelled with its bucket (kept steps `productive`, redone steps
   `wasted_progress`, phases by name, the gap after an attempt that did not end cleanly `restart`);
3. `paint`: the wall clock cut into elementary segments, each counted once in the first bucket that
   covers it (steps before phases, phases in the table's order, then restart), the rest `other`;
4. `price`: a job's GPU cost split over its buckets in proportion to their seconds, exactly (the
   parts add up to the cost to the last digit).

`goodput_window` runs the steps for every job of the warehouse whose timeline meets a window and
prices each with `allocate.job_gpu_cost`, the one place GPU time gets a price.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from itertools import pairwise
from typing import Any, Final

import duckdb

from gpulens.attribution import allocate as alloc
from gpulens.errors import GpulensError
from gpulens.wire import PHASES, phase_bucket

PRODUCTIVE: Final = "productive"
WASTED: Final = "wasted_progress"
RESTART: Final = "restart"
OTHER: Final = "other"
# The table's order (docs/design.md §8), which is also the precedence of overlapping intervals.
PHASE_ORDER: Final = ("checkpoint_save", "checkpoint_load", "data_wait", "eval", "init")
BUCKETS: Final = (PRODUCTIVE, WASTED, *PHASE_ORDER, RESTART, OTHER)
BADPUT: Final = BUCKETS[1:]
assert set(PHASE_ORDER) == set(PHASES), "every named phase of the wire format has a bucket"

_EPOCH = datetime(1970, 1, 1)
_CENT_DIGITS = Decimal("1e-10")  # DECIMAL(38, 10), as the warehouse keeps money


def epoch(t: datetime) -> float:
    """A naive-UTC (or aware) datetime as epoch seconds."""
    naive = t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t
    return (naive - _EPOCH).total_seconds()


# ---- rows: what `ingest runs` keeps ------------------------------------------------------------------


@dataclass(frozen=True)
class StepRow:
    rank: int | None
    attempt: int
    step: int
    ts: datetime | None  # when the step ended
    step_seconds: float | None
    redone: bool


@dataclass(frozen=True)
class PhaseRow:
    rank: int | None
    attempt: int
    phase: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class AttemptRow:
    attempt: int
    started: datetime | None
    ended: datetime | None  # None: the attempt did not end cleanly


@dataclass(frozen=True)
class JobRows:
    job_id: str
    team: str | None
    steps: Sequence[StepRow]
    phases: Sequence[PhaseRow]
    attempts: Sequence[AttemptRow]


# ---- step 1: the timeline ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    start: float
    end: float
    bucket: str = OTHER


@dataclass(frozen=True)
class Timeline:
    """The lowest rank's records of one job in epoch seconds: steps (start, end, redone), phases
    (start, end, name) and, per attempt, its start, clean end (None if none) and last record's end."""

    job_id: str
    team: str | None
    steps: tuple[tuple[float, float, bool], ...]
    phases: tuple[tuple[float, float, str], ...]
    attempts: tuple[tuple[int, float, float | None, float], ...]

    @property
    def wall(self) -> tuple[float, float]:
        """First `run start` (else first record) to last `run end` (else last record)."""
        if not self.attempts:
            return (0.0, 0.0)
        first, last = self.attempts[0], self.attempts[-1]
        return (first[1], last[2] if last[2] is not None else last[3])


def _lowest_rank(ranks: Iterable[int | None]) -> int | None:
    present = [r for r in ranks if r is not None]
    return min(present) if present else None


def build_timeline(rows: JobRows) -> Timeline:
    """Step 1: the lowest rank's steps and phases as intervals; each attempt's span."""
    rank = _lowest_rank([s.rank for s in rows.steps] + [p.rank for p in rows.phases])
    steps = step_intervals([s for s in rows.steps if s.rank == rank and s.ts is not None])
    phases = [(epoch(p.start), epoch(p.end), p.phase, p.attempt) for p in rows.phases if p.rank == rank]
    return Timeline(
        rows.job_id,
        rows.team,
        tuple(sorted((a, b, r) for a, b, r, _ in steps)),
        tuple(sorted((a, b, n) for a, b, n, _ in phases)),
        _attempt_spans(
            rows.attempts, [(a, b, n) for a, b, _, n in steps] + [(a, b, n) for a, b, _, n in phases]
        ),
    )


def step_intervals(steps: Sequence[StepRow]) -> list[tuple[float, float, bool, int]]:
    """(start, end, redone, attempt) of each timed step of one rank. A record logged k steps after the
    previous one of its attempt (a trainer that logs every k-th step) stands for those k steps:
    k x its step_seconds before its ts, never reaching back past the previous record's end."""
    found = []
    last: dict[int, tuple[int, float]] = {}  # attempt -> (step, end) of its previous record
    for s in sorted(steps, key=lambda s: (s.attempt, s.step)):
        end = epoch(s.ts) if s.ts is not None else 0.0
        before = last.get(s.attempt)
        count = s.step - before[0] if before is not None and s.step > before[0] else 1
        start = end - count * (s.step_seconds or 0.0)
        if before is not None and count > 1:
            start = max(start, before[1])
        found.append((min(start, end), end, s.redone, s.attempt))
        last[s.attempt] = (s.step, end)
    return found


def _attempt_spans(
    attempts: Sequence[AttemptRow], records: Sequence[tuple[float, float, int]]
) -> tuple[tuple[int, float, float | None, float], ...]:
    """(attempt, start, clean end, end of its last record) per attempt, in order; an attempt's start
    is its `run start`, else its first record's start."""
    declared = {a.attempt: a for a in attempts}
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for start, end, n in records:  # one pass: a run of 466 restarts has as many attempts
        first[n] = min(first.get(n, start), start)
        last[n] = max(last.get(n, end), end)
    spans = []
    for n in sorted(set(declared) | set(first)):
        row = declared.get(n)
        started = epoch(row.started) if row and row.started else first.get(n)
        ended = epoch(row.ended) if row and row.ended else None
        if started is None:
            continue
        spans.append((n, started, ended, max(started, last.get(n, started), ended or started)))
    return tuple(spans)


# ---- step 2: intervals with their buckets -------------------------------------------------------------


def bucket_intervals(timeline: Timeline) -> list[Interval]:
    """Step 2: steps, phases and restart gaps, each labelled with the bucket it counts in."""
    found = [Interval(a, b, WASTED if redone else PRODUCTIVE) for a, b, redone in timeline.steps]
    found += [Interval(a, b, phase_bucket(name)) for a, b, name in timeline.phases]
    found += restart_gaps(timeline)
    return [i for i in found if i.end > i.start]


def restart_gaps(timeline: Timeline) -> list[Interval]:
    """From the last record of an attempt that did not end cleanly to the start of the next."""
    pairs = pairwise(timeline.attempts)
    return [Interval(this[3], after[1], RESTART) for this, after in pairs if this[2] is None]


# ---- step 3: paint the wall clock ----------------------------------------------------------------------


def paint(intervals: Sequence[Interval], wall: tuple[float, float]) -> dict[str, float]:
    """Step 3: seconds per bucket over `wall`; a second covered by several intervals counts once, in
    the first bucket of `BUCKETS` among them; seconds no interval covers are `other`."""
    start, end = wall
    rank = {b: i for i, b in enumerate(BUCKETS)}
    events: list[tuple[float, int, int]] = []
    for i in intervals:
        a, b = max(i.start, start), min(i.end, end)
        if b > a:
            events += [(a, 1, rank[i.bucket]), (b, -1, rank[i.bucket])]
    events.sort()
    seconds = dict.fromkeys(BUCKETS, 0.0)
    open_counts = [0] * len(BUCKETS)
    cursor = start
    for t, delta, index in events:
        if t > cursor:
            seconds[_first_open(open_counts)] += t - cursor
            cursor = t
        open_counts[index] += delta
    if end > cursor:
        seconds[OTHER] += end - cursor
    return seconds


def _first_open(open_counts: Sequence[int]) -> str:
    return next((BUCKETS[i] for i, n in enumerate(open_counts) if n > 0), OTHER)


# ---- one job -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobGoodput:
    job_id: str
    team: str | None
    attempts: int
    wall_seconds: float
    seconds: Mapping[str, float]
    cost: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def goodput(self) -> float | None:
        return self.seconds[PRODUCTIVE] / self.wall_seconds if self.wall_seconds > 0 else None

    @property
    def badput_cost(self) -> Decimal:
        return sum((self.cost.get(b, Decimal(0)) for b in BADPUT), Decimal(0))


def job_goodput(rows: JobRows, window: tuple[float, float] | None = None) -> JobGoodput:
    """A job's buckets over its timeline, or over the part of it inside `window` (epoch seconds).

    Which steps are redone is decided over the whole run (a step redone after the window is still
    wasted inside it); only the counting is clipped."""
    timeline = build_timeline(rows)
    wall = timeline.wall
    if window is not None:
        wall = (max(wall[0], window[0]), min(wall[1], window[1]))
    wall = (wall[0], max(wall[0], wall[1]))
    return JobGoodput(
        job_id=rows.job_id,
        team=rows.team,
        attempts=len(timeline.attempts),
        wall_seconds=wall[1] - wall[0],
        seconds=paint(bucket_intervals(timeline), wall),
    )


# ---- step 4: money --------------------------------------------------------------------------------------


def price(seconds: Mapping[str, float], cost: Decimal) -> dict[str, Decimal]:
    """Step 4: `cost` split over the buckets by their seconds, cut with a running sum so that the
    parts add up to `cost` exactly (docs/design.md §8: bucket money = cost x seconds / wall)."""
    wall = sum(seconds.values())
    if wall <= 0:
        return dict.fromkeys(BUCKETS, Decimal(0))
    parts: dict[str, Decimal] = {}
    done, before = 0.0, Decimal(0)
    for bucket in BUCKETS:
        done += seconds.get(bucket, 0.0)
        upto = (
            cost if bucket == BUCKETS[-1] else (cost * Decimal(done) / Decimal(wall)).quantize(_CENT_DIGITS)
        )
        parts[bucket], before = upto - before, upto
    return parts


# ---- the warehouse ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoodputReport:
    """`gpulens goodput`: every job whose run meets the window, with its buckets in seconds and money;
    `gpu_cost` per team is its whole GPU spend in the window (jobs with and without a run log)."""

    label: str
    currency: str
    jobs: tuple[JobGoodput, ...]
    gpu_cost: Mapping[str | None, Decimal]

    def team_cost(self) -> dict[str | None, dict[str, Decimal]]:
        teams: dict[str | None, dict[str, Decimal]] = {}
        for job in self.jobs:
            into = teams.setdefault(job.team, dict.fromkeys(BUCKETS, Decimal(0)))
            for bucket, money in job.cost.items():
                into[bucket] += money
        return teams


def load_job_rows(con: duckdb.DuckDBPyConnection, jobs: Sequence[str] | None = None) -> list[JobRows]:
    """Every job's rows (or those of `jobs`) as `ingest runs` stored them."""
    where, params = ("WHERE list_contains(?, job_id)", [list(jobs)]) if jobs is not None else ("", [])
    steps: dict[str, list[StepRow]] = {}
    teams: dict[str, str | None] = {}
    for job, team, rank, attempt, step, ts, seconds, redone in con.execute(
        f"""SELECT job_id, team, rank, coalesce(attempt, 1), step, ts, step_seconds, coalesce(redone, false)
            FROM train_metrics {where}""",
        params,
    ).fetchall():
        steps.setdefault(job, []).append(StepRow(rank, attempt, step, ts, seconds, redone))
        teams[job] = teams.get(job) or team
    phases: dict[str, list[PhaseRow]] = {}
    for job, team, rank, attempt, name, start, end in con.execute(
        f'SELECT job_id, team, rank, attempt, phase, "start", "end" FROM train_phases {where}', params
    ).fetchall():
        phases.setdefault(job, []).append(PhaseRow(rank, attempt, name, start, end))
        teams[job] = teams.get(job) or team
    attempts: dict[str, list[AttemptRow]] = {}
    for job, team, attempt, started, ended in con.execute(
        f"SELECT job_id, team, attempt, started, ended FROM train_runs {where}", params
    ).fetchall():
        attempts.setdefault(job, []).append(AttemptRow(attempt, started, ended))
        teams[job] = teams.get(job) or team
    return [
        JobRows(job, teams[job], steps.get(job, []), phases.get(job, []), attempts.get(job, []))
        for job in sorted(teams)
    ]


def _job_costs(
    con: duckdb.DuckDBPyConnection, window: alloc.Window, options: alloc.Options
) -> tuple[dict[str, Decimal], dict[str | None, Decimal]]:
    """What each job's GPU time in the window cost, and each team's whole GPU spend."""
    priced = alloc.job_gpu_cost(con, window, options)
    jobs = con.execute(
        f"SELECT job_id, sum(cost) FROM {priced.cost} WHERE job_id IS NOT NULL GROUP BY 1"
    ).fetchall()
    teams = con.execute(f"SELECT team, sum(cost) FROM {priced.cost} GROUP BY 1").fetchall()
    return {j: Decimal(c) for j, c in jobs}, {t: Decimal(c) for t, c in teams}


def _currency(con: duckdb.DuckDBPyConnection, window: alloc.Window) -> str:
    """The one currency of the window's lines; GPU time billed in two currencies cannot be added up."""
    found = [
        str(r[0])
        for r in con.execute(
            "SELECT DISTINCT currency FROM cost_line_items WHERE usage_start < ? AND usage_end > ? "
            "AND currency IS NOT NULL ORDER BY 1",
            [window.end, window.start],
        ).fetchall()
    ]
    if len(found) > 1:
        raise GpulensError(
            f"the window's lines are billed in {len(found)} currencies ({', '.join(found)}); goodput "
            "prices GPU time in one currency: keep one payer's billing exports per warehouse",
            field="period",
        )
    return found[0] if found else "USD"


def goodput_window(
    con: duckdb.DuckDBPyConnection,
    window: alloc.Window,
    *,
    team: str | None = None,
    options: alloc.Options = alloc.Options(),
    label: str | None = None,
) -> GoodputReport:
    """Every run that meets `window`: its buckets inside the window, priced with its GPU cost there."""
    span = (epoch(window.start), epoch(window.end))
    costs, team_spend = _job_costs(con, window, options)
    jobs = []
    for rows in load_job_rows(con):
        if team is not None and rows.team != team:
            continue
        found = job_goodput(rows, span)
        if found.wall_seconds <= 0:
            continue
        money = price(found.seconds, costs.get(rows.job_id, Decimal(0)))
        jobs.append(
            JobGoodput(found.job_id, found.team, found.attempts, found.wall_seconds, found.seconds, money)
        )
    if team is not None:
        team_spend = {t: c for t, c in team_spend.items() if t == team}
    name = label or window.period or f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M}"
    return GoodputReport(name, _currency(con, window), tuple(jobs), team_spend)


def as_json(job: JobGoodput) -> dict[str, Any]:
    """docs/design.md §2: `runs goodput --format json` (and, with `cost`, one job of `goodput`)."""
    found: dict[str, Any] = {
        "job_id": job.job_id,
        "team": job.team,
        "attempts": job.attempts,
        "wall_seconds": job.wall_seconds,
        "goodput": job.goodput,
        "seconds": {b: job.seconds.get(b, 0.0) for b in BUCKETS},
    }
    if job.cost:
        found["cost"] = {b: float(job.cost.get(b, Decimal(0))) for b in BUCKETS}
    return found
