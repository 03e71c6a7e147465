"""A trainer stand-in for end-to-end tests: raw docs/design.md §4 datagrams to the agent's Unix socket."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

JOB_ID = "e2e-llm"
TEAM = "e2e-team"


def send(sock_path: Path, record: dict[str, object]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(json.dumps(record).encode(), str(sock_path))


def step(rank: int, n: int) -> dict[str, object]:
    """Step `n` of `rank` (on GPU `rank`): 0.2 s steps of 4096 tokens, loss falling slowly."""
    return {
        "v": 1,
        "kind": "step",
        "job_id": JOB_ID,
        "team": TEAM,
        "rank": rank,
        "local_rank": rank,
        "gpu": rank,
        "pid": os.getpid(),
        "step": n,
        "ts": time.time(),
        "step_seconds": 0.2 + 0.01 * rank,
        "tokens": 4096,
        "samples": 8,
        "loss": 3.0 - 0.001 * n,
        "grad_norm": 1.0,
        "lr": 3e-4,
        "mfu": 0.42,
    }


def anomaly(rank: int, n: int, kind: str) -> dict[str, object]:
    return {
        "v": 1,
        "kind": "anomaly",
        "job_id": JOB_ID,
        "team": TEAM,
        "rank": rank,
        "gpu": rank,
        "step": n,
        "anomaly": kind,
        "loss": None if kind == "nan" else 4.7,
    }


def run_start(rank: int, attempt: int = 1) -> dict[str, object]:
    return {
        "v": 1,
        "kind": "run",
        "job_id": JOB_ID,
        "team": TEAM,
        "rank": rank,
        "gpu": rank,
        "pid": os.getpid(),
        "event": "start",
        "attempt": attempt,
        "ts": time.time(),
        "world_size": 2,
    }


def phase(rank: int, name: str, start: float, end: float, attempt: int = 1) -> dict[str, object]:
    return {
        "v": 1,
        "kind": "phase",
        "job_id": JOB_ID,
        "team": TEAM,
        "rank": rank,
        "gpu": rank,
        "pid": os.getpid(),
        "attempt": attempt,
        "phase": name,
        "start": start,
        "end": end,
    }


class Trainer(threading.Thread):
    """Two ranks (attempt 1) stepping every 0.1 s after a 20 ms data wait, until stopped; `anomaly()`
    injects one loss anomaly."""

    def __init__(self, sock_path: Path, ranks: int = 2) -> None:
        super().__init__(daemon=True)
        self.sock_path, self.ranks, self.steps = sock_path, ranks, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        for rank in range(self.ranks):
            send(self.sock_path, run_start(rank))
        while not self._stop_event.wait(0.1):
            self.steps += 1
            now = time.time()
            for rank in range(self.ranks):
                send(self.sock_path, phase(rank, "data_wait", now - 0.02, now))  # the loader's wait
                send(self.sock_path, step(rank, self.steps))

    def anomaly(self, kind: str) -> None:
        for rank in range(self.ranks):
            send(self.sock_path, anomaly(rank, self.steps, kind))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
