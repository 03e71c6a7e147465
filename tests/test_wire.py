"""The trainer record has one home (docs/design.md §4): every reader agrees on what a log holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpulens import wire
from gpulens.errors import GpulensError
from tests.support.servers import REPO

COMPONENTS = ("trainer", "collector", "attribution")


def test_a_record_is_an_object_with_a_kind_of_at_most_8_kib() -> None:
    assert wire.decode(b'{"v":1,"kind":"step","step":1}')["step"] == 1
    assert wire.decode('{"kind":"phase"}')["kind"] == "phase"  # files may omit v
    assert wire.decode('{"kind":"from-the-future"}')["kind"] == "from-the-future"  # skipped by readers
    for bad in (b"[1,2]", b"not json", b'{"v":1,"step":1}', b'{"v":2,"kind":"step"}', b'{"kind":3}'):
        with pytest.raises(wire.WireError):
            wire.decode(bad)
    with pytest.raises(wire.WireError, match="8192"):
        wire.decode(b'{"kind":"step","pad":"' + b"x" * 8200 + b'"}')


def test_non_finite_numbers_travel_as_null() -> None:
    line = wire.encode({"v": 1, "kind": "step", "loss": float("nan"), "mfu": float("inf")})
    assert json.loads(line) == {"v": 1, "kind": "step", "loss": None, "mfu": None}


def test_phase_names_outside_the_table_count_as_other() -> None:
    assert [wire.phase_bucket(p) for p in ("eval", "data_wait", "warmup", None)] == [
        "eval",
        "data_wait",
        "other",
        "other",
    ]


def _log(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("line", "row"),
    [('{"v":1,"step":3,"loss":2.0}', 2), ("[1]", 2), ("{oops", 2)],
)
def test_runs_check_and_ingest_runs_refuse_the_same_line(tmp_path: Path, line: str, row: int) -> None:
    """Before one module owned the record, `ingest runs` counted a line without `kind` as a step and
    refused a non-object line, while `runs check` skipped both: the two disagreed on one file."""
    from gpulens.attribution.ingest.runs import ingest_runs
    from gpulens.attribution.warehouse import Warehouse
    from gpulens.trainer.curves import read_curve
    from gpulens.trainer.health import scan

    path = _log(tmp_path, ['{"v":1,"kind":"step","job_id":"j","step":1,"loss":2.0}', line])
    with pytest.raises(GpulensError) as check:
        read_curve(path)
    with Warehouse(tmp_path / "w.duckdb").connect() as con, pytest.raises(GpulensError) as ingest:
        ingest_runs(con, [path], detect=scan)
    assert check.value.row == ingest.value.row == row
    assert check.value.path == ingest.value.path == str(path)


def test_every_component_takes_the_record_from_the_wire_module() -> None:
    """No copy of the size limit or the anomaly kinds outside gpulens/wire.py."""
    copies = []
    for component in COMPONENTS:
        for path in (REPO / component).rglob("*.py"):
            text = path.read_text()
            if "MAX_DATAGRAM =" in text or '("nan", "spike", "divergence")' in text:
                copies.append(str(path.relative_to(REPO)))
    assert copies == []


def test_the_wire_module_imports_without_orjson_or_any_component() -> None:
    code = (
        "import sys; sys.modules['orjson'] = None\n"
        "import gpulens.wire as w\n"
        "assert w.encode({'kind': 'step', 'loss': float('nan')}) == b'{\"kind\":\"step\",\"loss\":null}'\n"
        "assert not any(m.startswith(('gpulens.collector', 'gpulens.attribution', 'gpulens.trainer'))"
        " for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
