"""The demo's live trainer run crashes once and is resumed: the real reference trainer (`gpulens train`,
tiny and fast here), launched and watched by the same code the demo runs (`live.ResumingLauncher`,
`orchestrator.watch_live`), ends up as two attempts in its log and in the warehouse, with wasted
progress and a restart gap in its goodput.

Worked example (steps=12, checkpoint every 4, crash at 10): attempt 1 runs steps 0..9, saving after 4
and 8 steps, and fails as step 10 begins; attempt 2 loads `step-00000008.pt` (a `checkpoint_load` at
step 8) and runs steps 8..11, so steps 8 and 9 of attempt 1 are redone (wasted progress), and the time
from attempt 1's last record to attempt 2's start is restart time.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpulens.attribution.goodput import job_goodput, load_job_rows
from gpulens.attribution.warehouse import Warehouse
from gpulens.demo import live
from gpulens.demo.build import DemoBuild
from gpulens.demo.orchestrator import LIVE_LOG, Live, watch_live
from gpulens.errors import GpulensError

DEADLINE_S = 240  # two starts of torch on a loaded CI core; the conditions are polled, never timed


def _trainer(tmp_path: Path, crash_at: int | None = 10) -> live.LiveTrainer:
    home = tmp_path / "live"
    # No agent listens on the socket: the trainer drops its datagrams and still writes its log.
    return live.LiveTrainer(
        tmp_path / "agent.sock",
        home / LIVE_LOG,
        home / "checkpoints",
        steps=12,
        checkpoint_every=4,
        crash_at=crash_at,
        pace=50.0,
    )


def _records(log_file: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]


def _poll(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"never happened: {what}")


def _advance(launcher: live.ResumingLauncher) -> bool:
    """What the demo's watcher does each tick: restart a crashed attempt; then, is the run over?"""
    launcher.poll()
    return launcher.done()


@pytest.mark.timeout(DEADLINE_S + 60)
def test_launcher_resumes_the_crashed_attempt_once(tmp_path: Path) -> None:
    procs = live.Processes(tmp_path / "logs")
    trainer = _trainer(tmp_path)
    launcher = live.ResumingLauncher(procs, trainer)
    try:
        launcher.start()
        _poll(lambda: _advance(launcher), "attempt 2 ran to its end")
    finally:
        procs.stop()
    assert (launcher.attempt, launcher.proc and launcher.proc.returncode) == (2, 0)
    assert [name for name, _ in procs.children] == ["trainer", "trainer-attempt-2"]
    assert procs.children[0][1].returncode == 1  # the injected crash
    assert "crashed at step 10" in (procs.logs / "trainer.log").read_text()
    assert launcher.poll() is False  # a finished run is not started again

    records = _records(trainer.log_file)
    runs = [(r["attempt"], r["event"]) for r in records if r["kind"] == "run"]
    assert runs == [(1, "start"), (2, "start"), (2, "end")]  # attempt 1 ended without a clean end
    steps = {a: [r["step"] for r in records if r["kind"] == "step" and r["attempt"] == a] for a in (1, 2)}
    assert steps == {1: list(range(10)), 2: [8, 9, 10, 11]}
    loads = [(r["attempt"], r["step"]) for r in records if r.get("phase") == "checkpoint_load"]
    assert loads == [(2, 8)]


@pytest.mark.timeout(DEADLINE_S + 60)
def test_a_clean_first_attempt_is_not_restarted(tmp_path: Path) -> None:
    procs = live.Processes(tmp_path / "logs")
    launcher = live.ResumingLauncher(procs, _trainer(tmp_path, crash_at=None))
    try:
        launcher.start()
        _poll(lambda: _advance(launcher), "attempt 1 ended")
    finally:
        procs.stop()
    assert launcher.attempt == 1 and [name for name, _ in procs.children] == ["trainer"]
    assert launcher.proc is not None and launcher.proc.returncode == 0


def _ingested(warehouse: Path) -> list[tuple[int, bool]] | None:
    """(attempt, ended cleanly) of the live run as the warehouse holds it; None while it is busy."""
    try:
        with Warehouse(warehouse).connect(read_only=True) as con:
            rows = con.execute(
                """SELECT attempt, ended IS NOT NULL FROM train_runs
                   WHERE job_id = 'live-demo-run' ORDER BY attempt"""
            ).fetchall()
    except GpulensError:  # the watcher is ingesting right now
        return None
    return [(int(a), bool(e)) for a, e in rows]


@pytest.mark.timeout(DEADLINE_S + 60)
def test_the_demo_watcher_restarts_the_trainer_and_ingests_its_badput(
    demo_data: DemoBuild, tmp_path: Path
) -> None:
    warehouse = tmp_path / "w.duckdb"
    shutil.copy(demo_data.warehouse, warehouse)
    built = dataclasses.replace(demo_data, warehouse=warehouse)
    procs = live.Processes(tmp_path / "logs")
    launcher = live.ResumingLauncher(procs, _trainer(tmp_path))
    stop = threading.Event()
    said: list[str] = []
    watcher = threading.Thread(
        target=watch_live,
        args=(Live(launcher, None), built, stop, said.append),
        kwargs={"ingest_every": 0.5},
        daemon=True,
    )
    try:
        launcher.start()
        watcher.start()
        _poll(lambda: _ingested(warehouse) == [(1, False), (2, True)], "both attempts ingested")
    finally:
        stop.set()
        watcher.join(timeout=60)
        procs.stop()
    assert not watcher.is_alive()
    assert any("restarted with --resume as attempt 2" in line for line in said), said

    with Warehouse(warehouse).connect(read_only=True) as con:
        (rows,) = load_job_rows(con, ["live-demo-run"])
        redone = con.execute(
            "SELECT attempt, step FROM train_metrics WHERE job_id = 'live-demo-run' AND redone ORDER BY step"
        ).fetchall()
    assert redone == [(1, 8), (1, 9)]  # attempt 1's steps after its last checkpoint
    found = job_goodput(rows)
    assert found.attempts == 2
    assert found.seconds["wasted_progress"] > 0 and found.seconds["restart"] > 0
    assert found.seconds["checkpoint_load"] > 0
