"""The demo's live trainer run reaches /training: its JSONL log is ingested into the warehouse while
the demo runs (each ingest replaces the job's rows)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from gpulens.attribution.warehouse import Warehouse
from gpulens.demo.build import DemoBuild
from gpulens.demo.orchestrator import ingest_live_run


def _steps(path: Path, count: int) -> None:
    records = [
        {
            "v": 1,
            "kind": "step",
            "job_id": "live-demo-run",
            "team": "demo",
            "rank": 0,
            "step": s,
            "ts": 1_800_000_000.0 + s,
            "step_seconds": 0.5,
            "loss": 3.0 - s / 100,
            "grad_norm": 1.0,
            "lr": 3e-4,
        }
        for s in range(1, count + 1)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_live_run_log_is_ingested_and_replaced(demo_data: DemoBuild, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    shutil.copy(demo_data.warehouse, warehouse)
    built = dataclasses.replace(demo_data, warehouse=warehouse)
    log_file = tmp_path / "live-demo-run.jsonl"
    assert ingest_live_run(built, log_file) is False  # the trainer has not written yet
    _steps(log_file, 5)
    assert ingest_live_run(built, log_file) is True
    _steps(log_file, 12)  # the trainer went on: the next ingest replaces, never duplicates
    assert ingest_live_run(built, log_file) is True
    with Warehouse(warehouse).connect(read_only=True) as con:
        rows = con.execute(
            "SELECT count(*), max(step), count(grad_norm) FROM train_metrics WHERE job_id = 'live-demo-run'"
        ).fetchone()
    assert rows == (12, 12, 12)


def test_live_ingest_waits_while_the_warehouse_is_open_for_reading(
    demo_data: DemoBuild, tmp_path: Path
) -> None:
    warehouse = tmp_path / "w.duckdb"
    shutil.copy(demo_data.warehouse, warehouse)
    built = dataclasses.replace(demo_data, warehouse=warehouse)
    log_file = tmp_path / "live-demo-run.jsonl"
    _steps(log_file, 3)
    with Warehouse(warehouse).connect(read_only=True):  # as the explorer holds it while serving
        assert ingest_live_run(built, log_file) is False
    assert ingest_live_run(built, log_file) is True
