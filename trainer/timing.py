"""The seam between StepMonitor and the device: step boundaries and recorded values.

`CpuTiming` uses `time.perf_counter`. `CudaTiming` never waits on the GPU: a step boundary is a CUDA
event with timing enabled, a step's recorded tensors are copied `non_blocking` to pinned host memory
on the current stream at the step's end (one copy per step), and a step's figures may be read only
once its end event has completed (`ready()` is `cudaEventQuery`, which does not block). A step's end
event is usually the next step's start too (see StepMonitor), so a step costs one event. Everything the
monitor does to the device goes through one of these objects, so tests can count the calls.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol


class Timing(Protocol):
    def mark(self) -> Any:
        """A step boundary, taken without waiting."""

    def ready(self, end: Any) -> bool:
        """Whether everything before the boundary `end` has finished (never blocks)."""

    def seconds(self, start: Any, end: Any) -> float:
        """Seconds between two boundaries; only called once `ready(end)` is true."""

    def release(self, boundary: Any) -> None:
        """`boundary` (judged, no longer needed by any step) may be reused by a later `mark()`."""

    def capture(self, values: dict[str, Any]) -> Any:
        """A step's recorded values (numbers, scalar tensors) -> what `figures` reads once the step is ready.

        Called at the step's end, before its end boundary is marked, so that on CUDA the copies are
        ordered before the end event. Raises ValueError for a tensor that is not a scalar.
        """

    def figures(self, captured: Any) -> dict[str, Any]:
        """The values `capture` took, as host numbers; only called once the step's end is ready."""


def _scalar(value: Any) -> Any:
    # detach() only what autograd tracks (a copy of a tracked tensor would record a backward node);
    # a loss already detached, or a grad norm, is used as it is (one torch call less per value)
    tensor = value.detach() if getattr(value, "requires_grad", True) else value
    if tensor.numel() != 1:
        raise ValueError(f"step.record() takes scalars; got a tensor of shape {tuple(tensor.shape)}")
    return tensor


def _not_scalar(value: Any) -> ValueError:
    return ValueError(f"step.record() takes scalars; got a tensor of shape {tuple(value.shape)}")


class CpuTiming:
    """Host clock (`clock`, `time.perf_counter`); recorded CPU tensors are read at the step's end (no device
    involved, nothing to wait for)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.mark = clock  # type: ignore[method-assign]  # one call less per boundary
        self._warned = False

    def mark(self) -> float:
        return time.perf_counter()

    def ready(self, end: Any) -> bool:
        return True

    def seconds(self, start: Any, end: Any) -> float:
        return float(end - start)

    def release(self, boundary: Any) -> None:
        pass

    def capture(self, values: dict[str, Any]) -> dict[str, Any]:
        for key, value in values.items():
            if hasattr(value, "detach"):
                # A CPU tensor is read now (~0.3 µs): cheaper than keeping a detached copy (~0.7 µs) to
                # read later, and it lets go of the autograd graph at once. A CUDA tensor under the host
                # clock is a fallback for odd set-ups (StepMonitor picks CudaTiming whenever CUDA is in
                # use): reading it waits for the device.
                try:
                    values[key] = value.item() if self._warned else self._first_item(value)
                except (ValueError, RuntimeError):
                    raise _not_scalar(value) from None
        return values

    def figures(self, captured: dict[str, Any]) -> dict[str, Any]:
        return captured

    def _first_item(self, value: Any) -> Any:
        # Reading a tensor autograd tracks (a loss) makes torch warn, once per process, that it may
        # be unexpected; here it is what is meant (the value only), and detaching first would cost
        # ~0.7 µs a step. So the first read runs with that one warning silenced.
        if not value.requires_grad:
            return value.item()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
            number = value.item()
        self._warned = True
        return number


def _default_stack() -> Callable[[list[Any]], Any]:
    import torch

    float32 = torch.float32

    def stack(tensors: list[Any]) -> Any:
        return torch.stack(
            [t if t.dim() == 0 and t.dtype == float32 else t.float().reshape(()) for t in tensors]
        )

    return stack


class CudaTiming:
    """CUDA events and asynchronous copies; `cuda` is the `torch.cuda` module (injected in tests).

    A step's CUDA tensors go to the host in one copy: stacked on the device (one kernel) and copied
    `non_blocking` into pinned memory, instead of one copy per tensor (`stack` is injected in tests).
    """

    def __init__(self, cuda: Any = None, stack: Callable[[list[Any]], Any] | None = None) -> None:
        if cuda is None:
            import torch

            cuda = torch.cuda
        self._event = cuda.Event
        self._stack = stack
        self._pool: list[Any] = []  # judged events, reused: creating one per step costs a driver call

    def mark(self) -> Any:
        event = self._pool.pop() if self._pool else self._event(enable_timing=True)
        event.record()
        return event

    def ready(self, end: Any) -> bool:
        return bool(end.query())

    def seconds(self, start: Any, end: Any) -> float:
        return float(start.elapsed_time(end)) / 1000.0  # ms; both events have completed

    def release(self, boundary: Any) -> None:
        self._pool.append(boundary)

    def capture(self, values: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...], Any]:
        keys = [key for key, value in values.items() if hasattr(value, "detach")]
        if not keys:
            return values, (), None
        tensors = [_scalar(values.pop(key)) for key in keys]
        on_device = [t for t in tensors if getattr(t, "is_cuda", False)]
        if len(on_device) != len(tensors):  # a CPU tensor among them: read the CPU ones now, copy the rest
            for key, tensor in zip(list(keys), tensors, strict=True):
                if not getattr(tensor, "is_cuda", False):
                    values[key] = float(tensor)
                    keys.remove(key)
            tensors = on_device
            if not tensors:
                return values, (), None
        if len(tensors) == 1:
            device = tensors[0]
        else:
            if self._stack is None:
                self._stack = _default_stack()
            try:
                device = self._stack(tensors)
            except (RuntimeError, TypeError, ValueError):  # e.g. tensors on two GPUs: one copy each
                return values, tuple(keys), [t.to("cpu", non_blocking=True) for t in tensors]
        # ATen's _to_copy allocates the CPU destination in pinned memory when non_blocking is set
        # and the source is on CUDA, so this is one cudaMemcpyAsync ordered before the end event.
        return values, tuple(keys), device.to("cpu", non_blocking=True)

    def figures(self, captured: tuple[dict[str, Any], tuple[str, ...], Any]) -> dict[str, Any]:
        values, keys, host = captured
        if keys:
            # host tensors whose copies have completed: no device wait
            numbers = [_number(c.tolist()) for c in host] if isinstance(host, list) else host.tolist()
            values.update(zip(keys, numbers if isinstance(numbers, list) else [numbers], strict=True))
        return values


def _number(value: Any) -> Any:
    """The one number of a scalar tensor's `tolist()`: `x`, `[x]` or `[[x]]`."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value
