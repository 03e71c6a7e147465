"""The CronJobs' shell scripts, run by /bin/sh here exactly as rendered: they compute the time window (the
last complete hour, the previous ISO week) at run time and hand `gpulens` the docs/design.md §2 arguments.

`gpulens` on PATH is replaced by a recorder that writes its argv, one per line: what is under test is the
chart's shell and quoting, not the commands themselves (their own suites test those)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest

from tests.helm.chart import one, pod_spec, rendered

RECORDER = '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$ARGV_OUT"\n'


def run_script(component: str, tmp_path: Path) -> list[str]:
    (container,) = pod_spec(one(rendered("all-features"), "CronJob", component))["containers"]
    assert container["command"] == ["/bin/sh", "-ec"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gpulens").write_text(RECORDER)
    (bin_dir / "gpulens").chmod(0o755)
    out = tmp_path / "argv"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGV_OUT": str(out)}
    subprocess.run(["/bin/sh", "-ec", container["args"][0]], env=env, check=True, timeout=30)
    return out.read_text().splitlines()


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_usage_rollup_loads_the_last_complete_hour(tmp_path: Path) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    argv = run_script("ingest-usage", tmp_path)
    assert argv[:2] == ["ingest", "usage"]
    assert option(argv, "--prometheus") == "http://kube-prometheus-stack-prometheus.monitoring:9090"
    assert option(argv, "--warehouse") == "/var/lib/gpulens/gpulens.duckdb"
    start = dt.datetime.strptime(option(argv, "--start"), "%Y-%m-%dT%H:%M:%S%z")
    end = dt.datetime.strptime(option(argv, "--end"), "%Y-%m-%dT%H:%M:%S%z")
    assert end - start == dt.timedelta(hours=1)
    assert start.minute == start.second == 0
    assert end <= dt.datetime.now(dt.timezone.utc) and before - end < dt.timedelta(hours=1)


def test_weekly_report_covers_the_previous_iso_week(tmp_path: Path) -> None:
    argv = run_script("weekly-report", tmp_path)
    assert argv[:2] == ["report", "weekly"]
    assert option(argv, "--out") == "s3://corp-finance-reports/gpulens/"
    year, week, _ = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=7)).isocalendar()
    assert option(argv, "--week") == f"{year}-W{week:02d}"


def test_cur_ingest_passes_every_source(tmp_path: Path) -> None:
    argv = run_script("ingest-cur", tmp_path)
    assert argv == [
        "ingest",
        "cur",
        "--warehouse",
        "/var/lib/gpulens/gpulens.duckdb",
        "s3://corp-billing/cur2/gpulens-export/data/",
    ]


@pytest.mark.parametrize("component", ["ingest-cur", "ingest-usage", "weekly-report"])
def test_a_failing_command_fails_the_job(component: str, tmp_path: Path) -> None:
    (container,) = pod_spec(one(rendered("all-features"), "CronJob", component))["containers"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gpulens").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "gpulens").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run(["/bin/sh", "-ec", container["args"][0]], env=env, timeout=30)
    assert out.returncode == 1


@pytest.mark.parametrize("gpulens_rc, published", [(0, True), (1, False)])
def test_s3_mode_publishes_the_warehouse_only_after_success(
    gpulens_rc: int, published: bool, tmp_path: Path
) -> None:
    (container,) = pod_spec(one(rendered("s3-warehouse"), "CronJob", "ingest-cur"))["containers"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gpulens").write_text(f"#!/bin/sh\nexit {gpulens_rc}\n")
    (bin_dir / "python").write_text(RECORDER)
    for exe in bin_dir.iterdir():
        exe.chmod(0o755)
    out = tmp_path / "argv"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGV_OUT": str(out)}
    rc = subprocess.run(["/bin/sh", "-ec", container["args"][0]], env=env, timeout=30).returncode
    assert rc == gpulens_rc and out.exists() == published
    if published:
        assert out.read_text().splitlines() == [
            "/opt/gpulens/scripts/warehouse_sync.py",
            "publish",
            "/var/lib/gpulens/gpulens.duckdb",
            "s3://corp-gpulens/warehouse/gpulens.duckdb",
        ]
