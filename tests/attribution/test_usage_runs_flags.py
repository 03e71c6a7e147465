"""Usage rollups, training runs and docs/design.md §7 flags.

Flags ledger (window 2026-10-01 00:00 to 02:00, the usage ledger plus the rows below):
  i-direct gpu 0  j-ml     ml   1 h  SM 0.20          -> flagged (0.20 < 0.25), waste 0.60 x 0.80 = 0.48
  i-shared gpus   j-search      4 x 1 h SM 0.50, j-ads 2 x 1 h SM 0.75 -> not flagged
  i-util gpu 0    j-u      ops  2 h  utilization 0.10 (no SM metric) -> flagged, measure "utilization", no CUR
                                                         line for i-util, so waste 0
  i-util gpu 1    j-short  ops  0.5 h SM 0.0          -> not flagged (held under an hour)
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.flags import find_flags
from gpulens.attribution.ingest.runs import ingest_runs
from gpulens.attribution.warehouse import Warehouse

from .conftest import LEDGER_FILES, USAGE

HEADER = [
    "hour",
    "node",
    "instance_id",
    "cluster",
    "gpu",
    "gpu_uuid",
    "model",
    "job_id",
    "team",
    "gpu_seconds",
    "sm_active",
    "utilization",
]


def _usage_file(path: Path, rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)
    return path


def _count(warehouse: Path, table: str) -> tuple:
    with Warehouse(warehouse).connect(read_only=True) as con:
        return con.execute(f"SELECT count(*), sum(gpu_seconds) FROM {table}").fetchone()


def test_usage_reingest_replaces_hours(gpulens: Callable[..., int], warehouse: Path, tmp_path: Path) -> None:
    assert gpulens("ingest", "usage", USAGE) == 0
    assert gpulens("ingest", "usage", USAGE) == 0
    assert _count(warehouse, "gpu_usage_hourly") == (7, 7 * 3600.0)


@pytest.mark.parametrize(
    ("cell", "value", "expected"),
    [
        ("gpu_seconds", "lots", "row 2, column gpu_seconds: 'lots' is not a number"),
        ("gpu_seconds", "4000", "row 2, column gpu_seconds: 4000.0 is outside 0..3600"),
        ("sm_active", "1.5", "row 2, column sm_active: 1.5 is outside the ratio range"),
        ("hour", "noon", "row 2, column hour: 'noon' is not a timestamp"),
    ],
)
def test_bad_usage_file_is_one_line_and_changes_nothing(
    cell: str,
    value: str,
    expected: str,
    gpulens: Callable[..., int],
    warehouse: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert gpulens("ingest", "usage", USAGE) == 0
    before = _count(warehouse, "gpu_usage_hourly")
    row = {
        "hour": "2026-10-01 01:00:00",
        "node": "n",
        "instance_id": "i-shared",
        "cluster": "",
        "gpu": "0",
        "gpu_uuid": "",
        "model": "",
        "job_id": "j",
        "team": "t",
        "gpu_seconds": "60",
        "sm_active": "0.5",
        "utilization": "",
    }
    bad = dict(row, **{cell: value})
    path = _usage_file(tmp_path / "bad-usage.csv", [list(row.values()), list(bad.values())])
    capsys.readouterr()
    assert gpulens("ingest", "usage", path) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"bad-usage.csv: {expected}" in err[0]
    assert _count(warehouse, "gpu_usage_hourly") == before


def test_usage_needs_an_hour_column(
    gpulens: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "u.csv"
    path.write_text("node,gpu_seconds\nn,3600\n")
    assert gpulens("ingest", "usage", path) == 1
    assert "u.csv: column hour: required column missing" in capsys.readouterr().err


@pytest.fixture
def flagged(gpulens: Callable[..., int], warehouse: Path, tmp_path: Path) -> Path:
    assert gpulens("ingest", "cur", LEDGER_FILES["cur2-csv"]) == 0
    assert gpulens("ingest", "usage", USAGE) == 0
    extra = _usage_file(
        tmp_path / "util.csv",
        [
            ["2026-10-01 00:00:00", "node-c", "i-util", "c3", 0, "", "A100", "j-u", "ops", 3600, "", 0.1],
            ["2026-10-01 01:00:00", "node-c", "i-util", "c3", 0, "", "A100", "j-u", "ops", 3600, "", 0.1],
            ["2026-10-01 01:00:00", "node-c", "i-util", "c3", 1, "", "A100", "j-short", "ops", 1800, 0.0, ""],
        ],
    )
    assert gpulens("ingest", "usage", extra) == 0
    return warehouse


def test_underutilized_pairs(flagged: Path) -> None:
    with Warehouse(flagged).connect(read_only=True) as con:
        flags = find_flags(con)  # until: end of the newest usage hour, 02:00; window 24 h
    got = {
        (u.instance_id, u.gpu, u.job_id): (u.team, u.hours, u.sm_active, u.waste, u.measure)
        for u in flags.underutilized
    }
    assert got == {
        ("i-direct", 0, "j-ml"): ("ml", 1.0, 0.2, Decimal("0.48"), "sm_active"),
        ("i-util", 0, "j-u"): ("ops", 2.0, 0.1, Decimal("0"), "utilization"),
    }


def test_window_and_threshold(flagged: Path) -> None:
    with Warehouse(flagged).connect(read_only=True) as con:
        only_last_hour = find_flags(con, window=timedelta(hours=1), until=datetime(2026, 10, 1, 2))
        strict = find_flags(con, until=datetime(2026, 10, 1, 2), sm_threshold=0.6)
    # [01:00, 02:00): j-ml's hour is outside, j-u holds exactly 1 h, j-short only half an hour.
    assert [u.job_id for u in only_last_hour.underutilized] == ["j-u"]
    assert {u.job_id for u in strict.underutilized} == {"j-ml", "j-u", "j-search"}


def test_flags_json_shape(
    flagged: Path, gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert gpulens("flags", "--format", "json", "--until", "2026-10-01T02:00:00Z", "--window", "2h") == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"underutilized", "divergent_runs"}
    assert set(out["underutilized"][0]) == {
        "node",
        "instance_id",
        "gpu",
        "team",
        "job_id",
        "hours",
        "sm_active",
        "waste",
    }
    assert out["underutilized"][0]["waste"] == pytest.approx(0.48)


def test_flags_table_shows_waste_as_money_and_hours_with_their_unit(
    flagged: Path, gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    """The ledger's j-ml row: 1 h held at SM 0.20, waste 0.48 USD (was printed as `waste 0.48`)."""
    capsys.readouterr()
    assert gpulens("flags", "--until", "2026-10-01T02:00:00Z", "--window", "2h") == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "/j-ml" in line]
    assert len(rows) == 1 and rows[0].endswith("1.0 h  SM 20%  waste $0.48"), rows


@dataclass(frozen=True)
class FakeAnomaly:
    step: int
    kind: str
    loss: float


def fake_detect(points: Iterable[tuple[int, float]]) -> list[FakeAnomaly]:
    """A stand-in with the detector's interface: nan at each non-finite loss, spike at each doubling."""
    out, previous = [], None
    for step, loss in points:
        if not math.isfinite(loss):
            out.append(FakeAnomaly(step, "nan", loss))
        elif previous is not None and loss > 2 * previous:
            out.append(FakeAnomaly(step, "spike", loss))
        if math.isfinite(loss):
            previous = loss
    return out


def test_runs_csv_and_jsonl(warehouse: Path, tmp_path: Path) -> None:
    curve = tmp_path / "job-7.csv"  # no job_id column: the stem is the job id
    curve.write_text("step,loss\n1,2.0\n2,1.9\n3,nan\n4,5.0\n5,nan\n")
    log = tmp_path / "train.jsonl"
    log.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "v": 1,
                    "kind": "step",
                    "job_id": "bgpt",
                    "team": "research",
                    "rank": 0,
                    "step": 1,
                    "loss": 3.0,
                    "ts": 1795600000.0,
                    "step_seconds": 0.5,
                    "tokens": 1024,
                    "mfu": 0.4,
                },
                {
                    "v": 1,
                    "kind": "step",
                    "job_id": "bgpt",
                    "team": "research",
                    "rank": 0,
                    "step": 2,
                    "loss": 2.9,
                },
                {
                    "v": 1,
                    "kind": "anomaly",
                    "job_id": "bgpt",
                    "team": "research",
                    "rank": 0,
                    "step": 2,
                    "anomaly": "divergence",
                    "loss": 2.9,
                },
                {"v": 1, "kind": "heartbeat"},
            ]
        )
        + "\n"
    )
    with Warehouse(warehouse).connect() as con:
        result = ingest_runs(con, [curve, log], detect=fake_detect)
        result = ingest_runs(con, [curve, log], detect=fake_detect)  # re-ingest replaces per job
        metrics = con.execute("SELECT job_id, count(*) FROM train_metrics GROUP BY 1 ORDER BY 1").fetchall()
        flags = find_flags(con)
    assert result.jobs == ("bgpt", "job-7") and result.metrics == 7
    assert metrics == [("bgpt", 2), ("job-7", 5)]
    runs = {(r.job_id, r.kind): (r.step, r.team) for r in flags.divergent_runs}
    assert runs == {
        ("job-7", "nan"): (3, None),
        ("job-7", "spike"): (4, None),
        ("bgpt", "divergence"): (2, "research"),
    }  # one per run and kind, at its first step


def test_ingest_runs_cli_uses_the_trainer_detector(
    gpulens: Callable[..., int], warehouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    curve = tmp_path / "run.csv"
    curve.write_text(
        "step,loss,job_id,team\n"
        + "".join(f"{s},{'nan' if s == 30 else 2.0 - s / 100},r1,Vision\n" for s in range(1, 41))
    )
    assert gpulens("ingest", "runs", curve) == 0
    assert "40 steps of 1 run(s)" in capsys.readouterr().out
    with Warehouse(warehouse).connect(read_only=True) as con:
        found = con.execute("SELECT job_id, kind, step FROM train_anomalies").fetchall()
    assert ("r1", "nan", 30) in found
    bad = tmp_path / "bad.csv"
    bad.write_text("step,loss\n1,2.0\nx,1.0\n")
    assert gpulens("ingest", "runs", bad) == 1
    assert "bad.csv: row 2, column step: 'x' is not a number" in capsys.readouterr().err
