"""GPU -> job from trainer datagrams (docs/design.md §4 `pid`, `gpu`, `gpu_uuid`, `job_id`, `team`).

Only records whose sender may speak for the device reach it (`collector/trust.py`): the device is
the UUID the verifier resolved (a MIG instance's own), or a bare `gpu` index where no verifier
runs (tests, embedding). A mapping ends when its process exits, or when no record has arrived for
`timeout` seconds. A pid the agent cannot see at all (the trainer runs in another pid namespace,
e.g. a container without hostPID) is never declared dead: only the timeout ends its mapping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from gpulens.collector.backends.base import GpuReading


class TrainerMapper:
    """The strongest mapping: a live trainer says which GPU it drives."""

    def __init__(
        self,
        timeout: float = 60.0,
        alive: Callable[[int], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self._alive = alive
        self._clock = clock
        self._lock = threading.Lock()
        # device (UUID, or index) -> (pid, job, team, last seen, pid visible to us when last seen)
        self._by_gpu: dict[object, tuple[int, str, str, float, bool]] = {}

    def observe(self, gpu: object, pid: int, job_id: str, team: str) -> None:
        """Called from the socket thread (at most once a second per rank) for records naming a pid and GPU."""
        visible = self._alive is not None and pid > 0 and self._alive(pid)
        with self._lock:
            self._by_gpu[gpu] = (pid, job_id, team, self._clock(), visible)

    def current(self) -> dict[object, tuple[str, str]]:
        """Device (UUID or index) -> (job_id, team) for mappings still alive; expired ones are dropped."""
        now = self._clock()
        with self._lock:
            for gpu, (pid, _job, _team, seen, visible) in list(self._by_gpu.items()):
                exited = visible and self._alive is not None and not self._alive(pid)
                if exited or now - seen > self.timeout:
                    del self._by_gpu[gpu]
            return {gpu: (job, team) for gpu, (_pid, job, team, _seen, _visible) in self._by_gpu.items()}

    def annotate(self, readings: Sequence[GpuReading]) -> list[GpuReading]:
        jobs = self.current()
        out = []
        for r in readings:
            d = r.identity
            job = jobs.get(d.uuid) or (None if d.mig else jobs.get(d.index))
            out.append(replace(r, job_id=job[0], team=job[1]) if job else r)
        return out
