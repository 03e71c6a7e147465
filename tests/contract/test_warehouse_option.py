"""docs/design.md §2: `--warehouse FILE` after the subcommand, anywhere among its arguments; else
$GPULENS_WAREHOUSE; else ./gpulens.duckdb in the working directory."""

from __future__ import annotations

from pathlib import Path

from tests.contract.ledger import TOTAL, write_cur
from tests.contract.support import as_json, gl, ok


def _total(*argv: object, **kw: object) -> float:
    return as_json(gl("attribute", *argv, "--format", "json", **kw))["total"]  # type: ignore[arg-type]


def test_warehouse_option_before_and_after_positionals(tmp_path: Path) -> None:
    cur = write_cur(tmp_path / "cur.csv")
    first, second = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    ok(gl("ingest", "cur", "--warehouse", first, cur))
    ok(gl("ingest", "cur", cur, "--warehouse", second))
    assert first.exists() and second.exists()
    assert not (tmp_path / "default.duckdb").exists()  # conftest's $GPULENS_WAREHOUSE untouched
    assert _total("--warehouse", first, "--period", "2026-10") == float(TOTAL)
    assert _total("--period", "2026-10", "--warehouse", second) == float(TOTAL)


def test_environment_then_cwd_default(tmp_path: Path) -> None:
    cur = write_cur(tmp_path / "cur.csv")
    env_wh = tmp_path / "env.duckdb"
    ok(gl("ingest", "cur", cur, env={"GPULENS_WAREHOUSE": str(env_wh)}))
    assert env_wh.exists()
    cwd = tmp_path / "work"
    cwd.mkdir()
    ok(gl("ingest", "cur", cur, cwd=cwd, env={"GPULENS_WAREHOUSE": ""}))
    assert (cwd / "gpulens.duckdb").exists()
    assert _total("--period", "2026-10", cwd=cwd, env={"GPULENS_WAREHOUSE": ""}) == float(TOTAL)


def test_flag_beats_environment(tmp_path: Path) -> None:
    cur = write_cur(tmp_path / "cur.csv")
    flag_wh, env_wh = tmp_path / "flag.duckdb", tmp_path / "env.duckdb"
    ok(gl("ingest", "cur", cur, "--warehouse", flag_wh, env={"GPULENS_WAREHOUSE": str(env_wh)}))
    assert flag_wh.exists() and not env_wh.exists()


def test_warehouse_option_between_several_paths(tmp_path: Path) -> None:
    # "anywhere among its arguments": between two PATHs too (argparse needs intermixed parsing for this).
    from tests.contract.ledger import write_usage
    from tests.contract.support import OTHER_PAYER

    first = write_cur(tmp_path / "payer-a.csv")
    second = write_cur(tmp_path / "payer-b.csv", payer=OTHER_PAYER)
    wh = tmp_path / "mid.duckdb"
    ok(gl("ingest", "cur", first, "--warehouse", wh, second))
    assert _total("--period", "2026-10", "--warehouse", wh) == float(2 * TOTAL)
    usage = write_usage(tmp_path / "usage.csv")
    ok(gl("ingest", "usage", usage, "--warehouse", wh, usage))
    run = tmp_path / "run.csv"
    run.write_text("step,loss\n0,2.0\n1,2.0\n")
    ok(gl("ingest", "runs", run, "--warehouse", wh, run))
