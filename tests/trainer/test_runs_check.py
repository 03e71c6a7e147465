"""`gpulens runs check PATH [--format table|json]` (SPEC §2, §7) on CSV and trainer JSONL, and its errors."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

from gpulens.cli import main

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "loss"


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["runs", "check", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def write_csv(path: Path, rows: list[tuple[int, str]], header: str = "step,loss") -> Path:
    path.write_text(header + "\n" + "".join(f"{s},{v}\n" for s, v in rows))
    return path


def test_csv_with_a_spike_and_a_nan_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    losses = [3.0 - i / 200 for i in range(300)]
    for i in (100, 101, 102):
        losses[i] = 6.0
    losses[200] = math.nan
    path = write_csv(tmp_path / "run.csv", [(i, repr(v)) for i, v in enumerate(losses)])
    code, out, _ = check(capsys, str(path), "--format", "json")
    assert code == 0
    assert json.loads(out) == {
        "anomalies": [{"step": 102, "kind": "spike", "loss": 6.0}, {"step": 200, "kind": "nan", "loss": None}]
    }


def test_llmc_gpt2_curve_is_clean_in_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "llmc_gpt2_124M_8xH100_train_loss.csv"
    code, out, _ = check(capsys, str(path))
    assert code == 0 and out.strip() == f"{path}: 19560 points, 0 anomalies"


def test_extra_columns_are_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "x.csv", [(1, "2.0,job-a,ml"), (2, "nan,job-a,ml")], "Step,Loss,job_id,team")
    code, out, _ = check(capsys, str(path), "--format", "json")
    assert json.loads(out) == {"anomalies": [{"step": 2, "kind": "nan", "loss": None}]}


def test_bloom_chronicle_excerpt_as_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with (DATA / "bigscience_chronicles_loglines_extracted.csv").open() as handle:
        rows = [
            (int(r["iteration"]), r["lm_loss"])
            for r in csv.DictReader(handle)
            if r["source_file"].startswith("bigscience_tr11")
            and int(r["iteration"]) >= 31214
            and int(r["iteration"]) < 40000
        ]
    code, out, _ = check(capsys, str(write_csv(tmp_path / "bloom.csv", rows)))
    assert code == 0
    assert re.search(r"^\s+31221\s+spike\s+3\.21306$", out, re.M), out


def test_empty_loss_cells_are_skipped_iterations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "gaps.csv", [(1, "2.0"), (2, ""), (3, "2.0")])
    assert check(capsys, str(path))[1].startswith(f"{path}: 2 points, 0 anomalies")


def test_trainer_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [{"v": 1, "kind": "step", "job_id": "j", "rank": 0, "step": i, "loss": 2.0} for i in range(50)]
    lines[30]["loss"] = None  # how the trainer writes a non-finite loss
    lines.append(
        {"v": 1, "kind": "anomaly", "job_id": "j", "rank": 0, "step": 30, "anomaly": "nan", "loss": None}
    )
    lines.append({"v": 1, "kind": "step", "job_id": "j", "rank": 0, "step": 50})  # no loss: not a point
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    code, out, _ = check(capsys, str(path), "--format", "json")
    assert json.loads(out) == {"anomalies": [{"step": 30, "kind": "nan", "loss": None}]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("step,loss\n1,2.0\n2,abc\n", "bad.csv: row 2, column loss: 'abc' is not a number"),
        ("iteration,lm_loss\n1,2.0\n", "bad.csv: header lacks step, loss"),
        ("step,loss\nx,2.0\n", "bad.csv: row 1, column step: 'x' is not a number"),
    ],
)
def test_bad_csv_is_one_line_naming_file_row_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    (tmp_path / "bad.csv").write_text(content)
    code, out, err = check(capsys, str(tmp_path / "bad.csv"))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and message in err


def test_bad_jsonl_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.jsonl").write_text('{"kind": "step", "step": 1, "loss": 2}\n{oops\n')
    code, _, err = check(capsys, str(tmp_path / "bad.jsonl"))
    assert code == 1 and "bad.jsonl: row 2: not JSON" in err
    two = [{"kind": "step", "job_id": j, "rank": 0, "step": 1, "loss": 2.0} for j in ("a", "b")]
    (tmp_path / "two.jsonl").write_text("".join(json.dumps(r) + "\n" for r in two))
    code, _, err = check(capsys, str(tmp_path / "two.jsonl"))
    assert code == 1 and "several runs" in err
    code, _, err = check(capsys, str(tmp_path / "missing.csv"))
    assert code == 1 and "missing.csv: no such file" in err
