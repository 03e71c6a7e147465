"""`gpulens prices`: the price of a GPU-second per instance type and team, as Prometheus rules (the
input that lets Grafana show money). A ledger: every figure below is worked out by hand."""

from __future__ import annotations

import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from gpulens.attribution.prices import GpuPrice, gpu_prices
from gpulens.attribution.warehouse import Warehouse
from gpulens.dashboards.rules.prices import PRICE_METRIC, render
from tests.support.servers import gpulens_exe

LINE = (
    "INSERT INTO cost_line_items (billing_period, payer_account_id, usage_start, usage_end, "
    "line_item_type, resource_id, instance_type, usage_amount, unblended_cost, amortized_cost, currency, "
    "source, ingested_at) "
    "VALUES ('2026-10', '111', '2026-10-01', '2026-10-02', ?, ?, ?, ?, ?, ?, 'USD', 'test', '2026-11-01')"
)
ALLOCATION = (
    "INSERT INTO allocations (period, basis, day, team, category, job_id, resource_id, cost, gpu_seconds, "
    "currency, computed_at) "
    "VALUES ('2026-10', 'amortized', '2026-10-01', ?, ?, ?, ?, ?, ?, 'USD', '2026-11-01')"
)


@pytest.fixture()
def warehouse(tmp_path: Path) -> Path:
    """Two p4d.24xlarge (8 GPUs each), i-a shared by search and vision, i-b tagged search.
    CUR, amortized: i-a Usage 10 h $320; i-b SavingsPlanCoveredUsage 10 h $240; an RIFee of $99 (no
    usage of its own: not part of the instance type's usage price).
    Allocations: search shared on i-a $100 for 36,000 GPU-s; search direct on i-b $50 with no job (0 GPU-s)
    and $30 for its job's 18,000 GPU-s; vision shared on i-a $40 for 7,200 GPU-s; idle on i-a $130."""
    path = tmp_path / "w.duckdb"
    with Warehouse(path).connect() as con:
        for row in (
            ("Usage", "i-a", "p4d.24xlarge", 10.0, 320, 320),
            ("SavingsPlanCoveredUsage", "i-b", "p4d.24xlarge", 10.0, 400, 240),
            ("RIFee", "arn:ri", "p4d.24xlarge", 744.0, 99, 99),
        ):
            con.execute(LINE, list(row))
        for row in (
            ("search", "shared_gpu", "job-1", "i-a", 100, 36000.0),
            ("search", "direct", None, "i-b", 50, 0.0),
            ("search", "direct", "job-2", "i-b", 30, 18000.0),
            ("vision", "shared_gpu", "job-3", "i-a", 40, 7200.0),
            (None, "idle", None, "i-a", 130, 0.0),
        ):
            con.execute(ALLOCATION, list(row))
    return path


def test_prices_per_instance_type_and_team(warehouse: Path) -> None:
    """Instance type (team ""): ($320 + $240) / (20 instance-hours x 8 GPUs x 3600 s) = 560 / 576,000.
    search: ($100 + $50 + $30) / (36,000 + 18,000) GPU-s = 180 / 54,000 (what it paid per GPU-second it
    held, its tagged instance's idle time included). vision: $40 / 7,200 GPU-s."""
    with Warehouse(warehouse).connect(read_only=True) as con:
        prices = gpu_prices(con, "2026-10")
    assert prices == (
        GpuPrice("p4d.24xlarge", "", "USD", Decimal(560) / Decimal(576000)),
        GpuPrice("p4d.24xlarge", "search", "USD", Decimal(180) / Decimal(54000)),
        GpuPrice("p4d.24xlarge", "vision", "USD", Decimal(40) / Decimal(7200)),
    )
    assert round(prices[1].per_gpu_second * 3600, 2) == Decimal("12.00")  # $12 per GPU-hour


def test_rule_file_is_constant_recording_rules_promtool_accepts(warehouse: Path, tmp_path: Path) -> None:
    with Warehouse(warehouse).connect(read_only=True) as con:
        text = render(gpu_prices(con, "2026-10"), "2026-10", "amortized")
    [group] = yaml.safe_load(text)["groups"]
    rules = {r["labels"]["team"]: r for r in group["rules"]}
    assert {r["record"] for r in group["rules"]} == {PRICE_METRIC}
    assert rules["search"]["expr"] == "vector(0.00333333333333)"
    assert rules["search"]["labels"] == {"instance_type": "p4d.24xlarge", "team": "search", "currency": "USD"}
    if shutil.which("promtool"):
        path = tmp_path / "prices.yaml"
        path.write_text(text)
        done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_cli_writes_the_file_and_refuses_an_unallocated_period(warehouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "rules"
    args = [gpulens_exe(), "prices", "--warehouse", str(warehouse), "--out", str(out)]
    done = subprocess.run([*args, "--period", "2026-10"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out / "gpulens-prices.yaml")
    assert "gpulens prices --period 2026-10" in (out / "gpulens-prices.yaml").read_text()
    missing = subprocess.run([*args, "--period", "2026-09"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "gpulens attribute --period 2026-09" in missing.stderr
    bad = subprocess.run([*args, "--period", "2026-13"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "YYYY-MM" in bad.stderr
