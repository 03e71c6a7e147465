"""`gpulens ingest usage --prometheus` against a real Prometheus serving a backfilled TSDB.

Ledger (three UTC hours H0..H3, counters sampled every 60 s, backfilled with promtool):
  node-a = i-aaa (cluster c1) gpu 0: job j1 (team search) holds it all three hours, SM active 0.5
  node-a gpu 1: job j2 (team ads) holds it during H1 only, SM active 0.25 then
Expected rows: (H0, gpu 0), (H1, gpu 0), (H2, gpu 0) ~3600 s at SM 0.5; (H1, gpu 1) ~3600 s at SM 0.25;
nothing for gpu 1 in H0 or H2 (it was not held).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gpulens.attribution.warehouse import Warehouse
from tests.support.servers import require_binary, run_prometheus


def _openmetrics(h0: datetime) -> str:
    t0 = int(h0.replace(tzinfo=timezone.utc).timestamp())
    h1, h3 = t0 + 3600, t0 + 10800
    common = 'node="node-a",model="A100-SXM4-40GB"'
    held, sm, info = [], [], []
    for t in range(t0 - 600, h3 + 1, 60):
        held.append(
            f'gpulens_gpu_held_seconds_total{{{common},gpu="0",uuid="GPU-0",job_id="j1",team="search"}} '
            f"{max(t - (t0 - 600), 0)} {t}"
        )
        g1 = min(max(t - h1, 0), 3600)
        held.append(
            f'gpulens_gpu_held_seconds_total{{{common},gpu="1",uuid="GPU-1",job_id="j2",team="ads"}} {g1} {t}'
        )
        sm.append(
            f'gpulens_gpu_sm_active_seconds_total{{{common},gpu="0",uuid="GPU-0"}} {0.5 * (t - t0 + 600)} {t}'
        )
        sm.append(f'gpulens_gpu_sm_active_seconds_total{{{common},gpu="1",uuid="GPU-1"}} {0.25 * g1} {t}')
        info.append(
            f'gpulens_node_info{{node="node-a",instance_id="i-aaa",instance_type="p4d.24xlarge",'
            f'cluster="c1"}} 1 {t}'
        )
    return "\n".join(
        [
            "# TYPE gpulens_gpu_held_seconds counter",
            *held,
            "# TYPE gpulens_gpu_sm_active_seconds counter",
            *sm,
            "# TYPE gpulens_node_info gauge",
            *info,
            "# EOF",
            "",
        ]
    )


def test_usage_from_prometheus(tmp_path: Path, gpulens: Callable[..., int], warehouse: Path) -> None:
    promtool = require_binary("promtool")
    now = datetime.now(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    h0 = now - timedelta(hours=5)
    source = tmp_path / "series.om"
    source.write_text(_openmetrics(h0))
    data = tmp_path / "prometheus" / "data"
    data.mkdir(parents=True)
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with run_prometheus(tmp_path, targets=[]) as prom:
        code = gpulens(
            "ingest",
            "usage",
            "--prometheus",
            prom.url,
            "--start",
            h0.isoformat() + "Z",
            "--end",
            (h0 + timedelta(hours=3)).isoformat() + "Z",
        )
    assert code == 0
    with Warehouse(warehouse).connect(read_only=True) as con:
        rows = con.execute(
            "SELECT hour, node, instance_id, cluster, gpu, job_id, team, gpu_seconds, sm_active "
            "FROM gpu_usage_hourly ORDER BY gpu, hour"
        ).fetchall()
    key = [(r[0], r[4], r[5], r[6]) for r in rows]
    assert key == [
        (h0, 0, "j1", "search"),
        (h0 + timedelta(hours=1), 0, "j1", "search"),
        (h0 + timedelta(hours=2), 0, "j1", "search"),
        (h0 + timedelta(hours=1), 1, "j2", "ads"),
    ]
    assert all(r[1:4] == ("node-a", "i-aaa", "c1") for r in rows)  # joined to gpulens_node_info
    assert [r[7] for r in rows] == pytest.approx([3600.0] * 4, rel=0.02)
    assert [r[8] for r in rows] == pytest.approx([0.5, 0.5, 0.5, 0.25], rel=0.02)
