"""The reference trainer: a small decoder-only transformer learning a generated corpus, instrumented with
StepMonitor, with switches that inject each failure SPEC §7 describes (for demos and tests).

- `diverge_at=K`: from step K the learning rate is multiplied by `diverge_factor` (a blow-up), and the
  loss really diverges: it leaves its minimum and stays away.
- `nan_at=K`: step K's loss is made non-finite (as an fp16 overflow does) and that step's update is
  skipped, as a dynamic loss scaler would; the NaN is reported at exactly step K.
- `stall_at=K`, `stall_seconds=S`: step K waits S seconds for its input (a stalled data loader).

Every figure of a step stays on the device until the monitor reads it; the loop never synchronizes.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpulens.trainer.monitor import StepMonitor
from gpulens.trainer.reference import corpus
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

    def line(self, job_id: str) -> str:
        rate = self.steps / self.seconds if self.seconds > 0 else 0.0
        found = ", ".join(self.anomalies) or "none"
        return (
            f"gpulens reference trainer: job {job_id}: {self.steps} steps in {self.seconds:.1f} s "
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

    def batch(self) -> tuple[Any, Any]:
        import torch

        starts = torch.randint(
            0,
            self.data.numel() - self.config.seq_len - 1,
            (self.config.batch, 1),
            device=self.device,
            generator=self.generator,
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

    def step(self, skip_update: bool = False) -> tuple[Any, Any]:
        """One optimizer step; returns (loss, grad_norm) as device tensors, unread."""
        import torch

        x, y = self.batch()
        loss = self.model(x, y)
        if skip_update:
            return loss * float("nan"), None
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), grad_norm


def default_peak(config: ReferenceConfig) -> float | None:
    """The peak FLOP/s MFU is measured against: the override, else (CPU) a nominal figure, else the GPU table."""
    if config.peak_flops is not None:
        return config.peak_flops
    if config.device == "cpu":
        import torch

        return torch.get_num_threads() * cpu_nominal_flops_per_core()
    return None  # StepMonitor looks the GPU up by name


def build_monitor(config: ReferenceConfig, work: Workload) -> StepMonitor:
    return StepMonitor(
        config.job_id,
        config.team,
        flops_per_token=work.shape.flops_per_token(),
        peak_flops=default_peak(config),
        socket=config.socket,
        log_path=config.log,
        prometheus_port=config.prometheus_port,
    )


def train(config: ReferenceConfig, monitor: StepMonitor | None = None) -> Summary:
    """Run `config.steps` steps, reporting through `monitor` (built from the config when None), and close it."""
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    work = Workload(config)
    monitor = monitor or build_monitor(config, work)
    first: Any = None
    recent: deque[Any] = deque(maxlen=10)
    started = time.perf_counter()
    try:
        for index in range(config.steps):
            with monitor.step(tokens=work.tokens_per_step, samples=config.batch, step=index) as step:
                if index == config.stall_at:
                    time.sleep(config.stall_seconds)
                if index == config.diverge_at:
                    work.set_lr(config.lr * config.diverge_factor)
                loss, grad_norm = work.step(skip_update=index == config.nan_at)
                step.record(**work.figures(loss, grad_norm))
            first = loss if first is None else first
            recent.append(loss)
    finally:
        monitor.close()
    seconds = time.perf_counter() - started
    # One read of the device at the very end, after the timed loop, for the summary line.
    final = torch.stack(list(recent)).float().nanmean().item() if recent else float("nan")
    socket_sink = next((s for s in monitor.sinks if isinstance(s, SocketSink)), None)
    return Summary(
        steps=config.steps,
        seconds=seconds,
        tokens=config.steps * work.tokens_per_step,
        first_loss=float(first) if first is not None else float("nan"),
        final_loss=final,
        anomalies=tuple(f"{a.kind}@{a.step}" for a in monitor.anomalies),
        sent=socket_sink.sent if socket_sink else 0,
        dropped=monitor.dropped,
    )
