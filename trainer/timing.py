"""The seam between StepMonitor and the device: step boundaries and recorded values.

`CpuTiming` uses `time.perf_counter`. `CudaTiming` never waits on the GPU: a step boundary is a CUDA
event with timing enabled, a recorded tensor is copied `non_blocking` to pinned host memory on the
current stream (so it is a snapshot at the time of `record()`), and a step's figures may be read only
once its end event has completed (`ready()` is `cudaEventQuery`, which does not block). Everything the
monitor does to the device goes through one of these objects, so tests can count the calls.
"""

from __future__ import annotations

import time
from typing import Any, Protocol


class Timing(Protocol):
    def mark(self) -> Any:
        """A step boundary, taken without waiting."""

    def ready(self, end: Any) -> bool:
        """Whether everything before the boundary `end` has finished (never blocks)."""

    def seconds(self, start: Any, end: Any) -> float:
        """Seconds between two boundaries; only called once `ready(end)` is true."""

    def capture(self, value: Any) -> Any:
        """A host-side handle on a recorded tensor whose `float()` is valid once the step is ready."""


def _scalar(value: Any) -> Any:
    # detach() only what autograd tracks (a copy of a tracked tensor would record a backward node);
    # a loss already detached, or a grad norm, is used as it is (one torch call less per value)
    tensor = value.detach() if getattr(value, "requires_grad", True) else value
    if tensor.numel() != 1:
        raise ValueError(f"step.record() takes scalars; got a tensor of shape {tuple(tensor.shape)}")
    return tensor


class CpuTiming:
    """Host clock; recorded CPU tensors are read when the step ends (no device involved)."""

    def mark(self) -> float:
        return time.perf_counter()

    def ready(self, end: Any) -> bool:
        return True

    def seconds(self, start: Any, end: Any) -> float:
        return float(end - start)

    def capture(self, value: Any) -> Any:
        tensor = _scalar(value)
        # A CUDA tensor under the host clock must be read now, as the step is judged at once; StepMonitor
        # picks CudaTiming whenever CUDA is in use, so this is only a fallback for odd set-ups.
        return tensor.to("cpu") if getattr(tensor, "is_cuda", False) else tensor


class CudaTiming:
    """CUDA events and asynchronous copies; `cuda` is the `torch.cuda` module (injected in tests)."""

    def __init__(self, cuda: Any = None) -> None:
        if cuda is None:
            import torch

            cuda = torch.cuda
        self._event = cuda.Event
        self._pool: list[Any] = []  # finished events, reused: creating one per step costs a driver call

    def mark(self) -> Any:
        event = self._pool.pop() if self._pool else self._event(enable_timing=True)
        event.record()
        return event

    def ready(self, end: Any) -> bool:
        return bool(end.query())

    def seconds(self, start: Any, end: Any) -> float:
        elapsed = float(start.elapsed_time(end)) / 1000.0  # ms; both events have completed
        self._pool.append(start)
        self._pool.append(end)
        return elapsed

    def capture(self, value: Any) -> Any:
        tensor = _scalar(value)
        if getattr(tensor, "is_cuda", False):
            # ATen's _to_copy allocates the CPU destination in pinned memory when non_blocking is set
            # and the source is on CUDA, so this is a cudaMemcpyAsync ordered before the end event.
            return tensor.to("cpu", non_blocking=True)
        return tensor
