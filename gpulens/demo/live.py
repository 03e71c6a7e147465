"""The live half of the demo: child processes (agent, reference trainer, Prometheus when installed)
that are started together and always stopped together.

Children get SIGTERM if the demo itself dies (Linux `PR_SET_PDEATHSIG`), so even `kill -9` of the
demo leaves nothing behind; a normal stop sends SIGTERM, waits, then SIGKILLs stragglers.
"""

from __future__ import annotations

import ctypes
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: a normal stop still stops everything


@dataclass
class Processes:
    """Every child the demo started, with its log file, in start order."""

    logs: Path
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.children.append((name, proc))
        return proc

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM every child still running (newest first), wait, SIGKILL what is left."""
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop on SIGTERM; killing it", name)
                proc.kill()
                proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    """True once `url` answers 2xx; False if `proc` exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if 200 <= resp.status < 300:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def gpulens_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpulens", *args]


def agent_argv(port: int, sock: Path, node: str, instance_id: str) -> list[str]:
    return gpulens_argv(
        "agent",
        "--backend",
        "sim",
        "--port",
        str(port),
        "--socket",
        str(sock),
        "--node",
        node,
        "--sim-model",
        "h100-sxm",
        "--sim-scenario",
        "mixed",
        "--instance-id",
        instance_id,
        "--instance-type",
        "p5.48xlarge",
        "--cluster",
        "train-east",
    )


TRAINER_PACE = 2.0  # steps a second: the live panel moves, and the trainer leaves the laptop's core idle


@dataclass(frozen=True)
class LiveTrainer:
    """The live reference run, which fails once and is resumed: attempt 1 saves a checkpoint every
    `checkpoint_every` steps and crashes at step `crash_at` (the steps since its last checkpoint are lost);
    attempt 2 resumes from that checkpoint (docs/demo.md)."""

    sock: Path
    log_file: Path
    checkpoints: Path
    steps: int
    checkpoint_every: int = 50
    crash_at: int | None = 170  # ~85 s in at TRAINER_PACE: 20 steps after the step-150 checkpoint
    pace: float = TRAINER_PACE

    def argv(self, attempt: int) -> list[str]:
        """Attempt 1 as planned to crash; a later one with `--resume` and no crash. The attempt is passed
        explicitly: the demo is the launcher that counts the restarts."""
        argv = [
            *trainer_argv(self.sock, self.log_file, self.steps, self.pace),
            "--checkpoint-dir",
            str(self.checkpoints),
            "--checkpoint-every",
            str(self.checkpoint_every),
            "--attempt",
            str(attempt),
        ]
        if attempt > 1:
            return [*argv, "--resume"]
        return argv if self.crash_at is None else [*argv, "--crash-at", str(self.crash_at)]


def trainer_argv(sock: Path, log_file: Path, steps: int, pace: float = TRAINER_PACE) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gpulens.trainer.reference",
        "--job-id",
        "live-demo-run",
        "--team",
        "ai-research",
        "--steps",
        str(steps),
        "--socket",
        str(sock),
        "--log",
        str(log_file),
        "--threads",
        "1",
        "--pace",
        str(pace),
    ]


@dataclass
class ResumingLauncher:
    """Runs a `LiveTrainer` as a scheduler with one retry would: `start` launches attempt 1; `poll`, called
    now and then by whoever runs the demo, starts the next attempt (with `--resume`) once the current one
    has exited non-zero, up to `max_attempts`. Each attempt is a child of `procs` (log `trainer.log`, then
    `trainer-attempt-2.log`), so stopping `procs` stops whichever is running. Call `poll` from the thread
    that lives as long as the demo (the main one): a child gets its parent-death signal when the thread
    that started it ends."""

    procs: Processes
    trainer: LiveTrainer
    max_attempts: int = 2
    attempt: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        self.attempt += 1
        name = "trainer" if self.attempt == 1 else f"trainer-attempt-{self.attempt}"
        self.proc = self.procs.start(name, self.trainer.argv(self.attempt))
        return self.proc

    def poll(self) -> bool:
        """True when the current attempt had failed and the next one was started now."""
        if self.proc is None or self.attempt >= self.max_attempts:
            return False
        code = self.proc.poll()
        if code is None or code == 0:
            return False
        log.debug(  # the demo tells the user itself
            "live trainer attempt %d exited %d; resuming as attempt %d", self.attempt, code, self.attempt + 1
        )
        self.start()
        return True

    def done(self) -> bool:
        """The last attempt has ended (cleanly, or failed with no attempt left)."""
        if self.proc is None or self.proc.poll() is None:
            return False
        return self.proc.returncode == 0 or self.attempt >= self.max_attempts


def prometheus_argv(home: Path, port: int, agent_port: int) -> list[str] | None:
    """A Prometheus scraping the agent every 2 s, if one is installed (the live panel uses it)."""
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    home.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "2s"},
        "scrape_configs": [
            {"job_name": "gpulens", "static_configs": [{"targets": [f"127.0.0.1:{agent_port}"]}]}
        ],
    }
    (home / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    return [
        binary,
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1d",
    ]
