"""GPU -> job from trainer datagrams (SPEC §4 `pid`, `gpu`, `job_id`, `team`).

A mapping ends when its process exits, or when no record has arrived for `timeout` seconds (the
process may live in another pid namespace, where we cannot see it exit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from gpulens.collector.backends.base import GpuReading


class TrainerMapper:
    """The strongest mapping: a live trainer says which GPU it drives."""

    def __init__(self, timeout: float = 60.0, alive: Callable[[int], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._alive = alive
        self._clock = clock
        self._lock = threading.Lock()
        self._by_gpu: dict[int, tuple[int, str, str, float]] = {}  # gpu -> (pid, job, team, last seen)

    def observe(self, gpu: int, pid: int, job_id: str, team: str) -> None:
        """Called by the socket thread for every step record that names a pid and a GPU."""
        with self._lock:
            self._by_gpu[gpu] = (pid, job_id, team, self._clock())

    def current(self) -> dict[int, tuple[str, str]]:
        """GPU index -> (job_id, team) for mappings still alive; expired ones are dropped."""
        now = self._clock()
        with self._lock:
            for gpu, (pid, _job, _team, seen) in list(self._by_gpu.items()):
                gone = self._alive is not None and pid > 0 and not self._alive(pid)
                if gone or now - seen > self.timeout:
                    del self._by_gpu[gpu]
            return {gpu: (job, team) for gpu, (_pid, job, team, _seen) in self._by_gpu.items()}

    def annotate(self, readings: Sequence[GpuReading]) -> list[GpuReading]:
        jobs = self.current()
        return [replace(r, job_id=jobs[r.identity.index][0], team=jobs[r.identity.index][1])
                if r.identity.index in jobs else r for r in readings]
