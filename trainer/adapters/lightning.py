"""A PyTorch Lightning `pytorch_lightning.Callback` over StepMonitor.

```python
from gpulens.trainer.adapters.lightning import GpulensCallback
pl.Trainer(..., callbacks=[GpulensCallback(StepMonitor("job", "team", flops_per_token=...))])
```
A step is one training batch (`on_train_batch_start` to `on_train_batch_end`); its loss is the tensor
`training_step` returned (read later, without a sync), its learning rate the first optimizer's. Tokens
come from `tokens_fn(batch)`, by default the `input_ids` of a dict batch, the first tensor of a tuple, or
the batch tensor itself.

Phases, from Lightning's own hooks: the setup from `setup("fit")` to the sanity check or the first
training hook (`on_train_start`) is `checkpoint_load` when a checkpoint was restored
(`on_load_checkpoint`; Lightning restores between those hooks), else `init`; a validation run
(`on_validation_start` to `on_validation_end`, the sanity check's included) is `eval`; a checkpoint
save runs from `on_save_checkpoint` (Lightning calls it as it starts writing one) to the next hook this
callback gets (Lightning has no callback hook after the file is written, so the save includes any
work up to the next hook, e.g. fetching the next batch). A run that ends by an exception
(`on_exception`) is closed without a clean end. The class is built on first access, so this module
imports without Lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpulens.trainer.adapters._common import count_tokens
from gpulens.trainer.monitor import Step, StepMonitor


def _loss_of(outputs: Any) -> Any:
    if isinstance(outputs, dict):
        return outputs.get("loss")
    return outputs


class _Phases:
    """The framework-free half of the phase timing: open intervals, closed into `monitor.add_phase`."""

    def __init__(self, monitor: StepMonitor) -> None:
        self.monitor = monitor
        self.setup_at: float | None = None
        self.loaded = False
        self.eval_at: float | None = None
        self.save_at: float | None = None

    def setup(self) -> None:
        self.setup_at, self.loaded = self.monitor.clock(), False

    def end_setup(self, global_step: int) -> None:
        if self.setup_at is not None:
            name, step = ("checkpoint_load", global_step) if self.loaded else ("init", None)
            self.monitor.add_phase(name, self.setup_at, self.monitor.clock(), step)
            self.setup_at = None

    def end_save(self, global_step: int) -> None:
        if self.save_at is not None:
            self.monitor.add_phase("checkpoint_save", self.save_at, self.monitor.clock(), global_step)
            self.save_at = None

    def end_eval(self, global_step: int) -> None:
        if self.eval_at is not None:
            self.monitor.add_phase("eval", self.eval_at, self.monitor.clock(), global_step)
            self.eval_at = None


def _build() -> type:
    from pytorch_lightning import Callback

    class GpulensCallback(Callback):  # type: ignore[misc]
        """Reports every training batch of a `pytorch_lightning.Trainer`, its setup, validation and saves."""

        def __init__(
            self,
            monitor: StepMonitor,
            tokens_fn: Callable[[Any], int | None] = count_tokens,
            close_on_end: bool = True,
        ) -> None:
            self.monitor, self.tokens_fn, self.close_on_end = monitor, tokens_fn, close_on_end
            self._step: Step | None = None
            self._phases = _Phases(monitor)

        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            if stage == "fit":
                self._phases.setup()

        def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
            self._phases.loaded = True

        def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
            self._phases.end_setup(trainer.global_step)

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self._phases.end_setup(trainer.global_step)

        def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
            self._phases.save_at = self.monitor.clock()

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            self._phases.end_save(trainer.global_step)
            self._phases.eval_at = self.monitor.clock()

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            self._phases.end_eval(trainer.global_step)

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self._phases.end_save(trainer.global_step)
            tokens = self.tokens_fn(batch)
            self._step = self.monitor.step(tokens=tokens, samples=None, step=trainer.global_step).__enter__()

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            step, self._step = self._step, None
            if step is None:
                return
            loss = _loss_of(outputs)
            if loss is not None:
                step.record(loss=loss)
            if trainer.optimizers:
                step.record(lr=float(trainer.optimizers[0].param_groups[0]["lr"]))
            step.__exit__(None, None, None)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self._phases.end_save(trainer.global_step)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._phases.end_save(trainer.global_step)
            if self.close_on_end:
                self.monitor.close()

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            if self.close_on_end:
                self.monitor.close(clean=False)

    return GpulensCallback


def __getattr__(name: str) -> Any:
    if name == "GpulensCallback":
        cls = _build()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
