"""The reporting half of StepMonitor: finished steps in, records (docs/design.md §4) and anomalies (§7) out.

A finished step is appended to `pending` (`submit`, ~1 µs); so are the monitor's `run` and `phase`
records (`enqueue`), which are ready at once, so a log keeps the order in which things happened. At
most every `interval` seconds, at a step's end, `drain` judges every pending step whose end boundary
is ready, in order: it builds the record, feeds the sinks (all non-blocking) and runs the detector.
Batching keeps the common step at a deque append and the work warm in the CPU's caches when it runs;
it stays on the training thread, so there is no lock, no second thread competing for the interpreter
lock, and anomalies reach the user's callback (`fired`) on the training thread. `interval=0` judges at
every step end (deterministic tests).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from gpulens.trainer.health import Anomaly, LossHealth
from gpulens.trainer.sinks import Sink
from gpulens.trainer.timing import Timing
from gpulens.wire import encode, step_encoder

log = logging.getLogger("gpulens.trainer")

MAX_PENDING = 4096  # steps whose end has not completed; beyond this the oldest is dropped and counted
# (Step, the boundary after which its figures are ready, wall-clock ts), or (record, None, 0.0)
Finished = tuple[Any, Any, float]


def write_record(sinks: Sequence[Sink], record: dict[str, Any], *, flush: bool = False) -> bool:
    """Encode a run or phase record once and hand it to every sink (flushing each, when asked); False
    when no encoder takes it (e.g. an odd phase name): the record is lost, not the run."""
    try:
        line = encode(record)
    except (TypeError, ValueError):
        return False
    for sink in sinks:
        sink.emit(record, line)
        if flush:
            sink.flush()
    return True


class Reporter:
    def __init__(
        self,
        *,
        sinks: Sequence[Sink],
        identity: dict[str, Any],
        timing: Timing,
        health: LossHealth,
        reports_loss: bool,
        mfu: Callable[[int, float], float | None],
        interval: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sinks = sinks
        self.identity = identity
        self.timing = timing
        self.health = health
        self.reports_loss = reports_loss
        self.mfu = mfu
        self.interval = interval
        self.clock = clock
        self.anomalies: list[Anomaly] = []
        self.fired: deque[Anomaly] = deque()  # for the user callback
        self.late_dropped = 0
        self.unencodable = 0  # records no encoder could write (e.g. a tokens= of an unknown type)
        self._pending: deque[Finished] = deque()
        self._next_drain = 0.0
        self._encode = step_encoder(identity)  # the fields every step record shares, encoded once if it helps

    def enqueue(self, record: dict[str, Any]) -> None:
        """A record that needs no device (run, phase): written after the steps before it, now if none wait."""
        self._pending.append((record, None, 0.0))
        if len(self._pending) == 1:
            self.drain()

    def submit(self, step: Any, ready: Any, ts: float) -> None:
        """Called at each step's end; judges what is ready once per `interval`. Never waits on the device."""
        pending = self._pending
        pending.append((step, ready, ts))
        if len(pending) > MAX_PENDING:
            pending.popleft()
            self.late_dropped += 1
        now = time.monotonic()
        if now >= self._next_drain:
            self._next_drain = now + self.interval
            self.drain()

    def drain(self) -> bool:
        """Judge every step that is ready, in order; True when nothing is left waiting."""
        pending, is_ready = self._pending, self.timing.ready
        judged = 0
        while pending:  # one event query per step judged, plus one that says "not yet"
            item, ready, ts = pending[0]
            if ready is None:
                self._write(item)
            elif is_ready(ready):
                self._judge(item, ready, ts)
            else:
                break
            pending.popleft()
            judged += 1
        if judged:  # one write per batch: a process killed without close() loses at most one interval
            for sink in self.sinks:
                sink.flush()
        return not pending

    def close(self, wait: float) -> None:
        """Judge what is left (polling the device up to `wait` s, never a blocking call), close the sinks."""
        deadline = time.monotonic() + wait
        while not self.drain():
            if time.monotonic() > deadline:
                self.late_dropped += len(self._pending)
                self._pending.clear()
                break
            time.sleep(0.001)
        for sink in self.sinks:
            sink.close()

    def _write(self, record: dict[str, Any]) -> None:
        if not write_record(self.sinks, record):
            self.unencodable += 1

    def _judge(self, step: Any, ready: Any, ts: float) -> None:
        timing = self.timing
        seconds = timing.seconds(step.start, step.end)
        # Every boundary before `ready` has completed: give back those no later step needs. The end
        # stays: the next step starts at it, or names it as its orphan.
        timing.release(step.start)
        if step.orphan is not None:
            timing.release(step.orphan)
        if ready is not step.end:
            timing.release(ready)
        fields = self._fields(step, seconds, ts)
        record = {**self.identity, **fields}
        try:
            line = self._encode(record, fields)
        except (TypeError, ValueError) as exc:  # a value no JSON encoder takes: lose the record, not the run
            log.debug("gpulens: step %s not reported: %s", step.index, exc)
            self.unencodable += 1
        else:
            for sink in self.sinks:
                sink.emit(record, line)
        if "loss" in fields:
            loss = fields["loss"]
            anomaly = self.health.observe(step.index, math.nan if loss is None else loss)
            if anomaly is not None:
                self._report(anomaly)

    def _fields(self, step: Any, seconds: float, ts: float) -> dict[str, Any]:
        """What is particular to this step's record (the identity fields are shared)."""
        record: dict[str, Any] = {"step": step.index, "ts": ts, "step_seconds": seconds}
        if step.tokens is not None:
            record["tokens"] = step.tokens
            mfu = self.mfu(step.tokens, seconds)
            if mfu is not None:
                record["mfu"] = mfu
        if step.samples is not None:
            record["samples"] = step.samples
        for key, value in self.timing.figures(step.captured).items():
            if key == "loss" and not self.reports_loss:
                continue
            try:
                number = float(value)  # a host copy whose step has completed: no device wait
            except (TypeError, ValueError):
                log.debug("gpulens: %s=%r is not a number; left out", key, value)
                continue
            record[key] = number if math.isfinite(number) else None
        return record

    def _report(self, anomaly: Anomaly) -> None:
        record = {
            **self.identity,
            "kind": "anomaly",
            "step": anomaly.step,
            "anomaly": anomaly.kind,
            "loss": anomaly.loss if math.isfinite(anomaly.loss) else None,
            "ts": self.clock(),
        }
        line = encode(record)
        for sink in self.sinks:
            sink.emit(record, line)
            sink.flush()
        self.anomalies.append(anomaly)
        self.fired.append(anomaly)
        log.warning(
            "gpulens: job %s rank %s: loss %s at step %d (loss %s)",
            self.identity["job_id"],
            self.identity["rank"],
            anomaly.kind,
            anomaly.step,
            anomaly.loss,
        )
