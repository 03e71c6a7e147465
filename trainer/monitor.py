"""StepMonitor: step time, throughput, MFU and loss health of a training loop, without waiting on the GPU.

```python
monitor = StepMonitor(job_id="bgpt-50b", team="ai-research", flops_per_token=6 * n_params)
for batch in loader:
    with monitor.step(tokens=batch.numel()) as step:
        loss = model(batch).loss
        loss.backward(); opt.step(); opt.zero_grad()
        step.record(loss=loss, grad_norm=gn, lr=sched.get_last_lr()[0])
```

Each step's boundaries and recorded values go through a `Timing` (CUDA events and asynchronous
copies on the GPU, `perf_counter` on the CPU); a step costs two boundaries and a hand-over to the
`Reporter`, which, in batches every `report_interval` seconds, judges each step whose end boundary is
ready (on CUDA, a few steps later), turns it into a SPEC §4 record for every sink and runs the SPEC §7
detector on its loss. Nothing ever synchronizes with the device.
"""

from __future__ import annotations

import atexit
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from gpulens.paths import default_socket_path
from gpulens.trainer import context as _context
from gpulens.trainer import mfu as _mfu
from gpulens.trainer.health import DEFAULTS, Anomaly, HealthConfig, LossHealth
from gpulens.trainer.reporter import Reporter
from gpulens.trainer.sinks import JsonlSink, PrometheusSink, Sink, SocketSink
from gpulens.trainer.timing import CpuTiming, CudaTiming, Timing

log = logging.getLogger("gpulens.trainer")

CLOSE_WAIT_SECONDS = 10.0


class Step:
    """One training step: a context manager; `record(**values)` takes Python numbers or scalar tensors."""

    __slots__ = ("index", "tokens", "samples", "values", "start", "_monitor")

    def __init__(self, monitor: StepMonitor, index: int, tokens: int | None, samples: int | None) -> None:
        self._monitor = monitor
        self.index = index
        self.tokens = tokens
        self.samples = samples
        self.values: dict[str, Any] = {}
        self.start: Any = None

    def record(self, **values: Any) -> None:
        """Attach figures (loss, grad_norm, lr, ...) to this step; tensors are copied without waiting."""
        capture = self._monitor.timing.capture
        for key, value in values.items():
            # numbers (Python, NumPy) are kept as they are; anything with .detach() is a tensor
            self.values[key] = capture(value) if hasattr(value, "detach") else value

    def __enter__(self) -> Step:
        self.start = self._monitor.timing.mark()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:  # a step that raised is not a step; the exception goes on untouched
            self._monitor._finish(self)


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
    ) -> None:
        self.job_id, self.team = job_id, team
        self.flops_per_token = flops_per_token
        self.precision, self.gpus = precision, gpus
        self.ctx = _context.detect(env)
        self.reports_loss = report_loss_all_ranks or self.ctx.rank == 0
        self.on_anomaly = on_anomaly
        self.health = health
        self.report_interval = report_interval
        self._next_index = 0
        self._timing = timing
        self._peak = peak_flops
        self._gpu = gpu
        self._reporter: Reporter | None = None
        self._closed = False
        self.sinks: list[Sink] = (
            list(sinks) if sinks is not None else self._default_sinks(socket, log_path, prometheus_port, env)
        )
        atexit.register(self.close)  # a buffered JSONL file must reach the disk even without close()

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
        }
        self._reporter = Reporter(
            sinks=self.sinks,
            identity=identity,
            timing=self.timing,
            health=LossHealth(self.health),
            reports_loss=self.reports_loss,
            mfu=self._mfu,
            interval=self.report_interval,
        )
        return self._reporter

    @property
    def anomalies(self) -> list[Anomaly]:
        """Every anomaly found so far, in order."""
        return self._reporter.anomalies if self._reporter is not None else []

    @property
    def dropped(self) -> int:
        """Records lost so far: no agent, full buffers, unwritable files, steps never completed or unencodable."""
        late = self._reporter.late_dropped + self._reporter.unencodable if self._reporter is not None else 0
        return late + sum(s.dropped for s in self.sinks)

    # -- the training thread --
    def step(self, tokens: int | None = None, samples: int | None = None, step: int | None = None) -> Step:
        """A context manager around one optimizer step; `step` numbers it (default: one more than the last)."""
        index = self._next_index if step is None else step
        self._next_index = index + 1
        return Step(self, index, tokens, samples)

    def _finish(self, step: Step) -> None:
        reporter = self._reporter or self._start_reporter()
        reporter.submit(step, self.timing.mark(), time.time())
        if reporter.fired:
            self._call_back(reporter)

    def _call_back(self, reporter: Reporter) -> None:
        while reporter.fired:
            anomaly = reporter.fired.popleft()
            if self.on_anomaly is not None:
                self.on_anomaly(anomaly)

    # -- the end of the run --
    def close(self, wait: float = CLOSE_WAIT_SECONDS) -> None:
        """Judge the steps still pending (polling, up to `wait` seconds), close every sink, run late callbacks."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self._reporter is None:
            for sink in self.sinks:
                sink.close()
            return
        self._reporter.close(wait)
        self._call_back(self._reporter)

    def __enter__(self) -> StepMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
