"""Render every dashboard to JSON: `gpulens dashboards build --out DIR` and the committed copies here."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpulens.dashboards.grafana import fleet, node, team, training
from gpulens.dashboards.grafana.model import Dashboard
from gpulens.errors import GpulensError

HERE = Path(__file__).parent
# File names are stable: the Helm chart ships these files to Grafana's dashboard sidecar.
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "gpulens-fleet-overview.json": fleet.dashboard,
    "gpulens-node-gpu.json": node.dashboard,
    "gpulens-training-job.json": training.dashboard,
    "gpulens-team-usage.json": team.dashboard,
}


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON model."""
    return {name: make().to_json() for name, make in DASHBOARDS.items()}


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def write(out_dir: Path) -> list[Path]:
    """Write every dashboard into `out_dir` (created if missing); returns the paths written."""
    written = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, model in dashboards().items():
            path = out_dir / name
            path.write_text(render(model))
            written.append(path)
    except OSError as exc:
        raise GpulensError(f"cannot write dashboards: {exc.strerror}", path=out_dir) from exc
    return written
