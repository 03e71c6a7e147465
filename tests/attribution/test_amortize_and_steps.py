"""docs/design.md §6 amortization, row by row, and the allocation steps one at a time.

Amortization ledger (tests/fixtures/cur/build.py, CUR 2.0 and legacy spellings):
  SavingsPlanCoveredUsage  effective cost 20.00                 -> 20.00
  SavingsPlanRecurringFee  commitment 25.00 - used 20.00         -> 5.00
  SavingsPlanNegation      unblended -32.00                      -> 0
  SavingsPlanUpfrontFee    unblended 50.00                       -> 0
  DiscountedUsage          reservation effective cost 0.60       -> 0.60
  RIFee                    unused upfront 1.50 + recurring 0.50  -> 2.00
  Fee with reservation ARN unblended 100.00                      -> 0
  Fee (support)            unblended 5.00                        -> 5.00
  Usage / Tax / Credit     unblended 32.00 / 4.10 / -1.00        -> same
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from gpulens.attribution import allocate as alloc
from gpulens.attribution.ingest.legacy import snake
from gpulens.attribution.warehouse import Warehouse, schema_sql

from .conftest import LEDGER_FILES

EXPECTED = {
    ("SavingsPlanCoveredUsage", "i-shared"): Decimal("20.00"),
    ("SavingsPlanRecurringFee", "arn:aws:savingsplans::111111111111:savingsplan/sp-1"): Decimal("5.00"),
    ("SavingsPlanNegation", "i-shared"): Decimal("0"),
    ("SavingsPlanUpfrontFee", "arn:aws:savingsplans::111111111111:savingsplan/sp-1"): Decimal("0"),
    ("DiscountedUsage", "i-direct"): Decimal("0.60"),
    ("RIFee", "arn:aws:ec2:us-east-1:111111111111:reserved-instances/ri-1"): Decimal("2.00"),
    ("Fee", "arn:aws:ec2:us-east-1:111111111111:reserved-instances/ri-1"): Decimal("0"),
    ("Fee", None): Decimal("5.00"),
    ("Usage", "i-shared"): Decimal("32.00"),
    ("Tax", None): Decimal("4.10"),
    ("Credit", None): Decimal("-1.00"),
}


@pytest.mark.parametrize("flavour", ["cur2-csv", "cur2-parquet", "legacy-csv-gz"])
def test_every_row_of_the_amortization_table(
    flavour: str, gpulens: Callable[..., int], warehouse: Path
) -> None:
    assert gpulens("ingest", "cur", LEDGER_FILES[flavour]) == 0
    with Warehouse(warehouse).connect(read_only=True) as con:
        got = {
            (t, r): c
            for t, r, c in con.execute(
                "SELECT line_item_type, resource_id, amortized_cost FROM cost_line_items"
            ).fetchall()
        }
    for key, amortized in EXPECTED.items():
        assert got[key] == amortized, key


def test_legacy_headers_become_cur2_names() -> None:
    assert snake("lineItem/UnblendedCost") == "line_item_unblended_cost"
    assert snake("savingsPlan/SavingsPlanEffectiveCost") == "savings_plan_savings_plan_effective_cost"
    assert snake("reservation/ReservationARN") == "reservation_reservation_a_r_n"
    assert snake("bill/PayerAccountId") == "bill_payer_account_id"
    assert snake("product/instanceType") == "product_instance_type"


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    c.execute(schema_sql())  # line_hosts looks up capacity reservations in cost_line_items
    return c


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"user:team": " Search "}, "search"),
        ({"user_team": "SEARCH"}, "search"),
        ({"team": "search "}, "search"),
        ({"User:Team": "Search"}, "search"),
        ({"user:team": "  "}, None),
        ({"teams": "search"}, None),
        ({}, None),
    ],
)
def test_team_tag_spellings(
    con: duckdb.DuckDBPyConnection, tags: dict[str, str], expected: str | None
) -> None:
    keys, values = list(tags), list(tags.values())
    sql = alloc.tag_value_sql("CAST(map(?::VARCHAR[], ?::VARCHAR[]) AS MAP(VARCHAR, VARCHAR))", "team")
    assert con.execute(f"SELECT {sql}", [keys, values]).fetchone() == (expected,)


def test_telescoped_parts_sum_exactly(con: duckdb.DuckDBPyConnection) -> None:
    # 10.00 in three equal parts: 3.3333333333 + 3.3333333334 + 3.3333333333 = 10 exactly.
    parts = [
        con.execute(f"SELECT {alloc.telescoped('10.00::DECIMAL(38,10)', str(hi), str(lo))}").fetchone()[0]
        for lo, hi in [(0.0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.0)]
    ]
    assert sum(parts) == Decimal("10.00")
    assert all(abs(p - Decimal("3.3333333333")) <= Decimal("0.0000000001") for p in parts)


def _tables(con: duckdb.DuckDBPyConnection, lines: str, usage: str) -> None:
    con.execute(
        f"CREATE TEMP TABLE l AS SELECT *, resource_id AS resource_key, NULL::VARCHAR AS reservation, "
        f"false AS unused, 1.0 AS billed_instances FROM (VALUES {lines}) "
        "t(line_no, usage_start, usage_end, resource_id, instance_type, line_item_type, product_code, "
        "currency, "
        "team, cluster, cost, billed)"
    )
    con.execute(
        f"CREATE TEMP TABLE u AS SELECT *, instance_id AS host FROM (VALUES {usage}) "
        "t(hour, node, instance_id, cluster, gpu, "
        "gpu_uuid, model, job_id, team, gpu_seconds, sm_active, utilization, busy)"
    )


def test_gpu_count_falls_back_to_distinct_gpus_seen(con: duckdb.DuckDBPyConnection) -> None:
    # An unknown instance type with GPUs 0 and 1 seen -> 2 GPUs; p4d.24xlarge -> 8 from the table.
    ts = "TIMESTAMP '2026-10-01 00:00:00'"
    _tables(
        con,
        f"(1, {ts}, {ts} + INTERVAL 1 HOUR, 'i-x', 'x9.huge', 'Usage', 'AmazonEC2', 'USD', NULL, NULL, "
        "10.00::DECIMAL(38,10), 10.00::DECIMAL(38,10)), "
        f"(2, {ts}, {ts} + INTERVAL 1 HOUR, 'i-p', 'p4d.24xlarge', 'Usage', 'AmazonEC2', 'USD', NULL, NULL, "
        "10.00::DECIMAL(38,10), 10.00::DECIMAL(38,10))",
        f"({ts}, 'n', 'i-x', NULL, 0, 'g0', 'm', 'j', 'a', 3600.0, 1.0, NULL, 1.0), "
        f"({ts}, 'n', 'i-x', NULL, 1, 'g1', 'm', 'j', 'a', 3600.0, 1.0, NULL, 1.0), "
        f"({ts}, 'p', 'i-p', NULL, 0, 'p0', 'm', 'j', 'a', 3600.0, 1.0, NULL, 1.0)",
    )
    table = alloc.gpu_counts(con, "l", alloc.line_hosts(con, "l"), "u")
    gpus = dict(con.execute(f"SELECT * FROM {table}").fetchall())
    assert gpus == {1: 2, 2: 8}  # line 1 on i-x, line 2 on i-p


def test_usage_beyond_capacity_never_makes_idle_negative(con: duckdb.DuckDBPyConnection) -> None:
    # g5.xlarge has 1 GPU, but two jobs each report a full hour (MIG or a wrong count): 10.00 split 5/5,
    # idle 0.
    ts = "TIMESTAMP '2026-10-01 00:00:00'"
    _tables(
        con,
        f"(1, {ts}, {ts} + INTERVAL 1 HOUR, 'i-g', 'g5.xlarge', 'Usage', 'AmazonEC2', 'USD', NULL, NULL, "
        "10.00::DECIMAL(38,10), 10.00::DECIMAL(38,10))",
        f"({ts}, 'n', 'i-g', NULL, 0, 'g0', 'm', 'j1', 'a', 3600.0, 0.5, NULL, 0.5), "
        f"({ts}, 'n', 'i-g', NULL, 0, 'g0', 'm', 'j2', 'b', 3600.0, 1.0, NULL, 1.0)",
    )
    hosts = alloc.line_hosts(con, "l")
    gpus = alloc.gpu_counts(con, "l", hosts, "u")
    hours = alloc.gpu_line_hours(con, "l", gpus)
    rows = alloc.gpu_rows(con, hours, alloc.gpu_time_cost(con, hours, hosts, "u"))
    got = {
        (c, t): (m, w)
        for c, t, m, w in con.execute(
            f"SELECT category, team, sum(cost), sum(waste) FROM {rows} GROUP BY ALL"
        ).fetchall()
    }
    assert got == {
        ("shared_gpu", "a"): (Decimal("5.00"), Decimal("2.50")),
        ("shared_gpu", "b"): (Decimal("5.00"), Decimal("0")),
        ("idle", None): (Decimal("0"), Decimal("0")),
    }


def test_a_long_line_is_split_by_the_usage_inside_its_own_window(con: duckdb.DuckDBPyConnection) -> None:
    # A 4-hour line of 40.00 on a 1-GPU instance used 2 of the 4 hours by team a -> a 20.00, idle 20.00.
    ts = "TIMESTAMP '2026-10-01 00:00:00'"
    _tables(
        con,
        f"(1, {ts}, {ts} + INTERVAL 4 HOUR, 'i-g', 'g5.xlarge', 'Usage', 'AmazonEC2', 'USD', NULL, NULL, "
        "40.00::DECIMAL(38,10), 40.00::DECIMAL(38,10))",
        f"({ts} + INTERVAL 1 HOUR, 'n', 'i-g', NULL, 0, 'g0', 'm', 'j1', 'a', 3600.0, 1.0, NULL, 1.0), "
        f"({ts} + INTERVAL 2 HOUR, 'n', 'i-g', NULL, 0, 'g0', 'm', 'j1', 'a', 3600.0, 1.0, NULL, 1.0)",
    )
    hosts = alloc.line_hosts(con, "l")
    gpus = alloc.gpu_counts(con, "l", hosts, "u")
    hours = alloc.gpu_line_hours(con, "l", gpus)
    assert con.execute(f"SELECT count(*), sum(cost) FROM {hours}").fetchone() == (4, Decimal("40.00"))
    rows = alloc.gpu_rows(con, hours, alloc.gpu_time_cost(con, hours, hosts, "u"))
    got = dict(con.execute(f"SELECT category, sum(cost) FROM {rows} GROUP BY 1").fetchall())
    assert got == {"shared_gpu": Decimal("20.00"), "idle": Decimal("20.00")}


def test_an_instance_arn_matches_its_usage(con: duckdb.DuckDBPyConnection) -> None:
    # FOCUS exports may name an instance by ARN; usage rollups carry the bare id.
    arn = "'arn:aws:ec2:us-east-1:123456789012:instance/i-0abc'"
    assert con.execute(f"SELECT {alloc.resource_key_sql(arn)}").fetchone() == ("i-0abc",)
    assert con.execute(f"SELECT {alloc.resource_key_sql(repr('fs-1'))}").fetchone() == ("fs-1",)
