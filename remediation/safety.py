"""Safety rails: deduplication, the blast-radius limit, the hook rate limit, and retries with backoff.

Time is injected (`now` arguments, `sleep` callables) so tests run in microseconds; the engine
passes wall-clock seconds so that state rebuilt from the audit log lines up with live state.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class Deduplicator:
    """Remembers (key, status) pairs for `window` seconds.

    Alertmanager re-sends a whole group whenever one alert in it changes and again every
    `repeat_interval`; the same firing alert must not drain a node twice. A key is the alert's
    identity (its name and the labels an action uses), not only the fingerprint the client sends.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: dict[tuple[Hashable, str], float] = {}
        self._purge_at = 1024
        self._lock = threading.Lock()

    def first_time(self, key: Hashable, status: str, now: float) -> bool:
        """True (and remembered) when the pair was not seen in the last `window` seconds."""
        return self.first_time_of((key,), status, now)

    def first_time_of(self, keys: Sequence[Hashable], status: str, now: float) -> bool:
        """True, and every key remembered, when none of `keys` was seen with `status` in the window."""
        with self._lock:
            if any(now - self._seen.get((key, status), -math.inf) < self.window for key in keys):
                return False
            for key in keys:
                self._seen[(key, status)] = now
            self._purge(now)
            return True

    def remember(self, key: Hashable, status: str, at: float) -> None:
        with self._lock:
            self._seen[(key, status)] = max(at, self._seen.get((key, status), at))

    def _purge(self, now: float) -> None:
        # Amortized: a storm of distinct alerts must not make every decision scan the whole table.
        if len(self._seen) < self._purge_at:
            return
        for key in [k for k, at in self._seen.items() if now - at >= self.window]:
            del self._seen[key]
        self._purge_at = max(1024, 2 * len(self._seen))


@dataclass(frozen=True)
class HookLimitSettings:
    """At most `max_per_job` hook runs per job (`job_label`) and `max_total` in all, per `window` s."""

    max_per_job: int = 1
    max_total: int = 5
    job_label: str = "job_id"
    window: float = 3600.0


class HookLimit:
    """Counts hook runs in the window, per job and in all; refuses one beyond either allowance.

    Hooks (`command`) may stop or restart a job; unlike drains they have no node to count, so a storm
    of training alerts is bounded here instead.
    """

    def __init__(self, limit: HookLimitSettings) -> None:
        self.limit = limit
        self._runs: deque[tuple[float, str | None]] = deque()
        self._lock = threading.Lock()

    def admit(self, job: str | None, now: float) -> bool:
        """True (and counted) when one more run for `job` at `now` stays within both allowances."""
        with self._lock:
            while self._runs and now - self._runs[0][0] >= self.limit.window:
                self._runs.popleft()
            if len(self._runs) >= self.limit.max_total:
                return False
            if sum(1 for _, j in self._runs if j == job) >= self.limit.max_per_job:
                return False
            self._runs.append((now, job))
            return True

    def remember(self, job: str | None, at: float) -> None:
        """A run rebuilt from the audit log; `job` None when the log does not say (counts in the total)."""
        with self._lock:
            self._runs.append((at, job))
            self._runs = deque(sorted(self._runs, key=lambda run: run[0]))


@dataclass(frozen=True)
class BlastRadiusLimit:
    """At most `max_nodes` nodes, and at most `max_fraction` of a `fleet_size`-node fleet, per `window` s.

    `fleet_size` 0 means unknown: only `max_nodes` applies. The fraction never rounds a fleet's
    allowance below one node, or a small fleet could never drain a broken node.
    """

    max_nodes: int = 2
    max_fraction: float = 0.1
    fleet_size: int = 0
    window: float = 3600.0

    @property
    def allowance(self) -> int:
        if self.fleet_size <= 0:
            return self.max_nodes
        return min(self.max_nodes, max(1, math.floor(self.max_fraction * self.fleet_size)))


class BlastRadius:
    """Counts distinct nodes drained within the limit's window; refuses a new one beyond the allowance.

    A node already drained in the window is not a new one: draining it again widens nothing.
    """

    def __init__(self, limit: BlastRadiusLimit) -> None:
        self.limit = limit
        self._drained: dict[str, float] = {}
        self._lock = threading.Lock()

    def admit(self, node: str, now: float) -> bool:
        """True (and counted) when draining `node` at `now` stays within the limit."""
        with self._lock:
            for name in [n for n, at in self._drained.items() if now - at >= self.limit.window]:
                del self._drained[name]
            if node in self._drained:
                return True
            if len(self._drained) >= self.limit.allowance:
                return False
            self._drained[node] = now
            return True

    def remember(self, node: str, at: float) -> None:
        with self._lock:
            self._drained[node] = max(at, self._drained.get(node, at))


def with_retries(
    call: Callable[[], T],
    *,
    retries: int,
    backoff: float,
    retry_on: tuple[type[BaseException], ...],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, retried `retries` more times on `retry_on`, waiting `backoff`, 2x`backoff`, ... seconds."""
    for attempt in range(retries + 1):
        try:
            return call()
        except retry_on:
            if attempt == retries:
                raise
            sleep(backoff * (2**attempt))
    raise AssertionError("unreachable")  # the loop returns or raises
