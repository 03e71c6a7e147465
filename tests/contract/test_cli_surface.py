"""docs/design.md §2: every command exists, answers --help with 0, bad usage 2, handled errors 1 + one
line."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.contract.support import gl, handled_error, write_csv, write_curve

TOP = (
    "agent",
    "ingest",
    "attribute",
    "flags",
    "runs",
    "explorer",
    "report",
    "dashboards",
    "rules",
    "remediate",
    "demo",
)


def test_every_spec_command_is_listed_in_top_level_help() -> None:
    out = gl("--help")
    assert out.returncode == 0
    for name in TOP:
        assert f" {name} " in out.stdout or f" {name}\n" in out.stdout, name


# Each documented option of docs/design.md §2, spelled as SPEC spells it, must appear in that command's help.
OPTIONS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("agent",): (
        "--backend",
        "--host",
        "--port",
        "--interval",
        "--socket",
        "--node",
        "--sim-gpus",
        "--sim-model",
        "--sim-seed",
    ),
    ("ingest",): (),
    ("ingest", "cur"): ("--warehouse",),
    ("ingest", "usage"): ("--prometheus", "--start", "--end", "--warehouse"),
    ("ingest", "runs"): ("--warehouse",),
    ("attribute",): (
        "--period",
        "--tag-key",
        "--cluster-tag-key",
        "--idle",
        "--cost",
        "--format",
        "--warehouse",
    ),
    ("flags",): ("--window", "--until", "--sm-threshold", "--format", "--warehouse"),
    ("runs",): (),
    ("runs", "check"): ("--format",),
    ("explorer",): ("--prometheus", "--host", "--port", "--warehouse"),
    ("report",): (),
    ("report", "weekly"): ("--week", "--out", "--warehouse"),
    ("dashboards",): (),
    ("dashboards", "build"): ("--out",),
    ("dashboards", "push"): ("--url", "--token", "--user", "--password"),
    ("rules",): (),
    ("rules", "build"): ("--out",),
    ("remediate",): (),
    ("remediate", "serve"): ("--policy", "--host", "--port", "--execute", "--audit-log"),
    ("demo",): ("--port",),
}


BAD_USAGE = (
    ("no-such-command",),
    ("attribute",),  # --period is required
    ("attribute", "--period", "2026-10", "--idle", "bogus"),
    ("attribute", "--period", "2026-10", "--cost", "bogus"),
    ("attribute", "--period", "2026-10", "--format", "xml"),
    ("flags", "--format", "xml"),
    ("runs", "check"),  # PATH is required
    ("ingest", "cur"),  # PATH... is required
    ("agent", "--backend", "bogus"),
    ("agent", "--sim-model", "bogus"),
    ("report", "weekly", "--out", "x"),  # --week is required
)


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """Every --help and bad-usage invocation, run a few at a time (each is a fresh interpreter)."""
    argvs = [(*a, "--help") for a in OPTIONS] + list(BAD_USAGE)
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(argvs, pool.map(lambda a: gl(*a), argvs), strict=True))


@pytest.mark.parametrize("argv", list(OPTIONS), ids=" ".join)
def test_help_exits_zero_and_lists_documented_options(
    argv: tuple[str, ...], runs: dict[tuple[str, ...], subprocess.CompletedProcess[str]]
) -> None:
    out = runs[(*argv, "--help")]
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout
    missing = [opt for opt in OPTIONS[argv] if opt not in out.stdout]
    assert not missing, f"gpulens {' '.join(argv)}: missing {missing}"


@pytest.mark.parametrize("argv", BAD_USAGE, ids=" ".join)
def test_bad_usage_exits_two(
    argv: tuple[str, ...], runs: dict[tuple[str, ...], subprocess.CompletedProcess[str]]
) -> None:
    assert runs[argv].returncode == 2, runs[argv].stderr


def test_ingest_cur_missing_file_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope-cur.csv"
    handled_error(gl("ingest", "cur", missing), "nope-cur.csv")


def test_ingest_cur_malformed_number_names_file_row_and_column(tmp_path: Path) -> None:
    from tests.contract.ledger import cur_rows
    from tests.contract.support import CUR2_COLUMNS

    rows = cur_rows()
    rows[2]["line_item_unblended_cost"] = "abc"  # data row 3
    bad = write_csv(tmp_path / "bad-cur.csv", CUR2_COLUMNS, rows)
    line = handled_error(gl("ingest", "cur", bad), "bad-cur.csv", "line_item_unblended_cost")
    # rows are counted from the first data row (the header is not a row), as `runs check` counts them
    assert re.search(r"\brow 3\b", line.removeprefix(f"gpulens ingest: error: {bad}")), line
    assert "'abc'" in line


def test_ingest_usage_missing_file(tmp_path: Path) -> None:
    handled_error(gl("ingest", "usage", tmp_path / "no-usage.csv"), "no-usage.csv")


def test_ingest_runs_missing_file(tmp_path: Path) -> None:
    handled_error(gl("ingest", "runs", tmp_path / "no-run.csv"), "no-run.csv")


def test_runs_check_missing_file(tmp_path: Path) -> None:
    handled_error(gl("runs", "check", tmp_path / "no-curve.csv"), "no-curve.csv")


def test_runs_check_bad_loss_names_file_and_row(tmp_path: Path) -> None:
    curve = write_curve(tmp_path / "bad-curve.csv", [2.0, 2.0, "abc", 2.0])
    line = handled_error(gl("runs", "check", curve), "bad-curve.csv")
    assert line.endswith(f"{curve}: row 3, column loss: 'abc' is not a number"), line


def test_attribute_bad_period_is_handled(tmp_path: Path) -> None:
    from gpulens.attribution.warehouse import Warehouse

    warehouse = tmp_path / "w.duckdb"
    with Warehouse(warehouse).connect(read_only=False):
        pass  # an existing, empty warehouse: only the period is at fault
    out = gl("attribute", "--period", "October", "--warehouse", warehouse)
    handled_error(out, "period", "'October'", "YYYY-MM")


def test_ingest_cur_empty_directory_names_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty-delivery"
    empty.mkdir()
    handled_error(gl("ingest", "cur", empty), "empty-delivery")


def test_same_bad_row_is_named_alike_by_ingest_runs_and_runs_check(tmp_path: Path) -> None:
    # One file, one bad cell: both commands must point at the same row.
    curve = write_curve(tmp_path / "curve.csv", [2.0, 2.0, "x", 2.0])
    check_line = handled_error(gl("runs", "check", curve), "curve.csv", "loss")
    ingest_line = handled_error(
        gl("ingest", "runs", curve, "--warehouse", tmp_path / "w.duckdb"), "curve.csv", "loss"
    )
    import re

    rows = [re.search(r"row (\d+)", line) for line in (check_line, ingest_line)]
    assert all(rows), (check_line, ingest_line)
    assert rows[0].group(1) == rows[1].group(1), (check_line, ingest_line)  # type: ignore[union-attr]


def test_busy_port_is_a_handled_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        argvs = (
            ("agent", "--backend", "sim", "--port", port, "--socket", tmp_path / "a.sock"),
            ("explorer", "--port", port, "--create", "--warehouse", tmp_path / "w.duckdb"),
            ("remediate", "serve", "--port", port, "--audit-log", tmp_path / "a.jsonl"),
        )
        with ThreadPoolExecutor(max_workers=3) as pool:
            for out in pool.map(lambda a: gl(*a), argvs):
                handled_error(out, port)


def test_building_the_cli_imports_no_heavy_library() -> None:
    # Every `gpulens` invocation builds the whole parser; a command module that imports its client
    # library at the top (niquests for Grafana cost 0.3 s) slows every other command, --help included.
    import sys

    heavy = (
        "niquests",
        "grafana_client",
        "duckdb",
        "dash",
        "torch",
        "boto3",
        "pandas",
        "numpy",
        "reportlab",
        "xlsxwriter",
        "kubernetes",
    )
    code = (
        "import sys, gpulens.cli; gpulens.cli.build_parser(); "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported while building the parser: {out.stdout.strip()}"
