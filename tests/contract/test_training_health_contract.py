"""docs/design.md §2 `runs check --format json` and §7 defaults, on loss curves written here.

Curves (step,loss CSV, steps 0..n-1; the base loss is flat so the smoothed baseline is exactly 2.0):
  A flat 2.0 x 200                                     -> nothing
  B flat, one-step 2x blips at 50, 100, 150            -> nothing (single-batch noise)
  C flat, two steps at 3.0 (+50%) at 100-101           -> nothing (< 3 steps)
  D flat, 3.0 (+50%) at 100-104, then 2.0              -> one spike, confirmed at step 102; no divergence
  E flat, 2.4 (+20%) at 100-129, then 2.0 (30 steps)   -> nothing (< 25%: no spike; < 50 steps: no divergence)
  F flat 2.0 x 100, then 2.4 (+20%) to step 299        -> one divergence, none before step 149; no spike
  G flat, NaN at 30 and 31, then 2.0                   -> nan at step 30 (its first step)
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.contract.support import gl, ok, write_curve

FLAT = 2.0


def check(tmp_path: Path, name: str, losses: list[float | str]) -> list[dict]:
    out = ok(gl("runs", "check", write_curve(tmp_path / f"{name}.csv", losses), "--format", "json"))
    doc = json.loads(out.stdout)
    assert set(doc) == {"anomalies"}
    for a in doc["anomalies"]:
        assert set(a) == {"step", "kind", "loss"}, a
        assert a["kind"] in ("nan", "spike", "divergence")
        assert isinstance(a["step"], int)
    return list(doc["anomalies"])


def curve(n: int, **overrides: float | str) -> list[float | str]:
    values: list[float | str] = [FLAT] * n
    for key, value in overrides.items():
        lo, _, hi = key.removeprefix("s").partition("_")
        for step in range(int(lo), int(hi or lo) + 1):
            values[step] = value
    return values


def test_a_flat_curve_is_clean(tmp_path: Path) -> None:
    assert check(tmp_path, "a", curve(200)) == []


def test_b_one_step_2x_blips_are_not_reported(tmp_path: Path) -> None:
    assert check(tmp_path, "b", curve(200, s50=4.0, s100=4.0, s150=3.9)) == []


def test_c_two_step_excursion_is_not_a_spike(tmp_path: Path) -> None:
    assert check(tmp_path, "c", curve(200, s100_101=3.0)) == []


def test_d_three_steps_above_25_percent_is_one_spike(tmp_path: Path) -> None:
    found = check(tmp_path, "d", curve(200, s100_104=3.0))
    assert [a["kind"] for a in found] == ["spike"], found
    assert found[0]["step"] == 102, found  # confirmed on the third consecutive step
    assert found[0]["loss"] == 3.0


def test_e_twenty_percent_for_thirty_steps_is_nothing(tmp_path: Path) -> None:
    assert check(tmp_path, "e", curve(300, s100_129=2.4)) == []


def test_f_sustained_rise_is_a_divergence(tmp_path: Path) -> None:
    found = check(tmp_path, "f", curve(300, s100_299=2.4))
    assert [a["kind"] for a in found] == ["divergence"], found
    assert 149 <= found[0]["step"] <= 299, found


def test_g_nan_is_reported_at_its_first_step(tmp_path: Path) -> None:
    found = check(tmp_path, "g", curve(100, s30_31="nan"))
    nans = [a for a in found if a["kind"] == "nan"]
    assert nans and nans[0]["step"] == 30, found
    assert all(a["kind"] == "nan" for a in found), found


def test_table_format_is_default(tmp_path: Path) -> None:
    out = ok(gl("runs", "check", write_curve(tmp_path / "t.csv", curve(200, s100_104=3.0))))
    assert "spike" in out.stdout and "102" in out.stdout
    assert not out.stdout.lstrip().startswith("{")


def test_h_trainer_jsonl_is_accepted(tmp_path: Path) -> None:
    # docs/design.md §2 `ingest runs`/§4: the trainer's JSONL holds wire-format records; anomaly records are
    # skipped.
    path = tmp_path / "run.jsonl"
    records = []
    for step, loss in enumerate(curve(200, s100_104=3.0)):
        records.append(
            {
                "v": 1,
                "kind": "step",
                "job_id": "j",
                "team": "t",
                "rank": 0,
                "step": step,
                "ts": 1795600000.0 + step,
                "step_seconds": 0.5,
                "loss": loss,
                "unknown": 1,
            }
        )
    records.insert(
        103,
        {
            "v": 1,
            "kind": "anomaly",
            "job_id": "j",
            "team": "t",
            "rank": 0,
            "step": 102,
            "anomaly": "spike",
            "loss": 3.0,
        },
    )
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = ok(gl("runs", "check", path, "--format", "json"))
    found = json.loads(out.stdout)["anomalies"]
    assert [(a["kind"], a["step"]) for a in found] == [("spike", 102)], found


def test_i_exactly_three_steps_is_a_spike(tmp_path: Path) -> None:
    found = check(tmp_path, "i", curve(200, s100_102=3.0))
    assert [(a["kind"], a["step"]) for a in found] == [("spike", 102)], found


def test_j_infinite_loss_is_nan_kind_at_its_first_step(tmp_path: Path) -> None:
    found = check(tmp_path, "j", curve(100, s40="inf"))
    assert [(a["kind"], a["step"]) for a in found] == [("nan", 40)], found


def test_k_real_healthy_run_is_clean() -> None:
    # llm.c GPT-2 124M on 8xH100 (tests/fixtures/loss/README.md): 19,560 steps, 11.01 -> 3.22, healthy.
    curve_file = Path(__file__).parents[1] / "fixtures" / "loss" / "llmc_gpt2_124M_8xH100_train_loss.csv"
    doc = json.loads(ok(gl("runs", "check", curve_file, "--format", "json")).stdout)
    assert doc == {"anomalies": []}
