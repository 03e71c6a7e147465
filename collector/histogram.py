"""One small histogram for the agent's own and the trainers' timings (exposition renders both alike).

Counts are kept per bucket (not cumulative) so an observation is one bisect and one increment; the
cumulative counts exposition wants are built when a scrape asks. Not thread-safe: the owner holds
its own lock (TrainStats) or is the only writer (the sampler thread) and hands out `copy()`s.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass
class Histogram:
    bounds: tuple[float, ...]  # upper bounds, ascending; +Inf is implied
    hits: list[int] = field(default_factory=list)  # per bucket, index = bisect_left(bounds, value)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.hits:
            self.hits = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.hits[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[int]:
        """Counts at le=bound for every bound, then le=+Inf."""
        out, running = [], 0
        for n in self.hits:
            running += n
            out.append(running)
        return out

    def copy(self) -> Histogram:
        return Histogram(self.bounds, list(self.hits), self.total, self.count)
