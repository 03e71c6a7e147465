"""`gpulens runs check PATH [--format table|json]` (docs/design.md §2, §7) on CSV and trainer JSONL, and its
errors."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

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
    assert code == 0 and out.strip() == f"{path}: 19,560 points, 0 anomalies"


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
    assert re.search(r"^\s+31,221\s+spike\s+3\.21306$", out, re.M), out


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


# ---- the logs researchers already have (docs/trainer.md, "Accepted log formats") -----------------
# Each fixture is a real public log (or one rewritten from a real log's values, tests/fixtures/runlogs/
# README.md). Its "converted CSV" is made here by a few lines that do not use gpulens.runlogs, so a
# reader that drops, shifts or mis-parses a step gives different anomalies or point counts.

RUNLOGS = DATA.parent / "runlogs"
_TEXT_STEP = re.compile(r"^(?:s:(\d+) trl:|step:(\d+)/\d+ .*?\btrain_loss:)(\S+)")


def _text_points(path: Path) -> list[tuple[int, str]]:
    found = [_TEXT_STEP.match(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [(int(m[1] or m[2]), m[3]) for m in found if m]


def _hf_points(path: Path) -> list[tuple[int, str]]:
    history = json.loads(path.read_text(encoding="utf-8"))["log_history"]
    return [(e["step"], repr(float(e["loss"]))) for e in history if "loss" in e]


def _csv_points(path: Path, step: str, loss: str) -> list[tuple[int, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [(int(r[step]), r[loss]) for r in csv.DictReader(handle) if r[loss].strip()]


def _float32(text: str) -> str:
    import struct

    return repr(struct.unpack("f", struct.pack("f", float(text)))[0])


def _tensorboard_points(path: Path) -> list[tuple[int, str]]:
    """The event file holds the first 300 steps of the llm.c excerpt as float32 scalars (make_fixtures.py)."""
    source = _text_points(RUNLOGS / "llmc_gpt2_124M_main_excerpt.log")[:300]
    return [(step, _float32(loss)) for step, loss in source]


FORMATS = [
    ("llmc_gpt2_124M_main_excerpt.log", "text", _text_points, 597, []),
    ("modded_nanogpt_2024-10-17_DistributedMuon_excerpt.txt", "text", _text_points, 507, []),
    ("trainer_state.json", "hf_trainer_state", _hf_points, 200, []),
    ("metrics.csv", "lightning_csv", lambda p: _csv_points(p, "step", "train_loss_step"), 114, []),
    (
        "wandb_export_bloom_tr11.csv",
        "wandb_csv",
        lambda p: _csv_points(p, "Step", "tr11-176B-ml - train/loss"),
        11,
        # BLOOM-176B's loss spike of iteration 31214-31250 (the chronicle's own account), as the
        # detector reports it on the chronicle's CSV in test_bloom_chronicle_excerpt_as_csv
        [{"step": 31221, "kind": "spike", "loss": 3.213059}],
    ),
    ("events.out.tfevents.llmc", "tensorboard", _tensorboard_points, 300, []),
]


@pytest.mark.parametrize(
    ("name", "fmt", "convert", "points", "anomalies"), FORMATS, ids=[f[0] for f in FORMATS]
)
def test_each_log_format_gives_the_anomalies_of_its_converted_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, fmt: str, convert: Any, points: int,
    anomalies: list[dict[str, object]],
) -> None:  # fmt: skip
    from gpulens import runlogs

    path = RUNLOGS / name
    assert runlogs.detect_format(path) == fmt
    rows = convert(path)
    assert len(rows) == points
    converted = write_csv(tmp_path / "converted.csv", rows)
    direct = json.loads(check(capsys, str(path), "--format", "json")[1])
    assert direct == json.loads(check(capsys, str(converted), "--format", "json")[1])
    assert direct == {"anomalies": anomalies}
    code, out, _ = check(capsys, str(path))
    assert code == 0 and out.startswith(f"{path}: {points:,} points, {len(anomalies)} anomalies")


def _with_nan(path: Path, tmp_path: Path, fmt: str) -> tuple[Path, int]:
    """A copy of the fixture whose 40th training loss is NaN, and that loss's step."""
    copy = tmp_path / path.name
    if fmt == "hf_trainer_state":
        state = json.loads(path.read_text(encoding="utf-8"))
        entries = [e for e in state["log_history"] if "loss" in e]
        entries[39]["loss"] = math.nan
        copy.write_text(json.dumps(state, indent=2))  # Python writes NaN, as the HF Trainer does
        return copy, entries[39]["step"]
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if fmt == "text":
        hits = [i for i, line in enumerate(lines) if _TEXT_STEP.match(line)]
        i = hits[39]
        m = _TEXT_STEP.match(lines[i])
        assert m is not None
        lines[i] = lines[i][: m.start(3)] + "nan" + lines[i][m.end(3) :]
        copy.write_text("".join(lines))
        return copy, int(m[1] or m[2])
    rows = list(csv.reader(lines))
    loss = rows[0].index("train_loss_step")
    data = [r for r in rows[1:] if r[loss]]
    data[39][loss] = "nan"
    with copy.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return copy, int(data[39][rows[0].index("step")])


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("llmc_gpt2_124M_main_excerpt.log", "text"),
        ("modded_nanogpt_2024-10-17_DistributedMuon_excerpt.txt", "text"),
        ("trainer_state.json", "hf_trainer_state"),
        ("metrics.csv", "lightning_csv"),
    ],
)
def test_a_nan_loss_is_found_at_its_step_in_every_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, fmt: str
) -> None:
    path, step = _with_nan(RUNLOGS / name, tmp_path, fmt)
    found = json.loads(check(capsys, str(path), "--format", "json")[1])["anomalies"]
    assert {"step": step, "kind": "nan", "loss": None} in found


def test_learning_rate_and_grad_norm_are_read_where_the_log_has_them() -> None:
    from gpulens import runlogs

    llmc = runlogs.read_log(RUNLOGS / "llmc_gpt2_124M_main_excerpt.log").points
    assert (llmc[1].step, llmc[1].loss, llmc[1].lr, llmc[1].grad_norm) == (1, 10.9598, 0.000002, 15.24)
    hf = runlogs.read_log(RUNLOGS / "trainer_state.json").points
    assert (hf[0].step, hf[0].loss, hf[0].lr) == (25, 0.3048, 4.6000000000000004e-07)
    tb = runlogs.read_log(RUNLOGS / "events.out.tfevents.llmc").points
    assert tb[1].step == 1 and tb[1].grad_norm == pytest.approx(15.24) and tb[1].lr == pytest.approx(2e-6)


def test_wandb_run_history_export_and_several_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = tmp_path / "history.csv"
    history.write_text(
        "_step,_runtime,_timestamp,train/loss,train/lr\n0,1.5,1700000000,2.0,0.1\n1,3.0,1700000002,nan,0.1\n"
    )
    assert json.loads(check(capsys, str(history), "--format", "json")[1]) == {
        "anomalies": [{"step": 1, "kind": "nan", "loss": None}]
    }
    two = tmp_path / "two.csv"
    two.write_text('"Step","a - train/loss","b - train/loss"\n1,2.0,2.0\n')
    code, _, err = check(capsys, str(two))
    assert code == 1 and err.count("\n") == 1 and "several runs (a, b)" in err


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x00\x01\xff\xfe binary", "not UTF-8 text and not a TensorBoard event file"),
        (b"epoch 1 done\nall good\n", "no loss lines found"),
        (b"iteration,lm_loss\n1,2.0\n", "header lacks step, loss"),
        (b"", "empty file"),
    ],
)
def test_an_unreadable_file_gets_one_line_listing_the_accepted_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, why: str
) -> None:
    path = tmp_path / "odd.log"
    path.write_bytes(content)
    code, out, err = check(capsys, str(path))
    assert code == 1 and out == "" and err.count("\n") == 1
    assert why in err and "accepted:" in err
    for name in (
        "trainer JSONL",
        "trainer_state.json",
        "metrics.csv",
        "W&B",
        "TensorBoard",
        "modded-nanogpt",
    ):
        assert name in err


def test_a_trainer_state_json_is_not_read_as_jsonl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both start with `{`: before, a trainer_state.json got "row 1: not JSON"."""
    state = tmp_path / "trainer_state.json"
    state.write_text(
        json.dumps(
            {"global_step": 2, "log_history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": None}]}, indent=2
        )
    )
    code, out, err = check(capsys, str(state))
    assert code == 0 and out.startswith(f"{state}: 1 points"), err
    empty = tmp_path / "other.json"
    empty.write_text(json.dumps({"global_step": 2}, indent=2))
    code, _, err = check(capsys, str(empty))
    assert code == 1 and err.count("\n") == 1 and "neither a trainer_state.json" in err and "accepted:" in err


def test_ingest_runs_reads_the_same_formats_and_finds_the_same_anomalies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ingest runs` picks its reader by the same detection: each fixture loads as one job (the file's
    stem) with every point, the anomalies `runs check` reports, and llm.c's lr and grad norm kept."""
    import duckdb

    warehouse = tmp_path / "w.duckdb"
    for name, _, _, points, anomalies in FORMATS:
        assert main(["ingest", "runs", str(RUNLOGS / name), "--warehouse", str(warehouse)]) == 0, name
        capsys.readouterr()
        with duckdb.connect(str(warehouse), read_only=True) as con:
            job = Path(name).stem
            count = con.execute("SELECT count(*) FROM train_metrics WHERE job_id = ?", [job]).fetchone()
            found = con.execute(
                "SELECT step, kind FROM train_anomalies WHERE job_id = ? ORDER BY step", [job]
            ).fetchall()
        assert count == (points,), name
        assert found == [(a["step"], a["kind"]) for a in anomalies], name
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute(
            "SELECT loss, lr, grad_norm FROM train_metrics "
            "WHERE job_id = 'llmc_gpt2_124M_main_excerpt' AND step = 1"
        ).fetchone()
    assert row == (10.9598, 0.000002, 15.24)


def test_a_spreadsheet_saved_export_with_a_byte_order_mark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Excel saves CSV as UTF-8 with a BOM: the W&B export still reads, to the same anomalies."""
    source = RUNLOGS / "wandb_export_bloom_tr11.csv"
    saved = tmp_path / "saved.csv"
    saved.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    assert json.loads(check(capsys, str(saved), "--format", "json")[1]) == json.loads(
        check(capsys, str(source), "--format", "json")[1]
    )
