"""A Hugging Face `transformers.TrainerCallback` over StepMonitor.

```python
from gpulens.trainer import StepMonitor
from gpulens.trainer.adapters.hf import GpulensCallback

callback = GpulensCallback(StepMonitor("job", "team", flops_per_token=...), tokens_per_step=B * T)
trainer = Trainer(..., callbacks=[callback])
```
A step's time runs from `on_step_begin` to `on_step_end`; the step stays open until the next
`on_step_begin` (or the end of training), so the values the Trainer logs after `on_step_end` (`loss`,
`grad_norm`, `learning_rate`; set `logging_steps=1` for a loss per step) still belong to it. What the
Trainer does between two steps is timed from its own callbacks: an evaluation ends with `on_evaluate`
(an `eval` phase from the end of the step's logging), a checkpoint with `on_save` (a
`checkpoint_save` phase from the end of the evaluation, else of the logging). The setup between the
Trainer's construction (`on_init_end`) and `on_train_begin` is an `init` phase, or `checkpoint_load`
when training resumes from a checkpoint (`global_step` > 0 at `on_train_begin`: the Trainer has loaded
the model, optimizer and state by then). Tokens per step are `tokens_per_step`, else the growth of
`state.num_input_tokens_seen` (`TrainingArguments(include_num_input_tokens_seen=True)`). The class is
built on first access, so this module imports without transformers.
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
        self._built: float | None = None  # when the Trainer was constructed (on_init_end)
        self._since: float | None = None  # the end of what was last accounted between two steps

    def built(self) -> None:
        self._built = self.monitor.clock()

    def train_begin(self, global_step: int) -> None:
        """The Trainer's setup as a phase: loading a checkpoint when it resumes, else `init`."""
        if self._built is None:
            self._since = self.monitor.clock()
            return
        resumed = global_step > 0
        name, step = ("checkpoint_load", global_step) if resumed else ("init", None)
        now = self.monitor.clock()
        self.monitor.add_phase(name, self._built, now, step)
        self._built = None
        self._since = now  # an evaluation before the first step (eval_on_start) is timed from here

    def begin(self, index: int, tokens_seen: int) -> None:
        self.end(tokens_seen)
        self._tokens_seen = tokens_seen
        self._step = self.monitor.step(tokens=self.tokens_per_step, step=index).__enter__()

    def step_end(self) -> None:
        if self._step is not None:
            self._step.stop()
            self._since = self.monitor.clock()

    def log(self, logs: dict[str, Any] | None) -> None:
        if not logs:
            return
        if any(key.startswith("eval_") for key in logs):
            return  # an evaluation's metrics: its time ends at on_evaluate
        if self._step is not None:
            self._step.record(
                **{
                    ours: logs[theirs]
                    for theirs, ours in LOGGED.items()
                    if isinstance(logs.get(theirs), (int, float))
                }
            )
        if self._since is not None:
            self._since = self.monitor.clock()  # the step's logging (it reads the loss) is not evaluation

    def between(self, name: str, step: int) -> None:
        """An `eval` or `checkpoint_save` that ends now and began where the last thing accounted ended."""
        now = self.monitor.clock()
        if self._since is not None:
            self.monitor.add_phase(name, self._since, now, step)
        self._since = now

    def end(self, tokens_seen: int) -> None:
        step, self._step = self._step, None
        self._since = None
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
        """Reports every optimizer step of a `transformers.Trainer`, its evaluations and checkpoints."""

        def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.built()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.train_begin(int(state.global_step))

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.begin(state.global_step, int(getattr(state, "num_input_tokens_seen", 0) or 0))

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step_end()

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            self.log(logs)

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.between("eval", int(state.global_step))

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.between("checkpoint_save", int(state.global_step))

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.finish(int(getattr(state, "num_input_tokens_seen", 0) or 0))

    return GpulensCallback


def __getattr__(name: str) -> Any:
    if name == "GpulensCallback":
        cls = _build()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
