"""The weekly report's "What lost training time cost" and "spend after onset" that stops at recovery.

Ledger, week 2026-W40 (Mon Sep 28 - Mon Oct 5), USD, amortized; hours on Thu 2026-10-01:
  i-llm, p4d.24xlarge (8 GPUs), untagged: one Usage line 00:00-01:00 costing 36.00.
    llm-7b (nlp; tests/fixtures/runs/goodput_hand.jsonl, ledger in tests/attribution/test_goodput.py)
      held GPUs 0-7 for 1300 s each: 36.00 x 10400 / 28800 = 13.00, cut by its buckets (s / 100):
      productive 5.00; wasted_progress 2.00, restart 1.80, checkpoint_save 1.20, init 0.90,
      data_wait 0.70, eval 0.60, checkpoint_load 0.40, other 0.40 (badput 8.00)
    nlp-notebook (nlp, no run log) held GPU 0 for 1800 s: 36.00 x 1800 / 28800 = 2.25
    nlp GPU spend 15.25 = 5.00 + 8.00 + 2.25
  i-vis, p4d.24xlarge, untagged: Usage lines 10:00-16:00, 8.00 an hour; vis-nan (vision) held GPU 0
    all six hours: 8.00 x 3600 / 28800 = 1.00 an hour. Its loss is NaN at step 20 (12:00) and finite
    again from step 21 (12:06): the episode is over at 12:06, so the spend after onset is the 12:00
    hour alone, 1.00. Before: from 12:00 to the end of the week, 4 hours = 4.00.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.flags import recovery
from gpulens.attribution.report.build import build_weekly_report
from gpulens.attribution.report.model import IsoWeek, WeeklyReport
from gpulens.attribution.report.tables import lost_training
from gpulens.attribution.warehouse import Warehouse
from gpulens.cli import main
from tests.contract.support import CUR2_COLUMNS, USAGE_COLUMNS, cur_line, usage_row, write_csv

RUN = Path(__file__).parents[1] / "fixtures" / "runs" / "goodput_hand.jsonl"
P4D = "p4d.24xlarge"


def _vis_nan(path: Path) -> Path:
    start = (datetime(2026, 10, 1, 10) - datetime(1970, 1, 1)).total_seconds()  # UTC, whatever the local zone
    lines = []
    for step in range(60):
        loss = None if step == 20 else 2.0
        lines.append(
            json.dumps(
                {
                    "kind": "step",
                    "job_id": "vis-nan",
                    "team": "vision",
                    "rank": 0,
                    "step": step,
                    "ts": start + 360 * step,
                    "step_seconds": 300.0,
                    "loss": loss,
                }
            )  # fmt: skip
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> WeeklyReport:
    tmp = tmp_path_factory.mktemp("lost")
    warehouse = tmp / "w.duckdb"
    vis_hours = [f"2026-10-01T{h:02d}:00:00Z" for h in range(10, 17)]
    cur = write_csv(tmp / "cur.csv", CUR2_COLUMNS, [
        cur_line("L1", "Usage", "i-llm", "36.00", instance_type=P4D),
        *(cur_line(f"V{i}", "Usage", "i-vis", "8.00", start=a, end=b, instance_type=P4D)
          for i, (a, b) in enumerate(zip(vis_hours, vis_hours[1:], strict=False))),
    ])  # fmt: skip
    usage = write_csv(tmp / "usage.csv", USAGE_COLUMNS, [
        *(usage_row("2026-10-01 00:00:00", "n-llm", "i-llm", "c", g, "llm-7b", "nlp", 1300, 0.6)
          for g in range(8)),
        usage_row("2026-10-01 00:00:00", "n-llm", "i-llm", "c", 0, "nlp-notebook", "nlp", 1800, 0.1),
        *(usage_row(f"2026-10-01 {h:02d}:00:00", "n-vis", "i-vis", "c", 0, "vis-nan", "vision", 3600, 0.9)
          for h in range(10, 16)),
    ])  # fmt: skip
    for argv in (
        ["ingest", "cur", cur],
        ["ingest", "usage", usage],
        ["ingest", "runs", RUN, _vis_nan(tmp / "v.jsonl")],
    ):
        assert main([*map(str, argv), "--warehouse", str(warehouse)]) == 0
    with Warehouse(warehouse).connect(read_only=True) as con:
        return build_weekly_report(con, IsoWeek(2026, 40))


def test_spend_after_onset_stops_when_the_loss_recovers(report: WeeklyReport) -> None:
    (nan,) = [d for d in report.divergent if d.run.job_id == "vis-nan"]
    assert (nan.run.kind, nan.run.step, nan.onset) == ("nan", 20, datetime(2026, 10, 1, 12, 0))
    assert (nan.ended, nan.ended_by) == (datetime(2026, 10, 1, 12, 6), "recovered")
    assert nan.spend_after_onset == Decimal("1.00")


def test_lost_training_table_reconciles_to_the_teams_gpu_spend(report: WeeklyReport) -> None:
    table = lost_training(report)
    rows = [(row[1].value, row[3].value) for row in table.rows if row[0].value == "nlp"]
    assert rows == [
        ("wasted_progress", Decimal("2.00")),
        ("checkpoint_save", Decimal("1.20")),
        ("checkpoint_load", Decimal("0.40")),
        ("data_wait", Decimal("0.70")),
        ("eval", Decimal("0.60")),
        ("init", Decimal("0.90")),
        ("restart", Decimal("1.80")),
        ("other", Decimal("0.40")),
        ("productive", Decimal("5.00")),
        ("GPU time of jobs without a run log", Decimal("2.25")),
        ("GPU spend", Decimal("15.25")),
    ]
    parts = [r[3].value for r in table.rows if r[0].value == "nlp" and r[1].value != "GPU spend"]
    assert sum(parts, Decimal(0)) == Decimal("15.25")
    vision = {r[1].value: r[3].value for r in table.rows if r[0].value == "vision"}
    assert vision["GPU spend"] == Decimal("6.00") and vision["GPU time of jobs without a run log"] == Decimal(
        0
    )


@pytest.mark.parametrize(
    ("kind", "losses", "onset", "back"),
    [
        ("spike", [2.0] * 10 + [4.0, 4.0, 4.0, 3.0, 2.4, 2.0], 12, 14),  # baseline 2.0: back below 2.5 at 14
        ("divergence", [3.0, 2.0] + [2.5] * 10 + [2.19], 11, 12),  # minimum 2.0: back within 10 % at 12
        ("nan", [2.0, float("nan"), float("nan"), 2.0], 1, 3),
        ("nan", [2.0, float("nan"), float("nan")], 1, None),  # never came back: the run's end counts
    ],
)
def test_recovery(kind: str, losses: list[float], onset: int, back: int | None) -> None:
    points = [(step, datetime(2026, 10, 1, 0, step), loss) for step, loss in enumerate(losses)]
    assert recovery(points, kind, onset) == (None if back is None else datetime(2026, 10, 1, 0, back))
