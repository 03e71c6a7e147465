"""A PyTorch Lightning `pytorch_lightning.Callback` over StepMonitor.

```python
from gpulens.trainer.adapters.lightning import GpulensCallback
pl.Trainer(..., callbacks=[GpulensCallback(StepMonitor("job", "team", flops_per_token=...))])
```
A step is one training batch (`on_train_batch_start` to `on_train_batch_end`); its loss is the tensor
`training_step` returned (read later, without a sync), its learning rate the first optimizer's. Tokens
come from `tokens_fn(batch)`, by default the `input_ids` of a dict batch, the first tensor of a tuple, or
the batch tensor itself. The class is built on first access, so this module imports without Lightning.
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


def _build() -> type:
    from pytorch_lightning import Callback

    class GpulensCallback(Callback):  # type: ignore[misc]
        """Reports every training batch of a `pytorch_lightning.Trainer` through a StepMonitor."""

        def __init__(
            self,
            monitor: StepMonitor,
            tokens_fn: Callable[[Any], int | None] = count_tokens,
            close_on_end: bool = True,
        ) -> None:
            self.monitor, self.tokens_fn, self.close_on_end = monitor, tokens_fn, close_on_end
            self._step: Step | None = None

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
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
                step.record(loss=loss.detach() if hasattr(loss, "detach") else loss)
            if trainer.optimizers:
                step.record(lr=float(trainer.optimizers[0].param_groups[0]["lr"]))
            step.__exit__(None, None, None)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            if self.close_on_end:
                self.monitor.close()

    return GpulensCallback


def __getattr__(name: str) -> Any:
    if name == "GpulensCallback":
        cls = _build()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
