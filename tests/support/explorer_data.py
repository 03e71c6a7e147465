"""The demo month as test data: artifacts written once, then loaded into a warehouse."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpulens.demo.artifacts import Artifacts, write_artifacts
from gpulens.demo.scenario import Scenario, build_scenario
from tests.support import explorer_warehouse


@dataclass(frozen=True)
class DemoData:
    root: Path
    warehouse: Path
    scenario: Scenario
    artifacts: Artifacts


def build_demo_data(root: Path) -> DemoData:
    scenario = build_scenario()
    artifacts = write_artifacts(scenario, root / "artifacts")
    warehouse = root / "gpulens.duckdb"
    explorer_warehouse.fill(warehouse, scenario, artifacts)
    return DemoData(root, warehouse, scenario, artifacts)
