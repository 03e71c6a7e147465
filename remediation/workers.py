"""A small pool of daemon worker threads for remediation actions.

Not `concurrent.futures.ThreadPoolExecutor`: its threads are joined at interpreter exit, so a drain
blocked by a PodDisruptionBudget would hold a stopping receiver for the drain's whole timeout.
Actions bound their own time (each attempt has `timeout_seconds`); the pool bounds how many run at once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

Task = Callable[[], None]


class WorkerPool:
    """`size` daemon threads running submitted tasks in order of submission; started on first use."""

    def __init__(self, size: int, name: str = "gpulens-action") -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one thread")
        self.size = size
        self.name = name
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, task: Task) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            if not self._threads:
                self._start()
        self._tasks.put(task)

    def queued(self) -> int:
        """Tasks waiting for a thread (approximate: for metrics and benchmarks)."""
        return self._tasks.qsize()

    def close(self) -> None:
        """No new tasks, queued ones dropped; each thread stops after its current task. Does not wait."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._tasks.put(None)

    def _start(self) -> None:
        for i in range(self.size):
            thread = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            if self._closed:  # stopping: what has not started stays undone (its `pending` record says so)
                continue
            try:
                task()
            except Exception:
                logger.exception("an action task crashed")
