"""Writes a `Scenario` as the files a real deployment produces, in their real layouts.

<root>/cur/data/BILLING_PERIOD=YYYY-MM/gpulens-demo-00001.snappy.parquet   CUR 2.0 (Data Exports)
<root>/cur/metadata/BILLING_PERIOD=YYYY-MM/gpulens-demo-Manifest.json
<root>/usage/usage-YYYY-MM.parquet                                          docs/design.md §5 hourly rollups
<root>/runs/<job_id>.jsonl                                                  docs/design.md §4 step records
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from gpulens.demo.cur import COLUMNS, cur_table
from gpulens.demo.runs import write_runs
from gpulens.demo.scenario import Scenario
from gpulens.demo.usage import usage_table


@dataclass(frozen=True)
class Artifacts:
    cur_dir: Path  # the BILLING_PERIOD=YYYY-MM folder: one period, one delivery
    usage_file: Path
    run_files: tuple[Path, ...]


def artifact_paths(root: Path, period: str) -> Artifacts:
    """Where `write_artifacts` puts (or put) the files of `period` under `root`."""
    runs = tuple(sorted((root / "runs").glob("*.jsonl")))
    return Artifacts(
        root / "cur" / "data" / f"BILLING_PERIOD={period}", root / "usage" / f"usage-{period}.parquet", runs
    )


def write_artifacts(scenario: Scenario, root: Path) -> Artifacts:
    """Writes every file of the scenario under `root` (overwriting) and returns their paths."""
    paths = artifact_paths(root, scenario.period)
    paths.cur_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        cur_table(scenario), paths.cur_dir / "gpulens-demo-00001.snappy.parquet", compression="snappy"
    )
    _write_manifest(root, scenario.period)
    paths.usage_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(usage_table(scenario), paths.usage_file)
    write_runs(scenario, root / "runs")
    return artifact_paths(root, scenario.period)


def _write_manifest(root: Path, period: str) -> None:
    """The CUR 2.0 manifest AWS writes beside each delivery (columns and data file keys)."""
    folder = root / "cur" / "metadata" / f"BILLING_PERIOD={period}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "reportName": "gpulens-demo",
        "billingPeriod": {"start": f"{period}-01T00:00:00.000Z"},
        "dataFiles": [f"data/BILLING_PERIOD={period}/gpulens-demo-00001.snappy.parquet"],
        "columns": [{"name": name, "type": str(typ)} for name, typ in COLUMNS],
        "contentType": "parquet",
    }
    (folder / "gpulens-demo-Manifest.json").write_text(json.dumps(manifest, indent=2))
