"""StepMonitor: step time, throughput, MFU, loss health and the run's time model, without waiting on the GPU.

```python
monitor = StepMonitor(job_id="bgpt-50b", team="ai-research", flops_per_token=6 * n_params)
for batch in monitor.data(loader):                      # each wait for a batch: a `data_wait` phase
    with monitor.step(tokens=batch.numel()) as step:
        loss = model(batch).loss
        loss.backward(); opt.step(); opt.zero_grad()
        step.record(loss=loss, grad_norm=gn, lr=sched.get_last_lr()[0])
    if step.index % 1000 == 999:
        with monitor.phase("checkpoint_save"):
            save(model, opt)
monitor.close()                                         # a clean end of this attempt
```

Each step's boundaries and recorded values go through a `Timing` (CUDA events and one asynchronous
copy per step on the GPU, `perf_counter` on the CPU). A step that begins within `gap` seconds of the
previous step's end, with no phase between, starts at that end boundary: one boundary per step. A
finished step is handed to the `Reporter`, which, in batches every `report_interval` seconds, judges
each step whose end boundary is ready (on CUDA, a few steps later), turns it into a record
(docs/design.md §4) for every sink and runs the loss-health detector (§7) on its loss. `run` and `phase`
records go through the same queue, so a log is in the order things happened. Phases are host
wall-clock intervals (`time.time()`): nothing ever synchronizes with the device.
"""

from __future__ import annotations

import atexit
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from gpulens.paths import default_socket_path
from gpulens.trainer import context as _context
from gpulens.trainer import mfu as _mfu
from gpulens.trainer.health import DEFAULTS, Anomaly, HealthConfig, LossHealth
from gpulens.trainer.reporter import Reporter, write_record
from gpulens.trainer.sinks import JsonlSink, PrometheusSink, Sink, SocketSink
from gpulens.trainer.timing import CpuTiming, CudaTiming, Timing
from gpulens.wire import PHASE, RUN

log = logging.getLogger("gpulens.trainer")

CLOSE_WAIT_SECONDS = 10.0
GAP_SECONDS = 0.001  # host time between steps from which a step gets a start boundary of its own


class Step:
    """One training step: a context manager; `record(**values)` takes Python numbers or scalar tensors."""

    __slots__ = (
        "index",
        "tokens",
        "samples",
        "values",
        "start",
        "orphan",
        "end",
        "ts",
        "captured",
        "_monitor",
    )

    def __init__(self, monitor: StepMonitor, index: int, tokens: int | None, samples: int | None) -> None:
        self._monitor = monitor
        self.index = index
        self.tokens = tokens
        self.samples = samples
        self.values: dict[str, Any] = {}
        self.start: Any = None
        self.orphan: Any = None  # the previous step's end boundary when this step does not start at it
        self.end: Any = None
        self.ts = 0.0
        self.captured: Any = None

    def record(self, **values: Any) -> None:
        """Attach figures (loss, grad_norm, lr, ...) to this step; tensors are copied at its end, never
        waited for."""
        self.values.update(values)

    def stop(self) -> None:
        """End this step's time now, leaving it open for `record()` until it exits (for adapters whose
        framework hands over the step's figures after its end)."""
        self._monitor._stop(self)

    def __enter__(self) -> Step:
        self._monitor._begin(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:  # a step that raised is not a step; the exception goes on untouched
            self._monitor._finish(self)
        else:
            self._monitor._break_chain()


class Phase:
    """A named stretch of the run outside the steps (checkpoint_save, eval, ...): a context manager.

    Its record is written when it exits, also when its body raises (the time was spent); `step` is
    the number of the next step to run (for a `checkpoint_load`, set it to the step the checkpoint
    resumes at: the monitor numbers the following steps from there).
    """

    __slots__ = ("name", "step", "start", "_monitor")

    def __init__(self, monitor: StepMonitor, name: str, step: int | None) -> None:
        self._monitor = monitor
        self.name = name
        self.step = step
        self.start = 0.0

    def __enter__(self) -> Phase:
        self.start = self._monitor.clock()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._monitor.add_phase(self.name, self.start, self._monitor.clock(), self.step)


class TimedBatches:
    """`monitor.data(loader)`: the loader's batches; each wait for one of `gap` seconds or more is a
    `data_wait` phase (shorter waits are part of the next step's time, as any short gap between steps)."""

    def __init__(self, monitor: StepMonitor, batches: Iterable[Any]) -> None:
        self._monitor = monitor
        self._batches = batches

    def __len__(self) -> int:
        return len(self._batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        monitor = self._monitor
        clock = monitor.clock
        started = clock()  # creating the iterator (a DataLoader starting its workers) is waiting too
        batches = iter(self._batches)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            got = clock()
            if got - started >= monitor.gap:
                monitor.add_phase("data_wait", started, got)
            yield batch
            started = clock()


class StepMonitor:
    """Instruments a training loop and reports each step to the agent socket, a JSONL file and/or /metrics.

    `flops_per_token`: training FLOPs per token (see `gpulens.trainer.mfu.transformer_flops_per_token`);
    MFU is reported when it and a peak are known. `peak_flops` (FLOP/s of one GPU) overrides the table
    lookup by device name and `precision`; `gpus` is how many GPUs the `tokens` given to `step()` were
    processed on (1: each rank reports its own tokens). `socket` defaults to the agent's socket
    (`gpulens.paths.default_socket_path()`); `log_path` (else `$GPULENS_TRAIN_LOG`) adds a JSONL file;
    `prometheus_port` serves this process's own /metrics on that port + local rank. Only rank 0 reports
    the loss (and judges its health) unless `report_loss_all_ranks`. `on_anomaly` is called with each
    `Anomaly` at the end of the step in which it was found (at most `report_interval` seconds, plus
    the device's lag, after the step itself), or at `close()`; what it raises propagates, which is how
    a callback stops a run. `sinks` replaces every default destination; `timing` the device seam.

    The time model (docs/design.md §8): a `run` `start` record when the monitor is built and an `end`
    at `close()` (a clean end; `close(clean=False)`, leaving a `with` block by an exception, or the
    interpreter's exit without `close()` write none); `phase(name)` and `data(loader)` write `phase`
    records. `attempt` (from 1) is which start of the job this process is: given, else from the
    launcher's restart counters (`gpulens.trainer.context.restart_attempt`); every record carries it.
    `gap`: host seconds between two steps below which the second starts at the first one's end.
    `clock` (epoch seconds, `time.time`) stamps records and phases; tests pass a fake one.
    """

    def __init__(
        self,
        job_id: str,
        team: str,
        *,
        flops_per_token: float | None = None,
        peak_flops: float | None = None,
        precision: str = "bf16",
        gpus: int = 1,
        socket: str | Path | None = None,
        log_path: str | Path | None = None,
        prometheus_port: int | None = None,
        report_loss_all_ranks: bool = False,
        on_anomaly: Callable[[Anomaly], None] | None = None,
        health: HealthConfig = DEFAULTS,
        gpu: int | None = None,
        sinks: Sequence[Sink] | None = None,
        timing: Timing | None = None,
        report_interval: float = 0.05,
        env: Mapping[str, str] | None = None,
        attempt: int | None = None,
        gap: float = GAP_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.job_id, self.team = job_id, team
        self.flops_per_token = flops_per_token
        self.precision, self.gpus = precision, gpus
        self.ctx = _context.detect(env)
        self.reports_loss = report_loss_all_ranks or self.ctx.rank == 0
        self.on_anomaly = on_anomaly
        self.health = health
        self.report_interval = report_interval
        self.attempt = attempt if attempt is not None else self.ctx.attempt
        self.gap = gap
        self.clock = clock  # wall-clock epoch seconds: record timestamps and phase boundaries
        self._next_index = 0
        self._last_end: Any = None  # the last step's end boundary, while the next step may start at it
        self._last_exit = -math.inf  # wall-clock time of that end
        self._unencodable = 0
        self._timing = timing
        self._peak = peak_flops
        self._gpu = gpu
        self._reporter: Reporter | None = None
        self._closed = False
        self.sinks: list[Sink] = (
            list(sinks) if sinks is not None else self._default_sinks(socket, log_path, prometheus_port, env)
        )
        # a buffered JSONL file must reach the disk even without close(); that is no clean end
        atexit.register(self.close, clean=False)
        self._emit(self._run_record("start"))

    def _default_sinks(
        self,
        socket: str | Path | None,
        log_path: str | Path | None,
        prometheus_port: int | None,
        env: Mapping[str, str] | None,
    ) -> list[Sink]:
        sinks: list[Sink] = [SocketSink(socket if socket is not None else default_socket_path(env))]
        log_path = log_path if log_path is not None else self.ctx.train_log
        if log_path:
            sinks.append(JsonlSink(log_path))
        if prometheus_port is not None:
            sinks.append(PrometheusSink(prometheus_port + self.ctx.local_rank, node=self.ctx.node))
        return sinks

    # -- the device seam is chosen at the first step, once the user has put the model where it runs --
    @property
    def timing(self) -> Timing:
        if self._timing is None:
            self._timing = self._pick_timing()
        return self._timing

    def _pick_timing(self) -> Timing:
        torch = sys.modules.get("torch")  # never import torch here: a torch-free loop stays torch-free
        cuda = getattr(torch, "cuda", None)
        if cuda is not None and cuda.is_available() and cuda.is_initialized():
            if self._gpu is None:
                self._gpu = int(cuda.current_device())
            if self._peak is None:
                self._peak = self._table_peak(str(cuda.get_device_name()))
            return CudaTiming(cuda)
        return CpuTiming()

    def _table_peak(self, device_name: str) -> float | None:
        key = _mfu.gpu_model_key(device_name)
        if key is None or self.precision not in _mfu.PEAK_FLOPS[key]:
            log.info(
                "gpulens: no peak FLOPs for %r/%s; MFU not reported (pass peak_flops=)",
                device_name,
                self.precision,
            )
            return None
        return _mfu.PEAK_FLOPS[key][self.precision]

    def _mfu(self, tokens: int, seconds: float) -> float | None:
        if not self.flops_per_token or not self._peak:
            return None
        return _mfu.mfu(self.flops_per_token, tokens, seconds, self._peak, self.gpus)

    def _start_reporter(self) -> Reporter:
        ctx = self.ctx
        identity = {
            "v": 1,
            "kind": "step",
            "job_id": self.job_id,
            "team": self.team,
            "rank": ctx.rank,
            "local_rank": ctx.local_rank,
            "gpu": self._gpu if self._gpu is not None else ctx.local_rank,
            "pid": ctx.pid,
            "attempt": self.attempt,
        }
        if self._gpu is None and ctx.gpu_uuid:  # the host's device (a MIG instance's own), docs/agent.md
            identity["gpu_uuid"] = ctx.gpu_uuid
        self._reporter = Reporter(
            sinks=self.sinks,
            identity=identity,
            timing=self.timing,
            health=LossHealth(self.health),
            reports_loss=self.reports_loss,
            mfu=self._mfu,
            interval=self.report_interval,
            clock=self.clock,
        )
        return self._reporter

    @property
    def anomalies(self) -> list[Anomaly]:
        """Every anomaly found so far, in order."""
        return self._reporter.anomalies if self._reporter is not None else []

    @property
    def dropped(self) -> int:
        """Records lost so far: no agent, full buffers, unwritable files, steps never done, unencodable."""
        late = self._reporter.late_dropped + self._reporter.unencodable if self._reporter is not None else 0
        return late + self._unencodable + sum(s.dropped for s in self.sinks)

    # -- the training thread --
    def step(self, tokens: int | None = None, samples: int | None = None, step: int | None = None) -> Step:
        """A context manager around one optimizer step; `step` numbers it (default: one more than the
        last)."""
        index = self._next_index if step is None else step
        self._next_index = index + 1
        return Step(self, index, tokens, samples)

    def phase(self, name: str, step: int | None = None) -> Phase:
        """A context manager around a stretch that is not a step: `init`, `checkpoint_load`,
        `checkpoint_save`, `eval`, or any other name (counted as `other` in goodput)."""
        return Phase(self, name, step)

    def data(self, batches: Iterable[Any]) -> TimedBatches:
        """`for batch in monitor.data(loader):` — the loader's batches, each wait timed (`data_wait`)."""
        return TimedBatches(self, batches)

    def add_phase(self, name: str, start: float, end: float, step: int | None = None) -> None:
        """Report a phase measured elsewhere (epoch seconds, host clock); adapters and `Phase` use this."""
        if step is None:
            step = self._next_index
        elif name == "checkpoint_load":
            self._next_index = step  # the steps after a resume go on from the checkpoint's step
        self._break_chain()  # the phase is not part of the next step's time
        record = self._record(PHASE)
        record.update(attempt=self.attempt, phase=name, start=start, end=end, step=step)
        self._emit(record)

    def _begin(self, step: Step) -> None:
        now = self.clock()
        previous, self._last_end = self._last_end, None
        if previous is not None and now - self._last_exit < self.gap:
            step.start = previous  # one boundary per step: this step runs from the last one's end
        else:
            step.start = self.timing.mark()
            step.orphan = previous

    def _stop(self, step: Step) -> None:
        if step.end is None:
            step.end = self.timing.mark()
            step.ts = self._last_exit = self.clock()
            self._last_end = step.end

    def _break_chain(self) -> None:
        self._last_exit = -math.inf

    def _finish(self, step: Step) -> None:
        reporter = self._reporter or self._start_reporter()
        timing = self.timing
        stopped = step.end is not None
        late = stopped and any(hasattr(value, "detach") for value in step.values.values())
        step.captured = timing.capture(step.values)  # before the end boundary: copies ordered before it
        if not stopped:
            step.end = ready = timing.mark()
            step.ts = self._last_exit = self.clock()
            self._last_end = ready
        else:  # a tensor recorded after stop() is copied after the end boundary: ready after one of its own
            ready = timing.mark() if late else step.end
        reporter.submit(step, ready, step.ts)
        if reporter.fired:
            self._call_back(reporter)

    def _record(self, kind: str) -> dict[str, Any]:
        return {"v": 1, "kind": kind, "job_id": self.job_id, "team": self.team, "rank": self.ctx.rank}

    def _run_record(self, event: str) -> dict[str, Any]:
        record = self._record(RUN)
        record.update(event=event, attempt=self.attempt, ts=self.clock(), world_size=self.ctx.world_size)
        return record

    def _emit(self, record: dict[str, Any]) -> None:
        """A run or phase record, in order with the steps: through the reporter's queue once it runs."""
        if self._reporter is not None:
            self._reporter.enqueue(record)
            return
        if not write_record(self.sinks, record, flush=True):
            self._unencodable += 1

    def _call_back(self, reporter: Reporter) -> None:
        while reporter.fired:
            anomaly = reporter.fired.popleft()
            if self.on_anomaly is not None:
                self.on_anomaly(anomaly)

    # -- the end of the run --
    def close(self, wait: float = CLOSE_WAIT_SECONDS, clean: bool = True) -> None:
        """End the run: a `run` `end` record unless `clean=False` (the attempt failed), then judge the steps
        still pending (polling, up to `wait` seconds), close every sink and run late callbacks."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if clean:
            self._emit(self._run_record("end"))
        if self._reporter is None:
            for sink in self.sinks:
                sink.close()
            return
        self._reporter.close(wait)
        self._call_back(self._reporter)

    def __enter__(self) -> StepMonitor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(clean=exc_type is None)
