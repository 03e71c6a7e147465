"""Trainer records (docs/design.md §4) -> the gpulens_train_* families, per (job, team, rank, gpu).

Parsing is strict about what it uses and ignores unknown keys; anything else is `malformed`. A
record whose sender may not speak for the GPU it names (`collector/trust.py`) is `rejected`; a record
of a new job beyond `max_jobs` job label sets is `over_limit`; neither is applied. A job's series
disappear `job_ttl` seconds after its last record. The socket thread calls `ingest_many`; scrapes
call `copy` (one short lock each).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpulens.collector.histogram import Histogram
from gpulens.wire import ANOMALY_KINDS, DECODE_ERRORS, MAX_DATAGRAM, OTHER_PHASE, PHASES, VERSION
from gpulens.wire import loads as _loads

STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MAX_JOBS = 64  # job label sets (job_id, team) exported per node
MAX_RANKS = 512  # (job_id, team, rank, gpu) label sets per node: 64 jobs x 8 GPUs
MAX_LABEL = 256  # characters of a label value; a longer job_id, team, rank or gpu is malformed
MEMO_KEYS = 10_000  # label tuples memoised by _key (each at most 4 x MAX_LABEL characters)
JOB_TTL = 600.0  # seconds a job's series outlive its last record
RESULTS = ("ok", "malformed", "rejected", "over_limit")

TrainKey = tuple[str, str, str, str]  # job_id, team, rank, gpu (label values)
AnomalyKey = tuple[str, str, str, str, str]  # TrainKey + kind


@dataclass
class RankStats:
    """Running totals of one rank; mutated only under TrainStats' lock."""

    steps: float = 0.0
    tokens: float = 0.0
    loss: float | None = None  # NaN after a non-finite loss (the record carries null)
    mfu: float | None = None
    last_ts: float | None = None
    step: Histogram = field(default_factory=lambda: Histogram(STEP_BUCKETS))
    attempt: float | None = None  # the latest attempt a record of this rank carried
    phases: dict[str, float] = field(default_factory=dict)  # phase bucket -> seconds
    version: int = 0  # bumped on every update: exposition re-renders a rank only when it changed
    mapped_at: float = -1e18  # monotonic time the trainer mapping was last refreshed from this rank
    mapped_to: tuple[object, object] = (None, None)  # (device, pid) last reported

    def copy(self) -> RankStats:
        return RankStats(
            self.steps,
            self.tokens,
            self.loss,
            self.mfu,
            self.last_ts,
            self.step.copy(),
            self.attempt,
            dict(self.phases),
            self.version,
        )


class Verifier(Protocol):
    """Decides whether a datagram's sender may speak for the GPU it names (`collector/trust.py`)."""

    def device(self, cred: bytes | None, gpu: object, gpu_uuid: object) -> str | None:
        """The UUID of the device the record maps ("" for none), or None when the sender is rejected."""
        ...

    def pid(self, cred: bytes | None) -> int:
        """The sender's pid as the agent sees it (0 when unknown)."""
        ...


_NUMBER = (int, float)  # exact types: bool is not a number here
_PHASES = frozenset(PHASES)
_NAN = float("nan")
_ABSENT = object()


def _label(value: object) -> str:
    if type(value) is str:
        return value  # type: ignore[return-value]
    return "" if value is None or type(value) is bool else str(value)


class Malformed(ValueError):
    """A datagram that is not a v1 step, anomaly, run or phase record."""


# (kind, key, where, ...) where `where` = (gpu, gpu_uuid, pid) as sent; the rest depends on the kind:
# ("step", key, where, step_seconds, tokens, loss, mfu, ts, attempt)
# ("anomaly", key, where, kind) ("run", key, where, attempt) ("phase", key, where, phase, seconds, attempt)
Parsed = tuple[Any, ...]


_KEYS: dict[tuple[object, ...], TrainKey] = {}  # raw (job, team, rank, gpu) -> label values, memoised


def _key(job: str, team: object, rank: object, gpu: object) -> TrainKey:
    raw = (job, team, rank, gpu, type(rank), type(gpu))  # types too: 0, 0.0 and False hash alike
    key = _KEYS.get(raw)
    if key is None:
        key = (job, _label(team), _label(rank), _label(gpu))
        if max(map(len, key)) > MAX_LABEL:
            raise Malformed("label value over 256 characters")
        # Bounded by count and by size: a sender that is rejected later cannot grow the memo.
        if len(_KEYS) >= MEMO_KEYS:
            _KEYS.clear()
        _KEYS[raw] = key
    return key


def _attempt(value: object) -> float | None:
    return float(value) if type(value) is int and value > 0 else None  # type: ignore[arg-type]


def _parse(data: bytes) -> Parsed:
    """One datagram -> a parsed record; raises on anything that is not a v1 record of a known kind.

    The hot path of the trainer socket (50k records/s): few calls, no intermediate objects.
    """
    if len(data) > MAX_DATAGRAM:
        raise Malformed("datagram over 8 KiB")
    rec = _loads(data)
    if type(rec) is not dict or rec.get("v") != VERSION:
        raise Malformed("not a v1 record")
    get = rec.get
    job, gpu = get("job_id"), get("gpu")
    if type(job) is not str or not job:
        raise Malformed("job_id")
    key = _key(job, get("team"), get("rank"), gpu)
    where = (gpu, get("gpu_uuid"), get("pid"))
    kind = get("kind")
    if kind == "step":
        seconds: Any
        seconds, tokens, loss, mfu, ts, attempt = (
            get("step_seconds"),
            get("tokens"),
            get("loss", _ABSENT),
            get("mfu"),
            get("ts"),
            get("attempt"),
        )
        if type(seconds) not in _NUMBER:
            seconds = None
        elif not (seconds >= 0 and math.isfinite(seconds)):
            raise Malformed("step_seconds")
        if loss is None:  # the trainer sends a non-finite loss as null: export NaN, as its /metrics does
            loss = _NAN
        elif type(loss) not in _NUMBER:  # absent (the sentinel) or not a number: keep the last loss
            loss = None
        return (
            "step",
            key,
            where,
            seconds,
            tokens if type(tokens) in _NUMBER else None,
            loss,
            mfu if type(mfu) in _NUMBER else None,
            ts if type(ts) in _NUMBER else None,
            attempt if type(attempt) is int and attempt > 0 else None,
        )
    if kind == "anomaly" and get("anomaly") in ANOMALY_KINDS:
        return ("anomaly", key, where, get("anomaly"))
    if kind == "phase":
        start: Any
        end: Any
        start, end, name = get("start"), get("end"), get("phase")
        if type(start) not in _NUMBER or type(end) not in _NUMBER or not 0 <= end - start < math.inf:
            raise Malformed("phase start/end")
        return (
            "phase",
            key,
            where,
            name if name in _PHASES else OTHER_PHASE,
            end - start,
            _attempt(get("attempt")),
        )
    if kind == "run":
        return ("run", key, where, _attempt(get("attempt")))
    raise Malformed(f"unknown kind {kind!r}")


class TrainStats:
    """Aggregates; `on_step(device, pid, job_id, team)` feeds the trainer job mapping.

    `device` is the UUID the verifier resolved, or (without a verifier) the record's `gpu` index.
    """

    def __init__(
        self,
        on_step: Callable[[object, int, str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        map_every: float = 1.0,
        verifier: Verifier | None = None,
        max_jobs: int = MAX_JOBS,
        job_ttl: float = JOB_TTL,
        max_ranks: int = MAX_RANKS,
    ) -> None:
        self._clock = clock
        self._map_every = map_every  # seconds between mapping refreshes per rank (the mapping lives 60 s)
        self._lock = threading.Lock()
        self.ranks: dict[TrainKey, RankStats] = {}
        self.anomalies: dict[AnomalyKey, float] = {}
        self.results: dict[str, float] = dict.fromkeys(RESULTS, 0.0)
        self.generation = 0  # bumped by every batch: a scrape re-renders only after a change
        self._on_step = on_step
        self._verifier = verifier
        self.max_jobs = max_jobs
        self.max_ranks = max_ranks
        self.job_ttl = job_ttl
        self._jobs: dict[tuple[str, str], float] = {}  # admitted (job_id, team) -> last record
        self._swept = clock()

    def ingest(self, data: bytes, cred: bytes | None = None) -> bool:
        """Parse and apply one datagram; False (and counted) when malformed, rejected or over the limit."""
        return self.ingest_many((data,), None if cred is None else (cred,)) == 1

    def ingest_many(self, datagrams: Iterable[bytes], creds: Sequence[bytes] | None = None) -> int:
        """Parse a batch, then apply it under one lock (the socket thread drains the queue in batches).

        `creds` are the senders' SCM_CREDENTIALS, one per datagram (None: an in-process caller).
        Returns how many were applied; the others are counted by result.
        """
        verify = self._verifier.device if self._verifier is not None else None
        kept: list[tuple[Parsed, object, bytes | None]] = []  # (record, device it maps, credentials)
        bad = rejected = 0
        for n, data in enumerate(datagrams):
            try:
                item = _parse(data)
            except (Malformed, *DECODE_ERRORS, TypeError, KeyError):
                bad += 1
                continue
            cred = creds[n] if creds is not None else None
            where = item[2]
            if verify is None:
                kept.append((item, where[0], cred))
                continue
            device = verify(cred, where[0], where[1])
            if device is None:
                rejected += 1
            else:
                kept.append((item, device or None, cred))
        mapped = []
        applied = 0
        with self._lock:
            self.generation += 1
            results = self.results
            results["malformed"] += bad
            results["rejected"] += rejected
            now = self._clock()
            if now - self._swept >= 1.0:
                self._expire(now)
            for entry in kept:
                item = entry[0]
                if not self._admit(item[1], now) or self._anomalies_full(item):
                    results["over_limit"] += 1
                    continue
                applied += 1
                kind = item[0]
                if kind == "step":
                    if self._step(item, entry[1], now):
                        mapped.append(entry)
                elif kind == "anomaly":
                    akey = (*item[1], item[3])
                    self.anomalies[akey] = self.anomalies.get(akey, 0.0) + 1
                else:
                    self._other(item)
            results["ok"] += applied
        if self._on_step is not None:
            self._map(mapped)
        return applied

    def _map(self, mapped: list[tuple[Parsed, object, bytes | None]]) -> None:
        """Refresh the trainer mapping (at most once a second per rank): the sender's pid where known."""
        on_step, verifier = self._on_step, self._verifier
        if on_step is None:
            return
        for item, device, cred in mapped:
            pid = item[2][2]
            if verifier is not None and cred is not None:
                pid = verifier.pid(cred) or pid
            if (type(device) is int or type(device) is str) and type(pid) is int:
                key = item[1]
                on_step(device, pid, key[0], key[1])

    def _admit(self, key: TrainKey, now: float) -> bool:
        """True when the record's job label set is exported (known, or admitted under `max_jobs`) and
        its rank label set too (known, or admitted under `max_ranks`: rank and gpu values vary freely)."""
        job = (key[0], key[1])
        if job not in self._jobs and len(self._jobs) >= self.max_jobs:
            return False
        if key not in self.ranks and len(self.ranks) >= self.max_ranks:
            return False
        self._jobs[job] = now
        return True

    def _anomalies_full(self, item: Parsed) -> bool:
        """An anomaly record of a new (rank, kind) when the anomaly series are at their bound."""
        if item[0] != "anomaly":
            return False
        akey = (*item[1], item[3])
        return akey not in self.anomalies and len(self.anomalies) >= self.max_ranks * len(ANOMALY_KINDS)

    def _expire(self, now: float) -> None:
        """Drop every series of jobs without a record for `job_ttl` seconds (lock held)."""
        self._swept = now
        gone = {job for job, seen in self._jobs.items() if now - seen > self.job_ttl}
        if not gone:
            return
        for job in gone:
            del self._jobs[job]
        for key in [k for k in self.ranks if (k[0], k[1]) in gone]:
            del self.ranks[key]
        for akey in [k for k in self.anomalies if (k[0], k[1]) in gone]:
            del self.anomalies[akey]

    def _rank(self, key: TrainKey) -> RankStats:
        s = self.ranks.get(key)
        if s is None:
            s = self.ranks[key] = RankStats()
        return s

    def _step(self, item: Parsed, device: object, now: float) -> bool:
        """Apply one step record (lock held); True when the trainer mapping should be refreshed."""
        _kind, key, where, seconds, tokens, loss, mfu, ts, attempt = item
        s = self._rank(key)
        s.steps += 1
        if tokens is not None and tokens >= 0:
            s.tokens += tokens
        if loss is not None:
            s.loss = loss
        if mfu is not None:
            s.mfu = mfu
        if ts is not None:
            s.last_ts = ts
        if seconds is not None:
            s.step.observe(seconds)
        if attempt is not None:
            s.attempt = attempt
        s.version += 1
        to = (device, where[2])
        if to != s.mapped_to or now - s.mapped_at >= self._map_every:
            s.mapped_at, s.mapped_to = now, to
            return True
        return False

    def _other(self, item: Parsed) -> None:
        """Apply a run or phase record (lock held)."""
        s = self._rank(item[1])
        if item[0] == "phase":
            phase, seconds, attempt = item[3], item[4], item[5]
            s.phases[phase] = s.phases.get(phase, 0.0) + seconds
        else:
            attempt = item[3]
        if attempt is not None:
            s.attempt = attempt
        s.version += 1

    def copy(
        self, known: Mapping[TrainKey, int] | None = None
    ) -> tuple[dict[TrainKey, RankStats | int], dict[AnomalyKey, float], dict[str, float]]:
        """A consistent copy for one scrape; a rank unchanged since the version in `known` is that version."""
        known = known or {}
        with self._lock:
            now = self._clock()
            if now - self._swept >= 1.0:
                self._expire(now)
            ranks = {k: v.version if known.get(k) == v.version else v.copy() for k, v in self.ranks.items()}
            return ranks, dict(self.anomalies), dict(self.results)
