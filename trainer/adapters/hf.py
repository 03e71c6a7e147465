"""A Hugging Face `transformers.TrainerCallback` over StepMonitor.

```python
from gpulens.trainer import StepMonitor
from gpulens.trainer.adapters.hf import GpulensCallback
trainer = Trainer(..., callbacks=[GpulensCallback(StepMonitor("job", "team", flops_per_token=...), tokens_per_step=B * T)])
```
A step runs from `on_step_begin` to the next `on_step_begin` (or the end of training), so the values
the Trainer logs after `on_step_end` (`loss`, `grad_norm`, `learning_rate`; set `logging_steps=1` for a
loss per step) belong to it, and the step time covers logging and checkpointing as wall time does.
Tokens per step are `tokens_per_step`, else the growth of `state.num_input_tokens_seen`
(`TrainingArguments(include_num_input_tokens_seen=True)`). The class is built on first access, so this
module imports without transformers.
"""

from __future__ import annotations

from typing import Any

from gpulens.trainer.monitor import Step, StepMonitor

LOGGED = {"loss": "loss", "grad_norm": "grad_norm", "learning_rate": "lr"}


class _Adapter:
    """The framework-free half: it only talks to StepMonitor."""

    def __init__(
        self, monitor: StepMonitor, tokens_per_step: int | None = None, close_on_end: bool = True
    ) -> None:
        self.monitor = monitor
        self.tokens_per_step = tokens_per_step
        self.close_on_end = close_on_end
        self._step: Step | None = None
        self._tokens_seen = 0

    def begin(self, index: int, tokens_seen: int) -> None:
        self.end(tokens_seen)
        self._tokens_seen = tokens_seen
        self._step = self.monitor.step(tokens=self.tokens_per_step, step=index).__enter__()

    def log(self, logs: dict[str, Any] | None) -> None:
        if self._step is not None and logs:
            self._step.record(
                **{
                    ours: logs[theirs]
                    for theirs, ours in LOGGED.items()
                    if isinstance(logs.get(theirs), (int, float))
                }
            )

    def end(self, tokens_seen: int) -> None:
        step, self._step = self._step, None
        if step is not None:
            if step.tokens is None and tokens_seen > self._tokens_seen:
                step.tokens = tokens_seen - self._tokens_seen
            step.__exit__(None, None, None)

    def finish(self, tokens_seen: int) -> None:
        self.end(tokens_seen)
        if self.close_on_end:
            self.monitor.close()


def _build() -> type:
    from transformers import TrainerCallback

    class GpulensCallback(TrainerCallback, _Adapter):  # type: ignore[misc]
        """Reports every optimizer step of a `transformers.Trainer` through a StepMonitor."""

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.begin(state.global_step, int(getattr(state, "num_input_tokens_seen", 0) or 0))

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            self.log(logs)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.finish(int(getattr(state, "num_input_tokens_seen", 0) or 0))

    return GpulensCallback


def __getattr__(name: str) -> Any:
    if name == "GpulensCallback":
        cls = _build()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
