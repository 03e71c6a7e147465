"""`gpulens demo` as a user runs it: a subprocess that serves within a time limit and stops cleanly.

The demo's workdir is a copy of the session's build, so this also checks that a second run reuses
what the first built (it must serve in seconds, not rebuild the month).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from gpulens.demo.build import DemoBuild
from tests.support.servers import free_port, gpulens_exe, http_get, wait_http

SERVE_WITHIN_S = 60  # reusing a built month: imports, agent, explorer


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_serves_and_stops_cleanly(demo_data: DemoBuild, tmp_path: Path, sig: signal.Signals) -> None:
    workdir = tmp_path / "demo"
    shutil.copytree(
        demo_data.workdir, workdir, ignore=shutil.ignore_patterns("logs", "run", "prometheus", "live")
    )
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        # Its own process group, as a shell gives a foreground job: Ctrl-C signals the whole group.
        proc = subprocess.Popen(
            [gpulens_exe(), "demo", "--port", str(port), "--workdir", str(workdir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        started = time.monotonic()
        wait_http(f"http://127.0.0.1:{port}/cost", timeout=SERVE_WITHIN_S, proc=proc)
        assert time.monotonic() - started < SERVE_WITHIN_S
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "agent" in names and "gpulens.trainer.reference" in names, names
        # attempt 1 of the crash-and-resume run (tests/demo/test_live_resume.py runs one through)
        assert f"--checkpoint-dir {workdir / 'live' / 'checkpoints'}" in names and "--crash-at" in names
        assert "gpulens" in http_get(f"http://127.0.0.1:{port}/cost")
        text = log.read_text()
        assert "reusing the demo month" in text
        assert f"http://127.0.0.1:{port}" in text and "/utilization" in text and "/training" in text
        assert "live-demo-run (live) crashes at step" in text
        if sig == signal.SIGINT:
            assert_trainer_reports_to_agent(log)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            proc.send_signal(sig)  # what `kill`, systemd or a CI runner does
        code = proc.wait(timeout=30)
        assert code == 0, f"exit {code}\n{log.read_text()}"
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"left running: {[c.cmdline() for c in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def assert_trainer_reports_to_agent(log: Path) -> None:
    """The live reference run (torch on the CPU) reaches the agent: its steps show on /metrics."""
    match = re.search(r"agent .* on (http://127\.0\.0\.1:\d+)/metrics", log.read_text())
    assert match, log.read_text()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if 'job_id="live-demo-run"' in http_get(
            f"{match.group(1)}/metrics"
        ) and "gpulens_train_steps_total" in http_get(f"{match.group(1)}/metrics"):
            return
        time.sleep(1)
    pytest.fail("the live trainer's steps never reached the agent's /metrics")


def test_demo_refuses_a_busy_port(demo_data: DemoBuild, tmp_path: Path) -> None:
    """One clear line and exit 1 when the explorer's port is taken; nothing left running."""
    workdir = tmp_path / "demo"
    shutil.copytree(
        demo_data.workdir, workdir, ignore=shutil.ignore_patterns("logs", "run", "prometheus", "live")
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [gpulens_exe(), "demo", "--no-live", "--port", str(port), "--workdir", str(workdir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
