"""Safety rails: deduplication, the blast-radius limit, and retries with backoff.

Time is injected (`now` arguments, `sleep` callables) so tests run in microseconds; the engine
passes wall-clock seconds so that state rebuilt from the audit log lines up with live state.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class Deduplicator:
    """Remembers (fingerprint, status) pairs for `window` seconds.

    Alertmanager re-sends a whole group whenever one alert in it changes and again every
    `repeat_interval`; the same firing alert must not drain a node twice.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def first_time(self, fingerprint: str, status: str, now: float) -> bool:
        """True (and remembered) when the pair was not seen in the last `window` seconds."""
        key = (fingerprint, status)
        with self._lock:
            self._expire(now)
            if key in self._seen:
                return False
            self._seen[key] = now
            return True

    def remember(self, fingerprint: str, status: str, at: float) -> None:
        with self._lock:
            self._seen[(fingerprint, status)] = max(at, self._seen.get((fingerprint, status), at))

    def _expire(self, now: float) -> None:
        for key in [k for k, at in self._seen.items() if now - at >= self.window]:
            del self._seen[key]


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
