"""`ingest runs` loads in bulk and keeps its contract: errors name file, row and column; the detector
is injected; a job's rows are replaced, never doubled; `null` losses are NaN; teams are normalized."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from gpulens.attribution.flags import find_flags
from gpulens.attribution.ingest.runs import ingest_runs
from gpulens.attribution.warehouse import Warehouse
from gpulens.errors import GpulensError

STEPS = 10_000


class Seen:
    """A detector stand-in that records the curves it is given and flags every non-finite loss."""

    def __init__(self) -> None:
        self.curves: list[list[tuple[int, float]]] = []

    def __call__(self, points: Iterable[tuple[int, float]]) -> list:
        curve = list(points)
        self.curves.append(curve)
        return [_Anomaly(s, "nan", v) for s, v in curve if not math.isfinite(v)]


class _Anomaly:
    def __init__(self, step: int, kind: str, loss: float) -> None:
        self.step, self.kind, self.loss = step, kind, loss


def _big_inputs(tmp_path: Path) -> list[Path]:
    log = tmp_path / "bgpt.jsonl"
    with log.open("w") as fh:
        for s in range(STEPS):
            loss = None if s == 777 else 3.0 - s / STEPS  # the trainer writes a NaN loss as null
            fh.write(
                json.dumps(
                    {
                        "v": 1,
                        "kind": "step",
                        "job_id": "bgpt",
                        "team": " Research ",
                        "rank": 0,
                        "step": s,
                        "ts": 1795600000.0 + s,
                        "loss": loss,
                        "tokens": 1024,
                    }
                )
                + "\n"
            )
    curve = tmp_path / "curve.csv"  # no job_id column: the stem is the job
    curve.write_text("step,loss,team\n" + "".join(f"{s},{2.0 + s / STEPS},Vision\n" for s in range(STEPS)))
    return [log, curve]


# Not a benchmark (benchmarks/bench_ingest_runs.py measures it): a guard. Row-at-a-time inserts
# took 18-30 s for these 20,000 rows; the bulk load takes about 0.3 s.
@pytest.mark.timeout(15)
def test_twenty_thousand_steps_load_in_bulk_and_replace_per_job(warehouse: Path, tmp_path: Path) -> None:
    paths = _big_inputs(tmp_path)
    detect = Seen()
    with Warehouse(warehouse).connect() as con:
        ingest_runs(con, paths, detect=detect)
        result = ingest_runs(con, paths, detect=detect)  # again: replaced per job, not doubled
        metrics = con.execute(
            "SELECT job_id, team, count(*), count(ts), sum(tokens), count(*) FILTER (WHERE isnan(loss)) "
            "FROM train_metrics GROUP BY ALL ORDER BY 1"
        ).fetchall()
        flags = find_flags(con)
    assert result.jobs == ("bgpt", "curve") and result.metrics == 2 * STEPS
    assert metrics == [
        ("bgpt", "research", STEPS, STEPS, 1024 * STEPS, 1),
        ("curve", "vision", STEPS, 0, None, 0),
    ]
    assert len(detect.curves) == 4 and all(len(c) == STEPS for c in detect.curves)
    assert [(r.job_id, r.team, r.kind, r.step) for r in flags.divergent_runs] == [
        ("bgpt", "research", "nan", 777)
    ]


def _state(warehouse: Path) -> tuple:
    with Warehouse(warehouse).connect(read_only=True) as con:
        return (
            con.execute("SELECT count(*), sum(loss) FROM train_metrics").fetchone(),
            con.execute("SELECT count(*) FROM train_anomalies").fetchone(),
        )


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("curve.csv", "step,loss\n0,2.0\n1,2.0\n2,x\n3,2.0\n",
     "curve.csv: row 3, column loss: 'x' is not a number"),
    ("steps.csv", "step,loss\n0,2.0\nseven,2.0\n", "steps.csv: row 2, column step: 'seven' is not a number"),
    ("log.jsonl", '{"kind":"step","step":1,"loss":2.0}\n{"kind":"step","step":2,"loss":"high"}\n',
     "log.jsonl: row 2, column loss: 'high' is not a number"),
    ("when.jsonl", '{"kind":"step","step":1,"loss":2.0,"ts":"yesterday"}\n',
     "when.jsonl: row 1, column ts: 'yesterday' is not a timestamp"),
])  # fmt: skip
def test_a_bad_cell_is_named_and_changes_nothing(
    gpulens: Callable[..., int],
    warehouse: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    expected: str,
) -> None:
    good = tmp_path / "good.csv"
    good.write_text("step,loss\n0,2.0\n1,1.5\n")
    assert gpulens("ingest", "runs", good) == 0
    before = _state(warehouse)
    bad = tmp_path / name
    bad.write_text(text)
    capsys.readouterr()
    assert gpulens("ingest", "runs", good, bad) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and expected in err[0], err
    assert _state(warehouse) == before


def test_ingest_runs_names_the_missing_file(tmp_path: Path) -> None:
    with Warehouse(tmp_path / "w.duckdb").connect() as con, pytest.raises(GpulensError, match="no such file"):
        ingest_runs(con, [tmp_path / "gone.csv"], detect=Seen())
