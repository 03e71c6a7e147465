"""Trainer records (SPEC §4) -> the gpulens_train_* families, aggregated per (job, team, rank, gpu).

Parsing is strict about what it uses and ignores unknown keys; anything else is `malformed`.
The socket thread calls `ingest`; scrapes call `copy` (one short lock each).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gpulens.wire import ANOMALY_KINDS, DECODE_ERRORS, MAX_DATAGRAM, VERSION
from gpulens.wire import loads as _loads

STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

TrainKey = tuple[str, str, str, str]  # job_id, team, rank, gpu (label values)


@dataclass
class RankStats:
    """Running totals of one rank; mutated only under TrainStats' lock."""

    steps: float = 0.0
    tokens: float = 0.0
    loss: float | None = None
    mfu: float | None = None
    last_ts: float | None = None
    step_sum: float = 0.0
    step_count: int = 0
    # Per-bucket (not cumulative) counts, index = bisect_left(STEP_BUCKETS, seconds); the last is +Inf.
    step_hits: list[int] = field(default_factory=lambda: [0] * (len(STEP_BUCKETS) + 1))
    version: int = 0  # bumped on every update: exposition re-renders a rank only when it changed
    mapped_at: float = -1e18  # monotonic time the trainer mapping was last refreshed from this rank
    mapped_to: tuple[object, object] = (None, None)  # (gpu, pid) last reported

    def copy(self) -> RankStats:
        return RankStats(
            self.steps,
            self.tokens,
            self.loss,
            self.mfu,
            self.last_ts,
            self.step_sum,
            self.step_count,
            list(self.step_hits),
            self.version,
        )

    def cumulative(self) -> list[int]:
        """Cumulative bucket counts, as exposition wants them (le=bound ... le=+Inf)."""
        out, total = [], 0
        for n in self.step_hits:
            total += n
            out.append(total)
        return out


_NUMBER = (int, float)  # exact types: bool is not a number here


def _label(value: object) -> str:
    if type(value) is str:
        return value  # type: ignore[return-value]
    return "" if value is None or type(value) is bool else str(value)


class Malformed(ValueError):
    """A datagram that is not a v1 step or anomaly record."""


# ("step", key, step_seconds, tokens, loss, mfu, ts, (gpu, pid)) or ("anomaly", key, kind, ...)
Parsed = tuple[Any, ...]


_KEYS: dict[tuple[object, ...], TrainKey] = {}  # raw (job, team, rank, gpu) -> label values, memoised


def _key(job: str, team: object, rank: object, gpu: object) -> TrainKey:
    raw = (job, team, rank, gpu, type(rank), type(gpu))  # types too: 0, 0.0 and False hash alike
    key = _KEYS.get(raw)
    if key is None:
        if len(_KEYS) > 100_000:
            _KEYS.clear()
        key = _KEYS[raw] = (job, _label(team), _label(rank), _label(gpu))
    return key


def _parse(data: bytes) -> Parsed:
    """One datagram -> a parsed record; raises on anything that is not a v1 step or anomaly.

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
    kind = get("kind")
    if kind == "step":
        seconds: Any
        seconds, tokens, loss, mfu, ts = (
            get("step_seconds"),
            get("tokens"),
            get("loss"),
            get("mfu"),
            get("ts"),
        )
        if type(seconds) not in _NUMBER:
            seconds = None
        elif not (seconds >= 0 and math.isfinite(seconds)):
            raise Malformed("step_seconds")
        return (
            "step",
            key,
            seconds,
            tokens if type(tokens) in _NUMBER else None,
            loss if type(loss) in _NUMBER else None,
            mfu if type(mfu) in _NUMBER else None,
            ts if type(ts) in _NUMBER else None,
            (gpu, get("pid")),
        )
    if kind == "anomaly" and get("anomaly") in ANOMALY_KINDS:
        return ("anomaly", key, get("anomaly"))
    raise Malformed(f"unknown kind {kind!r}")


class TrainStats:
    """Aggregates; `on_step(gpu, pid, job_id, team)` feeds the trainer job mapping."""

    def __init__(
        self,
        on_step: Callable[[int, int, str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        map_every: float = 1.0,
    ) -> None:
        self._clock = clock
        self._map_every = map_every  # seconds between mapping refreshes per rank (the mapping lives 60 s)
        self._lock = threading.Lock()
        self.ranks: dict[TrainKey, RankStats] = {}
        self.anomalies: dict[tuple[str, str, str, str, str], float] = {}
        self.results: dict[str, float] = {"ok": 0.0, "malformed": 0.0}
        self.generation = 0  # bumped by every batch: a scrape re-renders only after a change
        self._on_step = on_step

    def ingest(self, data: bytes) -> bool:
        """Parse and apply one datagram; False (and counted) when malformed."""
        return self.ingest_many((data,)) == 1

    def ingest_many(self, datagrams: Iterable[bytes]) -> int:
        """Parse a batch, then apply it under one lock (the socket thread drains the queue in batches).

        Returns how many were well-formed; the others are counted as malformed.
        """
        parsed = []
        bad = 0
        for data in datagrams:
            try:
                parsed.append(_parse(data))
            except (Malformed, *DECODE_ERRORS, TypeError, KeyError):
                bad += 1
        mapped = []
        with self._lock:
            self.generation += 1
            self.results["malformed"] += bad
            self.results["ok"] += len(parsed)
            now = self._clock()
            for item in parsed:
                if item[0] == "anomaly":
                    akey = (*item[1], item[2])
                    self.anomalies[akey] = self.anomalies.get(akey, 0.0) + 1
                elif self._step(item, now):
                    mapped.append(item)
        if self._on_step is not None:
            for _kind, key, _seconds, _tokens, _loss, _mfu, _ts, (gpu, pid) in mapped:
                if type(gpu) is int and type(pid) is int:
                    self._on_step(gpu, pid, key[0], key[1])
        return len(parsed)

    def _step(self, item: Parsed, now: float) -> bool:
        """Apply one step record (lock held); True when the trainer mapping should be refreshed."""
        _kind, key, seconds, tokens, loss, mfu, ts, where = item
        s = self.ranks.get(key)
        if s is None:
            s = self.ranks[key] = RankStats()
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
            s.step_sum += seconds
            s.step_count += 1
            s.step_hits[bisect.bisect_left(STEP_BUCKETS, seconds)] += 1
        s.version += 1
        if where != s.mapped_to or now - s.mapped_at >= self._map_every:
            s.mapped_at, s.mapped_to = now, where
            return True
        return False

    def copy(
        self, known: Mapping[TrainKey, int] | None = None
    ) -> tuple[
        dict[TrainKey, RankStats | int], dict[tuple[str, str, str, str, str], float], dict[str, float]
    ]:
        """A consistent copy for one scrape; a rank whose version is in `known` unchanged is its version only."""
        known = known or {}
        with self._lock:
            ranks = {k: v.version if known.get(k) == v.version else v.copy() for k, v in self.ranks.items()}
            return ranks, dict(self.anomalies), dict(self.results)
