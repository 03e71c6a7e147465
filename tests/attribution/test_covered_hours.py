"""GPU-seconds and waste are counted once per usage row, however many CUR lines cover the hour.

Ledger (billing period 2026-10, hour 2026-10-01 00:00-01:00, CUR 2.0, no team tags):
  i-sp  p4d.24xlarge (8 GPUs) covered by a Savings Plan: two lines for the same instance-hour
        SP1 SavingsPlanCoveredUsage  unblended 32.00, savings_plan_savings_plan_effective_cost 20.00 -> 20.00
        SP2 SavingsPlanNegation      unblended -32.00                                               ->  0.00
  usage on i-sp: team a gpus 0-3, 3600 s each, sm 0.5 (14400 s); team b gpu 4, 3600 s, sm 0.2
  capacity 8 x 3600 = 28800 GPU-seconds
        a: 20.00 x 14400 / 28800 = 10.00   waste 10.00 x (1 - 0.5) = 5.00
        b: 20.00 x  3600 / 28800 =  2.50   waste  2.50 x (1 - 0.2) = 2.00
        idle 20.00 - 12.50 = 7.50          (SP2 moves no money: 0 x anything)
  i-ri  p4d.24xlarge reserved: RI1 DiscountedUsage reservation_effective_cost 12.00, and a data-transfer
        line of the same instance DT1 Usage 0.40; usage: team a gpu 0, 3600 s, sm 0.75
        a: (12.00 + 0.40) x 3600 / 28800 = 1.55   waste 1.55 x 0.25 = 0.3875   idle 12.40 - 1.55 = 10.85
  totals: amortized 32.40; a shared 11.55, waste 5.3875, 18000 GPU-seconds (5 h); b shared 2.50, waste 2.00,
          3600 GPU-seconds (1 h); idle 18.35.
  Before the fix the allocations table held 36000 GPU-seconds for a (every covering line counted them).
  Billed view: SP1 + SP2 = 0, so b costs 0 and wastes 0 there; RI1 unblended 0.00 + DT1 0.40.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.allocate import store_allocations
from gpulens.attribution.flags import find_flags
from gpulens.attribution.warehouse import Warehouse
from tests.contract.support import CUR2_COLUMNS, USAGE_COLUMNS, cur_line, usage_row, write_csv

P4D = "p4d.24xlarge"
H0 = "2026-10-01 00:00:00"


@pytest.fixture
def covered(gpulens: Callable[..., int], tmp_path: Path) -> None:
    cur = write_csv(tmp_path / "covered.csv", CUR2_COLUMNS, [
        cur_line("SP1", "SavingsPlanCoveredUsage", "i-sp", "32.00", instance_type=P4D,
                 savings_plan_savings_plan_effective_cost="20.00"),
        cur_line("SP2", "SavingsPlanNegation", "i-sp", "-32.00", instance_type=P4D),
        cur_line("RI1", "DiscountedUsage", "i-ri", "0.00", instance_type=P4D,
                 reservation_effective_cost="12.00",
                 reservation_reservation_a_r_n="arn:aws:ec2:us-east-1:111111111111:reserved-instances/ri-1"),
        cur_line("DT1", "Usage", "i-ri", "0.40", product="AWSDataTransfer"),
    ])  # fmt: skip
    usage = write_csv(tmp_path / "usage.csv", USAGE_COLUMNS, [
        *(usage_row(H0, "n-sp", "i-sp", "c", g, "ja", "a", 3600, 0.5) for g in range(4)),
        usage_row(H0, "n-sp", "i-sp", "c", 4, "jb", "b", 3600, 0.2),
        usage_row(H0, "n-ri", "i-ri", "c", 0, "ja", "a", 3600, 0.75),
    ])  # fmt: skip
    assert gpulens("ingest", "cur", cur) == 0
    assert gpulens("ingest", "usage", usage) == 0


def test_covered_hours_count_gpu_seconds_once(covered: None, warehouse: Path) -> None:
    with Warehouse(warehouse).connect() as con:
        result = store_allocations(con, "2026-10")
        seconds = dict(
            con.execute(
                "SELECT team, sum(gpu_seconds) FROM allocations WHERE team IS NOT NULL GROUP BY team"
            ).fetchall()
        )
        per_resource = dict(
            con.execute(
                "SELECT resource_id, sum(gpu_seconds) FROM allocations GROUP BY resource_id"
            ).fetchall()
        )
        waste = dict(
            con.execute(
                "SELECT team, sum(waste) FROM allocations WHERE team IS NOT NULL GROUP BY team"
            ).fetchall()
        )
        flags = find_flags(con)
    teams = {t.team: t for t in result.teams}
    assert seconds == {"a": 18000.0, "b": 3600.0}
    assert per_resource["i-sp"] == 18000.0 and per_resource["i-ri"] == 3600.0
    assert (teams["a"].shared, teams["a"].waste, teams["a"].gpu_hours) == (
        Decimal("11.55"),
        Decimal("5.3875"),
        Decimal(5),
    )
    assert (teams["b"].shared, teams["b"].waste, teams["b"].gpu_hours) == (
        Decimal("2.50"),
        Decimal("2.00"),
        Decimal(1),
    )
    assert waste == {"a": Decimal("5.3875"), "b": Decimal("2.00")}
    assert (result.total, result.idle, result.unallocated) == (Decimal("32.40"), Decimal("18.35"), Decimal(0))
    # flags price the same GPU time the same way: b's GPU 4 is underutilized, wasting 2.00 (not 4.00)
    assert [(u.job_id, u.gpu, u.waste) for u in flags.underutilized] == [("jb", 4, Decimal("2.00"))]


def test_covered_hours_billed_view(covered: None, warehouse: Path) -> None:
    with Warehouse(warehouse).connect() as con:
        result = store_allocations(con, "2026-10", basis="billed")
        seconds = con.execute("SELECT sum(gpu_seconds) FROM allocations WHERE basis = 'billed'").fetchone()
    teams = {t.team: t for t in result.teams}
    assert seconds == (21600.0,)
    assert result.total == Decimal("0.40")
    assert (teams["b"].shared, teams["b"].waste) == (Decimal(0), Decimal(0))
    assert teams["a"].shared == Decimal("0.05")  # 0.40 x 3600 / 28800 of DT1


def test_usage_without_instance_id_leaves_shared_idle_whole(
    gpulens: Callable[..., int], tmp_path: Path, warehouse: Path
) -> None:
    """Ledger: i-od p4d On-Demand hour 8.00, untagged; team a holds GPUs 0-1 for the hour (7200 s).
    A usage row with no instance_id (team c) matches no cost line. With --idle share:
        a: 8.00 x 7200 / 28800 = 2.00 shared GPU + idle 6.00 spread over the instance's teams (only a) = 8.00
        idle 0.00; total 8.00. The NULL instance_id must not knock the idle rows out of the split.
    """
    cur = write_csv(
        tmp_path / "od.csv", CUR2_COLUMNS, [cur_line("OD1", "Usage", "i-od", "8.00", instance_type=P4D)]
    )
    usage = write_csv(tmp_path / "usage.csv", USAGE_COLUMNS, [
        *(usage_row(H0, "n-od", "i-od", "c", g, "ja", "a", 3600, 0.5) for g in range(2)),
        usage_row(H0, "n-x", "", "c", 0, "jc", "c", 3600, 0.5),
    ])  # fmt: skip
    assert gpulens("ingest", "cur", cur) == 0
    assert gpulens("ingest", "usage", usage) == 0
    with Warehouse(warehouse).connect() as con:
        result = store_allocations(con, "2026-10", idle="share")
    teams = {t.team: t for t in result.teams}
    assert (result.total, result.idle) == (Decimal("8.00"), Decimal(0))
    assert teams["a"].total == Decimal("8.00")
