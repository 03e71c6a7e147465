"""Goodput (docs/design.md §8) of a run with two attempts, checkpoints, data waits, eval and a crash,
offline (`runs goodput`) and in money (`ingest runs` + `gpulens goodput`).

The run (tests/fixtures/runs/goodput_hand.jsonl; seconds after 2026-10-01 00:00 UTC, rank 0; rank 1
logs the same steps a second later and a longer checkpoint, which must not count):
  attempt 1  run start 0; init 0-60; step 1 60-160; data_wait 160-200; step 2 200-300;
             checkpoint_save (step 2) 300-360; step 3 360-460; eval 460-520; step 4 520-620; crash
  attempt 2  run start 800; init 800-830; checkpoint_load (step 2) 830-870; step 3 870-970;
             step 4 970-1070; data_wait 1040-1100 (its first 30 s overlap step 4: counted once, as the step);
             step 5 1100-1200; checkpoint_save 1200-1260; `profiler` 1260-1280 (another name: other);
             run end 1300
  wall 0-1300 = 1300 s
    productive       steps 1, 2 of attempt 1 + steps 3, 4, 5 of attempt 2 = 5 x 100 = 500
    wasted_progress  steps 3, 4 of attempt 1, run again by attempt 2      = 2 x 100 = 200
    checkpoint_save  60 + 60 = 120      checkpoint_load 40     data_wait 40 + 30 = 70
    eval             60                 init 60 + 30 = 90
    restart          620 (last record of attempt 1) to 800 (start of attempt 2) = 180
    other            1260-1300 (profiler and the wait for run end) = 40
    sum 1300; goodput 500 / 1300 = 0.384615...
Money (billing period 2026-10): i-llm, p4d.24xlarge (8 GPUs), untagged, one Usage line 00:00-01:00
costing 36.00; the job held GPUs 0-7 for 1300 s each (10,400 GPU-seconds):
  job GPU cost 36.00 x 10400 / (8 x 3600) = 13.00; a bucket costs 13.00 x s / 1300 = s / 100:
    productive 5.00, wasted_progress 2.00, checkpoint_save 1.20, checkpoint_load 0.40, data_wait 0.70,
    eval 0.60, init 0.90, restart 1.80, other 0.40 (sum 13.00; badput 8.00)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.allocate import month_window
from gpulens.attribution.goodput import BUCKETS, Interval, paint, price
from gpulens.attribution.goodput import goodput_window as window_goodput
from gpulens.attribution.warehouse import Warehouse
from tests.contract.support import CUR2_COLUMNS, USAGE_COLUMNS, cur_line, usage_row, write_csv

FIXTURE = Path(__file__).parents[1] / "fixtures" / "runs" / "goodput_hand.jsonl"
SECONDS = {
    "productive": 500.0, "wasted_progress": 200.0, "checkpoint_save": 120.0, "checkpoint_load": 40.0,
    "data_wait": 70.0, "eval": 60.0, "init": 90.0, "restart": 180.0, "other": 40.0,
}  # fmt: skip
COST = {
    "productive": Decimal("5.00"), "wasted_progress": Decimal("2.00"), "checkpoint_save": Decimal("1.20"),
    "checkpoint_load": Decimal("0.40"), "data_wait": Decimal("0.70"), "eval": Decimal("0.60"),
    "init": Decimal("0.90"), "restart": Decimal("1.80"), "other": Decimal("0.40"),
}  # fmt: skip


def test_runs_goodput_gives_the_hand_worked_buckets(capsys: pytest.CaptureFixture[str]) -> None:
    from gpulens.cli import main

    assert main(["runs", "goodput", str(FIXTURE), "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found == {
        "job_id": "llm-7b",
        "team": "nlp",
        "attempts": 2,
        "wall_seconds": 1300.0,
        "goodput": 500 / 1300,
        "seconds": SECONDS,
    }


@pytest.fixture
def priced(gpulens: Callable[..., int], warehouse: Path, tmp_path: Path) -> Path:
    cur = write_csv(tmp_path / "cur.csv", CUR2_COLUMNS, [
        cur_line("L1", "Usage", "i-llm", "36.00", instance_type="p4d.24xlarge"),
    ])  # fmt: skip
    usage = write_csv(tmp_path / "usage.csv", USAGE_COLUMNS, [
        usage_row("2026-10-01 00:00:00", "n-llm", "i-llm", "c", g, "llm-7b", "nlp", 1300, 0.6)
        for g in range(8)
    ])  # fmt: skip
    assert gpulens("ingest", "cur", cur) == 0
    assert gpulens("ingest", "usage", usage) == 0
    assert gpulens("ingest", "runs", FIXTURE) == 0
    return warehouse


def test_ingest_runs_keeps_attempts_phases_and_marks_redone_steps(priced: Path) -> None:
    """Rank 0 and rank 1 each log 7 steps; steps 3 and 4 of attempt 1 are redone on both ranks."""
    with Warehouse(priced).connect(read_only=True) as con:
        steps = con.execute(
            "SELECT rank, count(*), count(*) FILTER (WHERE redone),"
            " count(DISTINCT step) FILTER (WHERE NOT redone) FROM train_metrics GROUP BY rank ORDER BY rank"
        ).fetchall()
        redone = con.execute(
            "SELECT DISTINCT attempt, step FROM train_metrics WHERE redone ORDER BY ALL"
        ).fetchall()
        runs = con.execute(
            "SELECT attempt, epoch(started) - 1790812800, epoch(ended) - 1790812800, world_size"
            " FROM train_runs ORDER BY attempt"
        ).fetchall()
        phases = con.execute(
            "SELECT attempt, phase, count(*) FROM train_phases WHERE rank = 0 GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        extras = con.execute("SELECT DISTINCT grad_norm, lr FROM train_metrics").fetchall()
    assert steps == [(0, 7, 2, 5), (1, 7, 2, 5)]
    assert redone == [(1, 3), (1, 4)]
    assert runs == [(1, 0, None, 8), (2, 800, 1300, 8)]
    assert phases == [
        (1, "checkpoint_save", 1), (1, "data_wait", 1), (1, "eval", 1), (1, "init", 1),
        (2, "checkpoint_load", 1), (2, "checkpoint_save", 1), (2, "data_wait", 1), (2, "init", 1),
        (2, "profiler", 1),
    ]  # fmt: skip
    assert extras == [(1.0, 0.0003)]


def test_goodput_prices_every_bucket_with_the_jobs_gpu_cost(priced: Path) -> None:
    with Warehouse(priced).connect(read_only=True) as con:
        report = window_goodput(con, month_window("2026-10"))
    (job,) = report.jobs
    assert (job.job_id, job.team, job.attempts, job.wall_seconds) == ("llm-7b", "nlp", 2, 1300.0)
    assert dict(job.seconds) == SECONDS
    assert dict(job.cost) == COST
    assert job.badput_cost == Decimal("8.00")
    assert report.team_cost() == {"nlp": COST}
    assert report.gpu_cost == {"nlp": Decimal("13.00")}


def test_goodput_refuses_gpu_time_billed_in_two_currencies(
    priced: Path, gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A second payer billing 520.00 EUR in the same hour: adding it to the 36.00 USD line and calling
    the sum USD (as the first version did) is wrong in either currency; refused in one line."""
    eur = cur_line("E1", "Usage", "i-eur", "520.00", instance_type="p4d.24xlarge", payer="999999999999")
    eur["line_item_currency_code"] = "EUR"
    assert gpulens("ingest", "cur", write_csv(tmp_path / "eur.csv", CUR2_COLUMNS, [eur])) == 0
    capsys.readouterr()
    assert gpulens("goodput", "--period", "2026-10") == 1
    err = capsys.readouterr().err.strip()
    assert "2 currencies (EUR, USD)" in err and err.count("\n") == 0


def test_goodput_command_json(
    priced: Path, gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert gpulens("goodput", "--period", "2026-10", "--format", "json") == 0
    found = json.loads(capsys.readouterr().out)
    money = {b: float(c) for b, c in COST.items()}
    assert found == {
        "period": "2026-10",
        "currency": "USD",
        "jobs": [
            {
                "job_id": "llm-7b",
                "team": "nlp",
                "attempts": 2,
                "wall_seconds": 1300.0,
                "goodput": 500 / 1300,
                "seconds": SECONDS,
                "cost": money,
            }
        ],
        "teams": [{"team": "nlp", "cost": money}],
    }
    assert gpulens("goodput", "--period", "2026-10", "--team", "vision", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["jobs"] == []
    assert gpulens("goodput", "--period", "2026-10", "--format", "csv") == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "period,job_id,team,bucket,seconds,cost,currency" and len(rows) == 1 + len(BUCKETS)
    assert "2026-10,llm-7b,nlp,restart,180.0,1.8000000000,USD" in rows


def _restarted_log(path: Path, with_attempts: bool) -> Path:
    """A 3,000-step run: attempt 1 logs steps 1-2,000 and crashes; attempt 2 resumes from the step-1,500
    checkpoint and logs 1,501-3,000. 3,500 step records; 500 redone; 3,000 steps of the run."""
    lines = []
    for attempt, steps in ((1, range(1, 2001)), (2, range(1501, 3001))):
        for s in steps:
            rec = {
                "kind": "step",
                "job_id": "r3k",
                "rank": 0,
                "step": s,
                "ts": 1790812800 + attempt * 10000 + s,
            }
            rec |= {"step_seconds": 1.0, "loss": 2.0}
            if with_attempts:
                rec["attempt"] = attempt
            lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("with_attempts", [True, False], ids=["attempt-sent", "attempt-inferred"])
def test_a_restart_is_not_counted_twice(
    with_attempts: bool, gpulens: Callable[..., int], warehouse: Path, tmp_path: Path
) -> None:
    """Before: `ingest runs` took 3,500 steps of this 3,000-step run, with nothing to tell them apart."""
    assert gpulens("ingest", "runs", _restarted_log(tmp_path / "r3k.jsonl", with_attempts)) == 0
    with Warehouse(warehouse).connect(read_only=True) as con:
        found = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT redone),"
            " count(DISTINCT step) FILTER (WHERE NOT redone), min(step) FILTER (WHERE redone),"
            " max(step) FILTER (WHERE redone), max(attempt) FROM train_metrics"
        ).fetchone()
        attempts = con.execute("SELECT attempt, ended FROM train_runs ORDER BY 1").fetchall()
    assert found == (3500, 3000, 3000, 1501, 2000, 2)
    assert attempts == [(1, None), (2, None)]


def test_overlaps_count_once_in_the_first_bucket() -> None:
    """Wall 0-100: a step 10-30, a checkpoint save 20-50, an eval 40-60 and a data wait 55-58 inside it.
    Step first, then phases in the table's order (checkpoint_save, checkpoint_load, data_wait, eval):
    productive 20 (10-30), checkpoint_save 20 (30-50), data_wait 3 (55-58), eval 7 (50-55, 58-60),
    other 50 (0-10, 60-100)."""
    seconds = paint(
        [
            Interval(10, 30, "productive"),
            Interval(20, 50, "checkpoint_save"),
            Interval(40, 60, "eval"),
            Interval(55, 58, "data_wait"),
        ],
        (0.0, 100.0),
    )
    assert seconds == dict.fromkeys(BUCKETS, 0.0) | {
        "productive": 20.0, "checkpoint_save": 20.0, "eval": 7.0, "data_wait": 3.0, "other": 50.0,
    }  # fmt: skip


def test_price_parts_add_up_to_the_cost_exactly() -> None:
    """10.00 over three thirds: 3.3333333333 + 3.3333333334 + 3.3333333333 (running sum, 10 digits)."""
    parts = price({"productive": 1.0, "restart": 1.0, "other": 1.0}, Decimal("10.00"))
    assert sum(parts.values()) == Decimal("10.00")
    assert parts["productive"] == Decimal("3.3333333333")
    assert parts["restart"] == Decimal("3.3333333334")


def _phase_seconds(text: str) -> tuple[dict[str, float], float | None, float | None]:
    """Rank 0's phase seconds by phase, its attempt and its step-seconds sum, from the agent's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    phases: dict[str, float] = {}
    attempt = steps = None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("job_id") != "llm-7b" or s.labels.get("rank") != "0":
                continue
            if s.name == "gpulens_train_phase_seconds_total":
                phases[s.labels["phase"]] = s.value
            elif s.name == "gpulens_train_attempt":
                attempt = s.value
            elif s.name == "gpulens_train_step_seconds_sum":
                steps = s.value
    return phases, attempt, steps


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_same_run_as_datagrams_through_a_real_agent(tmp_path: Path) -> None:
    """The fixture's records, every rank, sent as docs/design.md §4 datagrams to `gpulens agent --backend
    sim`. Online, the agent adds each phase up whole (it cannot know yet which seconds a step will
    cover), so rank 0 reads: init 60 + 30 = 90, data_wait 40 + 60 = 100 (offline 70: 30 s of it lie
    under step 4), checkpoint_save 60 + 60 = 120, checkpoint_load 40, eval 60, profiler -> other 20;
    attempt 2; step seconds 7 x 100 = 700 (offline, 200 of them are wasted progress)."""
    import os
    import socket

    from gpulens.wire import read_records
    from tests.support.browser import wait_until
    from tests.support.servers import run_agent

    with run_agent(tmp_path) as agent, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as out:
        for _, record in read_records(FIXTURE):
            record |= {"gpu": record["rank"], "pid": os.getpid()}
            out.sendto(json.dumps(record).encode(), str(agent.socket))
        expected = (
            {"init": 90.0, "data_wait": 100.0, "checkpoint_save": 120.0, "checkpoint_load": 40.0,
             "eval": 60.0, "other": 20.0},
            2.0,
            700.0,
        )  # fmt: skip
        wait_until(lambda: _phase_seconds(agent.metrics()) == expected, timeout=60)


TRAINER_LOG = FIXTURE.parent / "goodput_two_attempts.jsonl"


def test_the_trainers_own_log_gives_its_hand_worked_buckets(capsys: pytest.CaptureFixture[str]) -> None:
    """tests/fixtures/runs/goodput_two_attempts.jsonl, written by the real StepMonitor; its buckets are
    worked out by hand in goodput_two_attempts.md beside it (float noise of epoch-scale times: 1e-6)."""
    from gpulens.cli import main

    assert main(["runs", "goodput", str(TRAINER_LOG), "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["job_id"], found["team"], found["attempts"]) == ("gpt-goodput", "ai-research", 2)
    assert found["wall_seconds"] == pytest.approx(109.0045, abs=1e-6)
    assert found["seconds"] == pytest.approx(
        {"productive": 8.0025, "wasted_progress": 2.0, "checkpoint_save": 10.0, "checkpoint_load": 4.0,
         "data_wait": 3.0, "eval": 2.0, "init": 20.0, "restart": 60.0, "other": 0.002},
        abs=1e-6,
    )  # fmt: skip
    assert found["goodput"] == pytest.approx(8.0025 / 109.0045, abs=1e-6)


def test_a_log_of_every_tenth_step_counts_the_steps_between() -> None:
    """Run start 0; records of steps 10, 20, 30 at t = 10, 20, 30 with step_seconds 1; checkpoint 30-35;
    run end 35. Step 10 is the attempt's first record: it stands for itself (9-10); 20 and 30 stand for
    the ten steps since the one before (10-20, 20-30). productive 21, checkpoint_save 5, other 9 (0-9)."""
    from datetime import datetime

    from gpulens.attribution.goodput import AttemptRow, JobRows, PhaseRow, StepRow, job_goodput

    rows = JobRows(
        "k", None,
        [StepRow(0, 1, s, datetime(1970, 1, 1, 0, 0, s), 1.0, False) for s in (10, 20, 30)],
        [PhaseRow(0, 1, "checkpoint_save", datetime(1970, 1, 1, 0, 0, 30), datetime(1970, 1, 1, 0, 0, 35))],
        [AttemptRow(1, datetime(1970, 1, 1), datetime(1970, 1, 1, 0, 0, 35))],
    )  # fmt: skip
    found = job_goodput(rows)
    assert found.wall_seconds == 35.0
    seconds = {b: s for b, s in found.seconds.items() if s}
    assert seconds == {"productive": 21.0, "checkpoint_save": 5.0, "other": 9.0}
