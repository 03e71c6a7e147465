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


def _backfill(tmp_path: Path, openmetrics: str) -> None:
    """Write the series as TSDB blocks where `run_prometheus(tmp_path)` keeps its data."""
    promtool = require_binary("promtool")
    source = tmp_path / "series.om"
    source.write_text(openmetrics)
    data = tmp_path / "prometheus" / "data"
    data.mkdir(parents=True)
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_usage_from_prometheus(tmp_path: Path, gpulens: Callable[..., int], warehouse: Path) -> None:
    now = datetime.now(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    h0 = now - timedelta(hours=5)
    _backfill(tmp_path, _openmetrics(h0))
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


def _series(name: str, labels: str, points: list[tuple[int, float]]) -> list[str]:
    return [f"{name}{{{labels}}} {value} {t}" for t, value in points]


def _held_and_busy(t0: int, start: int, end: int, busy: float, ttl: int = 600) -> tuple[list, list]:
    """A job's held-seconds and SM-active-seconds counters: held from t0+start to t0+end at `busy`,
    then flat until the agent drops the series a TTL later."""
    times = range(t0 + start, t0 + end + ttl + 1, 60)
    held = [(t, float(min(t - t0, end) - start)) for t in times]
    return held, [(t, busy * v) for t, v in held]


def _shared_hour_openmetrics(h0: datetime) -> str:
    """node-b gpu 0: j3 (nlp) holds it 00-30 min at SM 0.8, then it is free and idle (SM 0);
    node-b gpu 1: j4 (nlp) 00-20 min at SM 0.9, then j5 (ads) 20-60 min at SM 0.3."""
    t0 = int(h0.replace(tzinfo=timezone.utc).timestamp())
    common = 'node="node-b",model="H100"'
    lines = ["# TYPE gpulens_gpu_held_seconds counter"]
    sm_lines = ["# TYPE gpulens_gpu_sm_active_seconds counter"]
    for gpu, job, team, start, end, busy in (
        (0, "j3", "nlp", 0, 1800, 0.8),
        (1, "j4", "nlp", 0, 1200, 0.9),
        (1, "j5", "ads", 1200, 3600, 0.3),
    ):
        labels = f'{common},gpu="{gpu}",uuid="GPU-B{gpu}",job_id="{job}",team="{team}"'
        held, busy_seconds = _held_and_busy(t0, start, end, busy)
        lines += _series("gpulens_gpu_held_seconds_total", labels, held)
        sm_lines += _series("gpulens_gpu_sm_active_seconds_total", labels, busy_seconds)
    free = [(t, 0.0) for t in range(t0 + 1800, t0 + 7200 + 1, 60)]  # gpu 0 free after j3: no job labels
    sm_lines += _series("gpulens_gpu_sm_active_seconds_total", f'{common},gpu="0",uuid="GPU-B0"', free)
    info = 'node="node-b",instance_id="i-bbb",instance_type="p5.48xlarge",cluster="c1"'
    info_lines = _series("gpulens_node_info", info, [(t, 1.0) for t in range(t0 - 600, t0 + 7201, 60)])
    return "\n".join([*lines, *sm_lines, "# TYPE gpulens_node_info gauge", *info_lines, "# EOF", ""])


def test_each_job_gets_the_sm_mean_of_its_own_seconds(
    tmp_path: Path, gpulens: Callable[..., int], warehouse: Path
) -> None:
    """docs/design.md §5: `sm_active` is the mean over the seconds the job held the GPU.

    Ledger (hour H0; see `_shared_hour_openmetrics`):
      j3 held gpu 0 for 1800 s at 0.8 -> 0.8 (before: the GPU's whole-hour mean 0.8 x 1800 / 3600 = 0.4)
      j4 held gpu 1 for 1200 s at 0.9 -> 0.9, j5 for 2400 s at 0.3 -> 0.3 (before: both
      0.9 x 1/3 + 0.3 x 2/3 = 0.5)
    """
    now = datetime.now(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    h0 = now - timedelta(hours=5)
    _backfill(tmp_path, _shared_hour_openmetrics(h0))
    with run_prometheus(tmp_path, targets=[]) as prom:
        code = gpulens(
            "ingest", "usage", "--prometheus", prom.url,
            "--start", h0.isoformat() + "Z", "--end", (h0 + timedelta(hours=2)).isoformat() + "Z",
        )  # fmt: skip
    assert code == 0
    with Warehouse(warehouse).connect(read_only=True) as con:
        rows = con.execute(
            "SELECT hour, gpu, job_id, team, gpu_seconds, sm_active FROM gpu_usage_hourly "
            "ORDER BY gpu, job_id"
        ).fetchall()
    assert [r[:4] for r in rows] == [(h0, 0, "j3", "nlp"), (h0, 1, "j4", "nlp"), (h0, 1, "j5", "ads")]
    assert [r[4] for r in rows] == pytest.approx([1800.0, 1200.0, 2400.0], rel=0.05)
    assert [r[5] for r in rows] == pytest.approx([0.8, 0.9, 0.3], rel=1e-6)
