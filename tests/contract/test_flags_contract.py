"""SPEC §2 `flags --format json` and §7 underutilization, on the ledger warehouse plus one run.

Usage (ledger.py): i-shared gpus 0-3 j-s sm 0.5 (busy); gpu 4 j-m sm 0.1, 3600 s (underutilized);
i-direct gpu 0 j-d sm 0.2, 3600 s (underutilized). A 30-minute hold at sm 0.05 (gpu 5, hour 01:00, its own file: usage re-ingestion replaces
by hour and host) is below one hour: not flagged.
Runs: `bad-run.csv` (no job_id column -> job id "bad-run") has NaN at step 5 -> one divergent_runs entry.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.contract import ledger
from tests.contract.support import USAGE_COLUMNS, gl, ok, usage_row, write_csv, write_curve

U_KEYS = {"node", "instance_id", "gpu", "team", "job_id", "hours", "sm_active", "waste"}
R_KEYS = {"job_id", "team", "kind", "step"}


def test_flags_json_shape_and_pairs(tmp_path: Path) -> None:
    wh = tmp_path / "flags.duckdb"
    ok(gl("ingest", "cur", ledger.write_cur(tmp_path / "cur.csv"), "--warehouse", wh))
    ok(gl("ingest", "usage", ledger.write_usage(tmp_path / "usage.csv"), "--warehouse", wh))
    short = write_csv(tmp_path / "short.csv", USAGE_COLUMNS, [
        usage_row("2026-10-01 01:00:00", "node-a", "i-shared", "c1", 5, "j-short", "ml", 1800, 0.05)])
    ok(gl("ingest", "usage", short, "--warehouse", wh))
    ok(gl("ingest", "runs", write_curve(tmp_path / "bad-run.csv", [2.0] * 5 + ["nan"] + [2.0] * 20),
          "--warehouse", wh))
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


def test_flags_threshold_option(tmp_path: Path) -> None:
    wh = tmp_path / "t.duckdb"
    ok(gl("ingest", "usage", ledger.write_usage(tmp_path / "usage.csv"), "--warehouse", wh))
    out = ok(gl("flags", "--format", "json", "--sm-threshold", "0.6", "--window", "48h",
                "--until", "2026-10-02T00:00:00Z", "--warehouse", wh))
    jobs = {u["job_id"] for u in json.loads(out.stdout)["underutilized"]}
    assert jobs == {"j-s", "j-m", "j-d"}


def test_flags_default_until_is_the_newest_usage_hour(tmp_path: Path) -> None:
    # Newest usage hour: 2026-10-01 00:00; by default the 24 h window must end with that hour
    # (not start there), so the same two pairs are flagged as with an explicit --until.
    wh = tmp_path / "d.duckdb"
    ok(gl("ingest", "usage", ledger.write_usage(tmp_path / "usage.csv"), "--warehouse", wh))
    doc = json.loads(ok(gl("flags", "--format", "json", "--warehouse", wh)).stdout)
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
