"""docs/design.md §2 `flags --format json` and §7 underutilization, on the ledger warehouse plus one run.

Usage (ledger.py): i-shared gpus 0-3 j-s sm 0.5 (busy); gpu 4 j-m sm 0.1, 3600 s (underutilized);
i-direct gpu 0 j-d sm 0.2, 3600 s (underutilized). A 30-minute hold at sm 0.05 (gpu 5, hour 01:00, its own
file: usage re-ingestion replaces
by hour and host) is below one hour: not flagged.
Runs: `bad-run.csv` (no job_id column -> job id "bad-run") has NaN at step 5 -> one divergent_runs entry.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.contract.support import USAGE_COLUMNS, gl, ok, usage_row, write_csv, write_curve

U_KEYS = {"node", "instance_id", "gpu", "team", "job_id", "hours", "sm_active", "waste"}
R_KEYS = {"job_id", "team", "kind", "step"}


def test_flags_json_shape_and_pairs(tmp_path: Path, warehouse: Path) -> None:
    wh = warehouse
    short = write_csv(
        tmp_path / "short.csv",
        USAGE_COLUMNS,
        [usage_row("2026-10-01 01:00:00", "node-a", "i-shared", "c1", 5, "j-short", "ml", 1800, 0.05)],
    )
    ok(gl("ingest", "usage", short, "--warehouse", wh))
    ok(
        gl(
            "ingest",
            "runs",
            write_curve(tmp_path / "bad-run.csv", [2.0] * 5 + ["nan"] + [2.0] * 20),
            "--warehouse",
            wh,
        )
    )
    out = ok(gl("flags", "--format", "json", "--until", "2026-10-02T00:00:00Z", "--warehouse", wh))
    doc = json.loads(out.stdout)
    assert set(doc) == {"underutilized", "divergent_runs"}
    for u in doc["underutilized"]:
        assert set(u) == U_KEYS, u
        for key in ("hours", "sm_active", "waste"):
            assert isinstance(u[key], (int, float)), (key, u)
    pairs = {(u["instance_id"], u["gpu"], u["job_id"]) for u in doc["underutilized"]}
    assert {(i, str(g), j) for i, g, j in pairs} == {("i-shared", "4", "j-m"), ("i-direct", "0", "j-d")}
    by_job = {u["job_id"]: u for u in doc["underutilized"]}
    assert by_job["j-m"]["team"] == "ml" and by_job["j-m"]["hours"] == 1
    assert abs(by_job["j-m"]["sm_active"] - 0.1) < 1e-9
    for r in doc["divergent_runs"]:
        assert set(r) == R_KEYS, r
    assert [(r["job_id"], r["kind"], r["step"]) for r in doc["divergent_runs"]] == [("bad-run", "nan", 5)]


def test_flags_threshold_option(warehouse: Path) -> None:
    out = ok(
        gl(
            "flags",
            "--format",
            "json",
            "--sm-threshold",
            "0.6",
            "--window",
            "48h",
            "--until",
            "2026-10-02T00:00:00Z",
            "--warehouse",
            warehouse,
        )
    )
    jobs = {u["job_id"] for u in json.loads(out.stdout)["underutilized"]}
    assert jobs == {"j-s", "j-m", "j-d"}


def test_flags_default_until_is_the_newest_usage_hour(warehouse: Path) -> None:
    # Newest usage hour: 2026-10-01 00:00; by default the 24 h window must end with that hour
    # (not start there), so the same two pairs are flagged as with an explicit --until.
    doc = json.loads(ok(gl("flags", "--format", "json", "--warehouse", warehouse)).stdout)
    assert {u["job_id"] for u in doc["underutilized"]} == {"j-m", "j-d"}


def test_ingest_runs_csv_with_job_and_team_columns(tmp_path: Path) -> None:
    wh = tmp_path / "r.duckdb"
    path = tmp_path / "ignored-stem.csv"
    rows = ["step,loss,job_id,team,ts"]
    rows += [f"{s},{'nan' if s == 7 else 2.0},run-x, Vision ,{1795600000 + s}" for s in range(30)]
    path.write_text("\n".join(rows) + "\n")
    ok(gl("ingest", "runs", path, "--warehouse", wh))
    doc = json.loads(ok(gl("flags", "--format", "json", "--warehouse", wh)).stdout)
    assert [(r["job_id"], r["kind"], r["step"]) for r in doc["divergent_runs"]] == [("run-x", "nan", 7)]
    assert doc["divergent_runs"][0]["team"] == "vision"


def test_trainer_jsonl_nan_reaches_flags_like_runs_check(tmp_path: Path) -> None:
    # The trainer's own JSONL (StepMonitor log_path) for a run whose loss is NaN at step 6: JSON has no
    # NaN, so the trainer writes `"loss": null` (docs/design.md §4). `runs check` and `flags` (after `ingest
    # runs`)
    # must both report nan at step 6 (§7: the same definitions everywhere).
    from gpulens.trainer import StepMonitor

    log = tmp_path / "trainer.jsonl"
    monitor = StepMonitor("nan-job", "t", socket=tmp_path / "none.sock", log_path=log, gpu=0, env={})
    for loss in [2.0] * 6 + [float("nan")] + [2.0] * 13:
        with monitor.step(tokens=8) as step:
            step.record(loss=loss)
    monitor.close()
    # The same log without the trainer's own `anomaly` records (a rank whose health the trainer does not
    # judge, or another writer of the docs/design.md §4 format): the `null` loss alone must still be a nan.
    log.write_text(
        "".join(line + "\n" for line in log.read_text().splitlines() if '"kind":"anomaly"' not in line)
    )
    check = json.loads(ok(gl("runs", "check", log, "--format", "json")).stdout)["anomalies"]
    assert [(a["kind"], a["step"]) for a in check] == [("nan", 6)], check
    wh = tmp_path / "w.duckdb"
    ok(gl("ingest", "runs", log, "--warehouse", wh))
    doc = json.loads(ok(gl("flags", "--format", "json", "--warehouse", wh)).stdout)
    assert [(r["job_id"], r["kind"], r["step"]) for r in doc["divergent_runs"]] == [("nan-job", "nan", 6)]
