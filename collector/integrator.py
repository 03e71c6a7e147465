"""Exact time integrals of window-mean ratios (docs/design.md, convention 5: time is passed in, never read
here).

A reading taken at `t` is the mean of its ratio over the window (t_prev, t], so the integral grows
by `ratio x (t - t_prev)`: `rate()` of the resulting `_seconds_total` counter over any range is the
exact mean of the ratio over that range, whatever the scrape interval.
"""

from __future__ import annotations

from collections.abc import Hashable


class Integrator:
    """Running integrals (seconds) and held time per key."""

    def __init__(self) -> None:
        self.totals: dict[Hashable, float] = {}

    def add(self, key: Hashable, value: float, dt: float) -> None:
        """Add `value x dt` (a window mean times its length, seconds) to the integral of `key`."""
        if dt > 0.0:
            self.totals[key] = self.totals.get(key, 0.0) + value * dt
        else:
            self.totals.setdefault(key, 0.0)

    def snapshot(self) -> dict[Hashable, float]:
        return dict(self.totals)


def window_mean(integral: float, dt: float) -> float | None:
    """The mean over a window from its integral, or None for an empty window."""
    return integral / dt if dt > 0 else None
