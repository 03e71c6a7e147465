"""The one loss-health detector (docs/design.md §7): online (`LossHealth.observe`) and offline (`scan`).

Three kinds, each reported once per episode:

- ``nan``: a non-finite loss, reported at its first step; the episode ends at the next finite loss.
- ``spike``: the loss stays >= ``spike_ratio`` x its smoothed baseline for >= ``spike_steps``
  consecutive observations; reported at the step where it is confirmed. The baseline is an
  exponential moving average that is frozen while the loss is above the threshold, so a spike cannot
  raise its own bar. Shorter excursions, even of 2x, are single-batch noise and are not reported.
- ``divergence``: the smoothed loss stays >= ``divergence_ratio`` x its running minimum for
  >= ``divergence_steps`` observations without recovering. The smoothed loss is an EMA of the loss
  clipped at the spike threshold, so one-step blips move it little while a loss that stays high
  still lifts it above the bar. The running minimum starts once the average has warmed up
  (2/alpha observations): before that the "smoothed" loss is a handful of noisy samples, and a low
  one would set a floor that ordinary noise then stays 10 % above.

Steps are whatever the caller numbers them; "consecutive" means consecutive observations, so a
curve logged every 10 steps is judged per logged point. The trainer, `gpulens runs check`,
`gpulens ingest runs` (through `scan`), the alert rules and the explorer share these defaults.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from gpulens.wire import AnomalyKind


@dataclass(frozen=True)
class Anomaly:
    """One anomaly episode: the step where it was confirmed, its kind, and the loss at that step."""

    step: int
    kind: AnomalyKind
    loss: float


@dataclass(frozen=True)
class HealthConfig:
    """Detector thresholds; the defaults are docs/design.md §7's.

    `alpha` is the EMA weight of the newest loss for both the spike baseline and the smoothed
    loss (0.1: a span of about 20 observations).
    """

    spike_ratio: float = 1.25
    spike_steps: int = 3
    divergence_ratio: float = 1.10
    divergence_steps: int = 50
    alpha: float = 0.1


DEFAULTS = HealthConfig()


class LossHealth:
    """Online detector: feed every (step, loss) in order; at most one anomaly comes back per call."""

    def __init__(self, config: HealthConfig = DEFAULTS) -> None:
        self.config = config
        self._baseline: float | None = None  # spike baseline: EMA of losses below the threshold
        self._smooth: float | None = None  # divergence smoother: EMA of clipped losses
        self._floor = math.inf  # running minimum of the smoothed loss, once warmed up
        self._warmup = math.ceil(2 / config.alpha)
        self._seen = 0
        self._in_nan = False
        self._spike_run = 0
        self._divergence_run = 0

    def observe(self, step: int, loss: float) -> Anomaly | None:
        """Judge one loss. Returns an anomaly the first time an episode is confirmed, else None."""
        loss = float(loss)
        if not math.isfinite(loss):
            if self._in_nan:
                return None
            self._in_nan = True
            return Anomaly(step, "nan", loss)
        self._in_nan = False
        if self._baseline is None or self._smooth is None:
            self._baseline = self._smooth = loss
            return None
        spike = self._judge_spike(step, loss)
        divergence = self._judge_divergence(step, loss)
        # A loss that blows up and stays up confirms a spike long before a divergence, so the two
        # never fire on the same call with the defaults; if they do, the divergence is the news.
        return divergence or spike

    def _judge_spike(self, step: int, loss: float) -> Anomaly | None:
        cfg = self.config
        baseline = self._baseline
        assert baseline is not None
        if loss >= cfg.spike_ratio * baseline:
            self._spike_run += 1
            return Anomaly(step, "spike", loss) if self._spike_run == cfg.spike_steps else None
        self._spike_run = 0
        self._baseline = baseline + cfg.alpha * (loss - baseline)
        return None

    def _judge_divergence(self, step: int, loss: float) -> Anomaly | None:
        cfg = self.config
        smooth = self._smooth
        assert smooth is not None and self._baseline is not None
        clipped = min(loss, cfg.spike_ratio * self._baseline)
        smooth += cfg.alpha * (clipped - smooth)
        self._smooth = smooth
        self._seen += 1
        if self._seen < self._warmup:
            return None
        if smooth >= cfg.divergence_ratio * self._floor:
            self._divergence_run += 1
            if self._divergence_run == cfg.divergence_steps:
                return Anomaly(step, "divergence", loss)
            return None
        self._divergence_run = 0
        self._floor = min(self._floor, smooth)
        return None


def scan(points: Iterable[tuple[int, float]], config: HealthConfig = DEFAULTS) -> list[Anomaly]:
    """Offline: every anomaly in one loss curve of (step, loss) pairs, in order. Pure; ~1 µs a point."""
    detector = LossHealth(config)
    observe = detector.observe
    found = []
    for step, loss in points:
        anomaly = observe(step, loss)
        if anomaly is not None:
            found.append(anomaly)
    return found
