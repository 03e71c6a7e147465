"""The reference trainer: a small decoder-only transformer learning a generated corpus, instrumented with
StepMonitor, with switches that inject each failure docs/design.md §7 describes (for demos and tests).

- `diverge_at=K`: from step K the learning rate is multiplied by `diverge_factor` (a blow-up), and the
  loss really diverges: it leaves its minimum and stays away.
- `nan_at=K`: step K's loss is made non-finite (as an fp16 overflow does) and that step's update is
  skipped, as a dynamic loss scaler would; the NaN is reported at exactly step K.
- `stall_at=K`, `stall_seconds=S`: the input of step K arrives S seconds late (a stalled data loader):
  a `data_wait` phase before step K.
- `checkpoint_every=N`, `checkpoint_seconds=S`: a real checkpoint (`torch.save` of model, optimizer and
  data stream, `checkpoint.py`) after every N steps and/or when S seconds have passed since the last,
  each a `checkpoint_save` phase; `resume`: load the latest one first (a `checkpoint_load` phase) and go
  on from its step, as the next attempt of the job; `crash_at=K`: fail at the start of step K
  (`InjectedCrash`), with no clean end of the run, losing the steps since the last checkpoint.
- `eval_every=N`: an `eval` phase (the loss of a few batches, no update) after every N steps.
- `pace=R`: at most R steps a second; a step that would be faster lasts 1/R s (as on a slower device),
  so a demo's trainer does not keep a core busy.

Building the model is an `init` phase. Every figure of a step stays on the device until the monitor
reads it; the loop never synchronizes.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpulens.trainer.monitor import StepMonitor
from gpulens.trainer.reference import checkpoint, corpus
from gpulens.trainer.sinks import SocketSink

CPU_NOMINAL_HZ = 3.0e9  # a nominal all-core clock; MFU on a CPU is a demonstration figure, not a benchmark


def cpu_nominal_flops_per_core(cpuinfo: Path = Path("/proc/cpuinfo")) -> float:
    """fp32 FLOP/s of one core: 2 FMA ports x (16 lanes with AVX-512, else 8) x 2 FLOP x CPU_NOMINAL_HZ."""
    try:
        wide = " avx512f" in cpuinfo.read_text(errors="replace")
    except OSError:
        wide = False
    return CPU_NOMINAL_HZ * 2 * (16 if wide else 8) * 2


@dataclass(frozen=True)
class ReferenceConfig:
    job_id: str
    team: str
    steps: int = 200
    socket: Path | None = None
    log: Path | None = None
    diverge_at: int | None = None
    diverge_factor: float = 300.0
    nan_at: int | None = None
    stall_at: int | None = None
    stall_seconds: float = 0.0
    seed: int = 0
    device: str = "cpu"
    batch: int = 16
    seq_len: int = 64
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    lr: float = 2e-3
    threads: int | None = None
    peak_flops: float | None = None
    prometheus_port: int | None = None
    checkpoint_dir: Path | None = None
    checkpoint_every: int | None = None
    checkpoint_seconds: float | None = None
    resume: bool = False
    crash_at: int | None = None
    eval_every: int | None = None
    eval_batches: int = 4
    pace: float | None = None
    attempt: int | None = None

    def checkpoints(self) -> Path:
        return self.checkpoint_dir if self.checkpoint_dir is not None else Path("checkpoints") / self.job_id


class InjectedCrash(RuntimeError):
    """`crash_at`: the run fails here, as a lost node or a CUDA error would end it."""

    def __init__(self, step: int) -> None:
        super().__init__(f"crashed at step {step} (--crash-at)")
        self.step = step


@dataclass(frozen=True)
class Summary:
    steps: int
    seconds: float
    tokens: int
    first_loss: float
    final_loss: float
    anomalies: tuple[str, ...] = field(default=())
    sent: int = 0
    dropped: int = 0
    attempt: int = 1
    first_step: int = 0

    def line(self, job_id: str) -> str:
        rate = self.steps / self.seconds if self.seconds > 0 else 0.0
        found = ", ".join(self.anomalies) or "none"
        resumed = f" from step {self.first_step}" if self.first_step else ""
        return (
            f"gpulens reference trainer: job {job_id} (attempt {self.attempt}): {self.steps} steps{resumed} "
            f"in {self.seconds:.1f} s "
            f"({rate:.1f} steps/s, {self.tokens / max(self.seconds, 1e-9):.0f} tokens/s); "
            f"loss {self.first_loss:.3f} -> {self.final_loss:.3f}; anomalies: {found}; "
            f"datagrams sent {self.sent}, dropped {self.dropped}"
        )


class Workload:
    """Model, optimizer and an on-device corpus: everything one step needs, no host round trips."""

    def __init__(self, config: ReferenceConfig) -> None:
        import torch

        from gpulens.trainer.reference.model import ModelShape, TinyGPT

        text = corpus.generate(seed=config.seed)
        vocab = corpus.vocabulary(text)
        index = {ch: i for i, ch in enumerate(vocab)}
        self.device = torch.device(config.device)
        self.config = config
        self.data = torch.tensor([index[ch] for ch in text], dtype=torch.long, device=self.device)
        self.shape = ModelShape(len(vocab), config.d_model, config.n_layers, config.n_heads, config.seq_len)
        torch.manual_seed(config.seed)
        self.model = TinyGPT(self.shape).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=0.0)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.offsets = torch.arange(config.seq_len + 1, device=self.device)

    @property
    def tokens_per_step(self) -> int:
        return self.config.batch * self.config.seq_len

    def batch(self, generator: Any = None) -> tuple[Any, Any]:
        import torch

        starts = torch.randint(
            0,
            self.data.numel() - self.config.seq_len - 1,
            (self.config.batch, 1),
            device=self.device,
            generator=self.generator if generator is None else generator,
        )
        window = self.data[starts + self.offsets]
        return window[:, :-1], window[:, 1:]

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def figures(self, loss: Any, grad_norm: Any) -> dict[str, Any]:
        """What a step records: loss and grad norm (device tensors, unread) and the learning rate."""
        values = {"loss": loss, "lr": self.optimizer.param_groups[0]["lr"]}
        if grad_norm is not None:  # None on a skipped update
            values["grad_norm"] = grad_norm
        return values

    def step(self, batch: tuple[Any, Any], skip_update: bool = False) -> tuple[Any, Any]:
        """One optimizer step on `batch`; returns (loss, grad_norm) as device tensors, unread."""
        import torch

        x, y = batch
        loss = self.model(x, y)
        if skip_update:
            return loss * float("nan"), None
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), grad_norm

    def evaluate(self, batches: int) -> Any:
        """The mean loss of the same `batches` batches every time (their own random stream, so the training
        stream is untouched), without an update (a device tensor, unread)."""
        import torch

        generator = torch.Generator(device=self.device).manual_seed(self.config.seed + 1)
        with torch.no_grad():
            return torch.stack([self.model(*self.batch(generator)) for _ in range(batches)]).mean()


def default_peak(config: ReferenceConfig) -> float | None:
    """The peak FLOP/s MFU is measured against: the override, else (CPU) a nominal figure, else the GPU
    table."""
    if config.peak_flops is not None:
        return config.peak_flops
    if config.device == "cpu":
        import torch

        return torch.get_num_threads() * cpu_nominal_flops_per_core()
    return None  # StepMonitor looks the GPU up by name


def attempt_of(config: ReferenceConfig) -> int | None:
    """The attempt this run is: `config.attempt`, else with `resume` one more than the checkpoint directory
    has seen, else None (StepMonitor's own, from the launcher's restart counters)."""
    if config.attempt is not None:
        return config.attempt
    return checkpoint.next_attempt(config.checkpoints()) if config.resume else None


def build_monitor(config: ReferenceConfig) -> StepMonitor:
    """The run's monitor; its `flops_per_token` is set once the model is built (`train`)."""
    return StepMonitor(
        config.job_id,
        config.team,
        peak_flops=default_peak(config),
        socket=config.socket,
        log_path=config.log,
        prometheus_port=config.prometheus_port,
        attempt=attempt_of(config),
    )


def batches(work: Workload, config: ReferenceConfig, first: int, sleep: Any = time.sleep) -> Any:
    """The input of steps `first`, `first` + 1, ...; the one of `stall_at` arrives `stall_seconds` late."""
    index = first
    while True:
        if index == config.stall_at:
            sleep(config.stall_seconds)
        yield work.batch()
        index += 1


class Checkpointer:
    """When to save (every `checkpoint_every` steps, `checkpoint_seconds` after the last save), and saving."""

    def __init__(self, config: ReferenceConfig, monitor: StepMonitor) -> None:
        self.config, self.monitor = config, monitor
        self.directory = config.checkpoints()
        self.last = time.monotonic()
        self.saved: Path | None = None

    def enabled(self) -> bool:
        return bool(self.config.checkpoint_every or self.config.checkpoint_seconds or self.config.resume)

    def restore(self, work: Workload) -> int:
        """Load the latest checkpoint (a `checkpoint_load` phase); the step to run next (0 without one)."""
        found = checkpoint.latest(self.directory)
        if found is None:
            return 0
        with self.monitor.phase("checkpoint_load") as phase:
            restored = checkpoint.load(found, work)
            phase.step = restored.step
        return restored.step

    def after(self, done: int, work: Workload) -> None:
        """Save after `done` steps if one is due."""
        every, seconds = self.config.checkpoint_every, self.config.checkpoint_seconds
        due = bool(every and done % every == 0) or bool(seconds and time.monotonic() - self.last >= seconds)
        if due:
            with self.monitor.phase("checkpoint_save", step=done):
                self.saved = checkpoint.save(self.directory, done, work)
            self.last = time.monotonic()


def pace(config: ReferenceConfig, started: float) -> None:
    """Make the step that began at `started` (perf_counter) last at least 1/`config.pace` seconds."""
    if config.pace:
        left = 1.0 / config.pace - (time.perf_counter() - started)
        if left > 0:
            time.sleep(left)


def train(config: ReferenceConfig, monitor: StepMonitor | None = None) -> Summary:
    """Run steps up to `config.steps`, reporting through `monitor` (built from the config when None), and
    close it: with a clean end of the run when training finished, without one when it failed
    (`InjectedCrash`, an interrupt, an error), which propagates."""
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    monitor = monitor or build_monitor(config)
    saver = Checkpointer(config, monitor)
    if saver.enabled():  # the directory counts attempts, so that a later --resume is the next one
        checkpoint.count_attempt(config.checkpoints(), monitor.attempt)
    first: Any = None
    recent: deque[Any] = deque(maxlen=10)
    clean = False
    try:
        with monitor.phase("init"):
            work = Workload(config)
        if monitor.flops_per_token is None:
            monitor.flops_per_token = work.shape.flops_per_token()
        start = saver.restore(work) if config.resume else 0
        started = time.perf_counter()
        inputs = monitor.data(batches(work, config, start))
        for index, batch in zip(range(start, config.steps), inputs, strict=False):
            if index == config.crash_at:
                raise InjectedCrash(index)
            with monitor.step(tokens=work.tokens_per_step, samples=config.batch, step=index) as step:
                began = time.perf_counter()
                if index == config.diverge_at:
                    work.set_lr(config.lr * config.diverge_factor)
                loss, grad_norm = work.step(batch, skip_update=index == config.nan_at)
                step.record(**work.figures(loss, grad_norm))
                pace(config, began)
            first = loss if first is None else first
            recent.append(loss)
            done = index + 1
            if config.eval_every and done % config.eval_every == 0:
                with monitor.phase("eval", step=done):
                    # an evaluation reads its figure, so the phase ends when the device is done too
                    work.evaluate(config.eval_batches).item()
            saver.after(done, work)
        clean = True
    finally:
        monitor.close(clean=clean)
    seconds = time.perf_counter() - started
    # One read of the device at the very end, after the timed loop, for the summary line.
    final = torch.stack(list(recent)).float().nanmean().item() if recent else float("nan")
    socket_sink = next((s for s in monitor.sinks if isinstance(s, SocketSink)), None)
    return Summary(
        steps=config.steps - start,
        seconds=seconds,
        tokens=(config.steps - start) * work.tokens_per_step,
        first_loss=float(first) if first is not None else float("nan"),
        final_loss=final,
        anomalies=tuple(f"{a.kind}@{a.step}" for a in monitor.anomalies),
        sent=socket_sink.sent if socket_sink else 0,
        dropped=monitor.dropped,
        attempt=monitor.attempt,
        first_step=start,
    )
