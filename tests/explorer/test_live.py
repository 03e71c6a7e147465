"""The live panel of /utilization: SM activity read from a real Prometheus scraping a real sim agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpulens.dashboards.explorer import ids
from gpulens.dashboards.explorer.app import route
from gpulens.dashboards.explorer.pages.utilization import live_table
from gpulens.dashboards.explorer.queries import Queries
from gpulens.demo.build import DemoBuild
from tests.support.servers import run_agent, run_prometheus


@pytest.mark.timeout(120)
def test_live_sm_activity_from_prometheus(tmp_path: Path, demo_data: DemoBuild) -> None:
    with (
        run_agent(tmp_path, node="live-node", gpus=4) as agent,
        run_prometheus(tmp_path, [f"127.0.0.1:{agent.port}"]) as prom,
    ):
        prom.wait_for("gpulens_gpu_utilization_ratio")
        queries = Queries(demo_data.warehouse, prometheus=prom.url)
        assert ids.UTIL_LIVE in _dump(route(queries, "/utilization", "")[0])
        live = queries.live_sm()
        assert sorted(live.gpu.astype(int)) == [0, 1, 2, 3]
        assert set(live.node) == {"live-node"} and live.value.between(0, 1).all()
        assert "live-node" in _dump(live_table(queries))
    # Prometheus gone: the panel says so instead of failing the page.
    assert "No live data" in _dump(live_table(queries))


def test_no_live_panel_without_prometheus(demo_data: DemoBuild) -> None:
    queries = Queries(demo_data.warehouse)
    assert queries.live_sm().empty
    page = _dump(route(queries, "/utilization", "")[0])
    assert ids.UTIL_TABLE in page and ids.UTIL_LIVE not in page


def _dump(component: Any) -> str:
    return json.dumps(component.to_plotly_json(), default=lambda o: o.to_plotly_json())
