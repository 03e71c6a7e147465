"""docs/design.md §2 JSON shape, §5 restatement, §6 semantics — against the ledger in
tests/contract/ledger.py.

Scenarios are numbered in the ledger's terms; expected values are Decimal literals computed by hand.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.contract import ledger
from tests.contract.support import (
    CUR2_COLUMNS,
    OTHER_PAYER,
    USAGE_COLUMNS,
    cur_line,
    gl,
    handled_error,
    ok,
    usage_row,
    write_csv,
)

CENT = Decimal("0.01")
TEAM_KEYS = {"team", "direct", "shared", "total", "gpu_hours", "waste"}
TOP_KEYS = {"period", "currency", "total", "billed_total", "teams", "idle", "unallocated"}


def attribute(wh: Path, *extra: str) -> dict:
    out = ok(gl("attribute", "--period", "2026-10", "--format", "json", *extra, "--warehouse", wh))
    return json.loads(out.stdout, parse_float=Decimal, parse_int=Decimal)


def teams(doc: dict) -> dict[str, dict]:
    return {t["team"]: t for t in doc["teams"]}


def assert_invariant(doc: dict) -> None:
    parts = sum((t["total"] for t in doc["teams"]), Decimal(0)) + doc["idle"] + doc["unallocated"]
    assert abs(parts - doc["total"]) < CENT, (parts, doc["total"])


def test_1_json_shape_and_types(warehouse: Path) -> None:
    out = ok(gl("attribute", "--period", "2026-10", "--format", "json", "--warehouse", warehouse))
    doc = json.loads(out.stdout)
    assert set(doc) == TOP_KEYS
    assert doc["period"] == "2026-10" and doc["currency"] == "USD"
    for key in ("total", "billed_total", "idle", "unallocated"):
        assert isinstance(doc[key], (int, float)) and not isinstance(doc[key], bool), key
    assert doc["teams"]
    for team in doc["teams"]:
        assert set(team) == TEAM_KEYS
        assert isinstance(team["team"], str)
        for key in TEAM_KEYS - {"team"}:
            assert isinstance(team[key], (int, float)) and not isinstance(team[key], bool), key


def test_2_amortized_ledger_to_the_cent(warehouse: Path) -> None:
    doc = attribute(warehouse)
    assert doc["total"] == ledger.TOTAL
    assert doc["billed_total"] == ledger.BILLED_TOTAL
    assert doc["idle"] == ledger.IDLE
    assert doc["unallocated"] == ledger.UNALLOCATED
    by_team = teams(doc)
    # §6 tag normalization: " ML "/"ML"/"ml" and "Search"/" Search "/"search " under team, user_team,
    # user:team are one team each, reported trimmed and lower-cased.
    assert set(by_team) == {"search", "ml"}
    for name, expected in (("search", ledger.SEARCH), ("ml", ledger.ML)):
        for key, value in expected.items():
            assert by_team[name][key] == value, (name, key, by_team[name][key], value)
    assert_invariant(doc)


def test_3_idle_share(warehouse: Path) -> None:
    doc = attribute(warehouse, "--idle", "share")
    by_team = teams(doc)
    assert doc["idle"] == 0
    assert by_team["search"]["total"] == Decimal("38.60")
    assert by_team["ml"]["total"] == Decimal("9.40")
    assert doc["total"] == ledger.TOTAL and doc["unallocated"] == ledger.UNALLOCATED
    assert_invariant(doc)


def test_4_cost_billed(warehouse: Path) -> None:
    doc = attribute(warehouse, "--cost", "billed")
    by_team = teams(doc)
    assert doc["total"] == Decimal("85.50") and doc["billed_total"] == Decimal("85.50")
    assert by_team["ml"]["direct"] == Decimal("1.50")
    assert by_team["ml"]["total"] == Decimal("7.50")
    assert by_team["search"]["total"] == Decimal("29.00")
    assert doc["idle"] == Decimal("12.00")
    assert doc["unallocated"] == Decimal("37.00")
    assert_invariant(doc)


def test_5_restatement_same_payer_replaces(tmp_path: Path, warehouse: Path) -> None:
    # AWS restates the month under a new file name: L1 becomes 40.00 (+8.00).
    restated = ledger.write_cur(tmp_path / "restated-part-00001.csv", l1_cost="40.00")
    ok(gl("ingest", "cur", restated, "--warehouse", warehouse))
    doc = attribute(warehouse)
    assert doc["total"] == Decimal("73.00")  # not 65 + 73
    assert teams(doc)["search"]["total"] == Decimal("29.00") + Decimal("4.00")  # 20.00 of L1's 40
    assert_invariant(doc)


def test_6_other_payer_adds(tmp_path: Path, warehouse: Path) -> None:
    other = write_csv(
        tmp_path / "other-payer.csv",
        CUR2_COLUMNS,
        [
            cur_line(
                "P1",
                "Usage",
                "bucket-other",
                "4.25",
                payer=OTHER_PAYER,
                product="AmazonS3",
                tags={"user_team": "Search"},
            ),
        ],
    )
    ok(gl("ingest", "cur", other, "--warehouse", warehouse))
    doc = attribute(warehouse)
    assert doc["total"] == Decimal("69.25")
    assert teams(doc)["search"]["direct"] == Decimal("9.25")
    ok(gl("ingest", "cur", other, "--warehouse", warehouse))  # the same delivery again
    assert attribute(warehouse)["total"] == Decimal("69.25")


def test_7_failed_delivery_changes_nothing(tmp_path: Path, warehouse: Path) -> None:
    good = ledger.write_cur(tmp_path / "good.csv", l1_cost="99.00")
    rows = ledger.cur_rows()
    rows[4]["line_item_unblended_cost"] = "not-a-number"
    bad = write_csv(tmp_path / "broken.csv", CUR2_COLUMNS, rows)
    handled_error(gl("ingest", "cur", good, bad, "--warehouse", warehouse), "broken.csv")
    assert attribute(warehouse)["total"] == ledger.TOTAL


def test_8_tag_key_option(tmp_path: Path) -> None:
    # --tag-key owner: `owner`, `user:owner`, `user_owner` all match; `team` tags are then ignored.
    wh = tmp_path / "owner.duckdb"
    cur = write_csv(
        tmp_path / "owner.csv",
        CUR2_COLUMNS,
        [
            cur_line("O1", "Usage", "r-1", "1.00", tags={"user_owner": " Alice"}),
            cur_line("O2", "Usage", "r-2", "2.00", tags={"user:owner": "ALICE "}),
            cur_line("O3", "Usage", "r-3", "4.00", tags={"owner": "bob"}),
            cur_line("O4", "Usage", "r-4", "8.00", tags={"user_team": "carol"}),
        ],
    )
    ok(gl("ingest", "cur", cur, "--warehouse", wh))
    doc = attribute(wh, "--tag-key", "owner")
    by_team = teams(doc)
    assert set(by_team) == {"alice", "bob"}
    assert by_team["alice"]["direct"] == Decimal("3.00")
    assert by_team["bob"]["direct"] == Decimal("4.00")
    assert doc["unallocated"] == Decimal("8.00")
    assert_invariant(doc)


@pytest.mark.parametrize("flavour", ["legacy", "focus"])
def test_9_same_ledger_in_other_flavours(tmp_path: Path, flavour: str) -> None:
    wh = tmp_path / f"{flavour}.duckdb"
    if flavour == "legacy":
        cur = ledger.write_legacy_gz(tmp_path / "legacy-00001.csv.gz")
    else:
        cur = ledger.write_focus(tmp_path / "focus-00001.csv")
    ok(gl("ingest", "cur", cur, "--warehouse", wh))
    ok(gl("ingest", "usage", ledger.write_usage(tmp_path / "usage.csv"), "--warehouse", wh))
    doc = attribute(wh)
    assert doc["total"] == ledger.TOTAL and doc["billed_total"] == ledger.BILLED_TOTAL
    assert doc["idle"] == ledger.IDLE and doc["unallocated"] == ledger.UNALLOCATED
    by_team = teams(doc)
    assert set(by_team) == {"search", "ml"}
    for name, expected in (("search", ledger.SEARCH), ("ml", ledger.ML)):
        for key, value in expected.items():
            assert by_team[name][key] == value, (flavour, name, key, by_team[name][key], value)
    # §5: restated under another name, same period and payer: replaced, not added.
    again = (
        ledger.write_legacy_gz(tmp_path / "legacy-restated.csv.gz")
        if flavour == "legacy"
        else ledger.write_focus(tmp_path / "focus-restated.csv")
    )
    ok(gl("ingest", "cur", again, "--warehouse", wh))
    assert attribute(wh)["total"] == ledger.TOTAL


def test_10_money_is_not_rounded_before_summing(tmp_path: Path) -> None:
    # FSx 10.00 tagged cluster c9, three teams with 3600 GPU-seconds each there -> 10/3 each.
    wh = tmp_path / "thirds.duckdb"
    cur = write_csv(
        tmp_path / "thirds.csv",
        CUR2_COLUMNS,
        [cur_line("T1", "Usage", "fs-9", "10.00", product="AmazonFSx", tags={"user_cluster": "c9"})],
    )
    usage = write_csv(
        tmp_path / "u.csv",
        USAGE_COLUMNS,
        [
            usage_row("2026-10-01 00:00:00", "node-9", "i-9", "c9", g, f"j{g}", t, 3600, 0.9)
            for g, t in enumerate(("a", "b", "c"))
        ],
    )
    ok(gl("ingest", "cur", cur, "--warehouse", wh))
    ok(gl("ingest", "usage", usage, "--warehouse", wh))
    doc = attribute(wh)
    by_team = teams(doc)
    assert set(by_team) == {"a", "b", "c"}
    for t in by_team.values():
        assert abs(t["shared"] - Decimal(10) / 3) < Decimal("0.000001"), t  # 3.3333..., not 3.33
    assert_invariant(doc)


def test_11_gpu_count_fallback_and_line_window(tmp_path: Path) -> None:
    # P1 i-weird, type x9.weird (not in the table), 00:00-01:00, 10.00; GPUs 0 and 1 seen in the period
    #    -> gpus_on_instance 2; team a holds gpu 0 for 3600 s, sm 0.9 -> 10*3600/(2*3600) = 5.00, waste 0.50
    # P2 i-long p4d.24xlarge (8), 00:00-02:00, 20.00; team b holds gpu 0 3600 s in the first hour only
    #    -> 20*3600/(8*7200) = 1.25, waste 0.125
    # idle = 5.00 + 18.75 = 23.75; total 30.00
    wh = tmp_path / "w.duckdb"
    cur = write_csv(
        tmp_path / "c.csv",
        CUR2_COLUMNS,
        [
            cur_line("P1", "Usage", "i-weird", "10.00", instance_type="x9.weird"),
            cur_line(
                "P2",
                "Usage",
                "i-long",
                "20.00",
                instance_type="p4d.24xlarge",
                end="2026-10-01T02:00:00Z",
                line_item_usage_amount="2",  # §6: capacity = billed instance-hours (2 h), not the row's 1
            ),
        ],
    )
    h0, h1 = "2026-10-01 00:00:00", "2026-10-01 01:00:00"
    usage = write_csv(
        tmp_path / "u.csv",
        USAGE_COLUMNS,
        [
            usage_row(h0, "nw", "i-weird", "k", 0, "ja", "a", 3600, 0.9),
            usage_row(h1, "nw", "i-weird", "k", 1, "ja2", "a", 0, 0.9),
            usage_row(h0, "nl", "i-long", "k", 0, "jb", "b", 3600, 0.9),
        ],
    )
    ok(gl("ingest", "cur", cur, "--warehouse", wh))
    ok(gl("ingest", "usage", usage, "--warehouse", wh))
    doc = attribute(wh)
    by_team = teams(doc)
    assert (by_team["a"]["shared"], by_team["a"]["waste"]) == (Decimal("5.00"), Decimal("0.50"))
    assert (by_team["b"]["shared"], by_team["b"]["waste"]) == (Decimal("1.25"), Decimal("0.125"))
    assert doc["idle"] == Decimal("23.75") and doc["total"] == Decimal("30.00")
    assert_invariant(doc)


def test_12_amortization_table(tmp_path: Path) -> None:
    # docs/design.md §6 amortized cost per line type (unblended in brackets), all tagged team "fin" -> direct:
    #   A1 DiscountedUsage          reservation_effective_cost 0.60                        [0.00]
    #   A2 RIFee                    unused upfront 1.50 + unused recurring 0.50 = 2.00     [10.00]
    #   A3 Fee with reservation ARN 0                                                      [100.00]
    #   A4 SavingsPlanNegation      0                                                      [-32.00]
    #   A5 SavingsPlanUpfrontFee    0                                                      [50.00]
    #   A6 Credit                   unblended -4.00                                        [-4.00]
    #   A7 SavingsPlanCoveredUsage  savings_plan_savings_plan_effective_cost 20.00         [32.00]
    # amortized total 0.60 + 2.00 + 0 + 0 + 0 - 4.00 + 20.00 = 18.60; billed 156.00
    ri = "arn:aws:ec2:us-east-1:111111111111:reserved-instances/ri-1"
    tag = {"user_team": "Fin"}
    wh = tmp_path / "a.duckdb"
    cur = write_csv(
        tmp_path / "amort.csv",
        CUR2_COLUMNS,
        [
            cur_line(
                "A1",
                "DiscountedUsage",
                "i-ri",
                "0.00",
                tags=tag,
                reservation_effective_cost="0.60",
                reservation_reservation_a_r_n=ri,
            ),
            cur_line(
                "A2",
                "RIFee",
                ri,
                "10.00",
                tags=tag,
                reservation_reservation_a_r_n=ri,
                reservation_unused_amortized_upfront_fee_for_billing_period="1.50",
                reservation_unused_recurring_fee="0.50",
            ),
            cur_line("A3", "Fee", ri, "100.00", tags=tag, reservation_reservation_a_r_n=ri),
            cur_line("A4", "SavingsPlanNegation", "i-sp", "-32.00", tags=tag),
            cur_line("A5", "SavingsPlanUpfrontFee", "sp-1", "50.00", tags=tag),
            cur_line("A6", "Credit", "", "-4.00", tags=tag),
            cur_line(
                "A7",
                "SavingsPlanCoveredUsage",
                "i-sp",
                "32.00",
                tags=tag,
                savings_plan_savings_plan_effective_cost="20.00",
            ),
        ],
    )
    ok(gl("ingest", "cur", cur, "--warehouse", wh))
    doc = attribute(wh)
    assert doc["total"] == Decimal("18.60") and doc["billed_total"] == Decimal("156.00")
    assert teams(doc)["fin"]["direct"] == Decimal("18.60")
    assert_invariant(doc)


def test_13_cluster_tag_values_are_normalized(tmp_path: Path) -> None:
    # FSx 6.00 tagged user_cluster " C7 "; usage rollups say cluster "c7": teams x (3600 s), y (7200 s)
    # -> x 2.00, y 4.00; nothing unallocated.
    wh = tmp_path / "c.duckdb"
    cur = write_csv(
        tmp_path / "c.csv",
        CUR2_COLUMNS,
        [cur_line("C1", "Usage", "fs-7", "6.00", product="AmazonFSx", tags={"user_cluster": " C7 "})],
    )
    usage = write_csv(
        tmp_path / "u.csv",
        USAGE_COLUMNS,
        [
            usage_row("2026-10-01 00:00:00", "n7", "i-7", "c7", 0, "jx", "x", 3600, 0.9),
            usage_row("2026-10-01 00:00:00", "n7", "i-7", "c7", 1, "jy", "y", 3600, 0.9),
            usage_row("2026-10-01 01:00:00", "n7", "i-7", "c7", 1, "jy", "y", 3600, 0.9),
        ],
    )
    ok(gl("ingest", "cur", cur, "--warehouse", wh))
    ok(gl("ingest", "usage", usage, "--warehouse", wh))
    doc = attribute(wh)
    by_team = teams(doc)
    assert by_team["x"]["shared"] == Decimal("2.00") and by_team["y"]["shared"] == Decimal("4.00")
    assert doc["unallocated"] == 0
    assert_invariant(doc)


def test_14_parts_of_one_delivery_add_up(tmp_path: Path) -> None:
    # §5: one invocation is one delivery; its parts (same period and payer) are kept together, then a
    # second delivery of part 1 only replaces both: L1-L4 = 32 + 1 + 3 + 10 = 46.00, L5-L8 = 5 + 7 + 5 + 2 =
    # 19.00.
    rows = ledger.cur_rows()
    part1 = write_csv(tmp_path / "part-00001.csv", CUR2_COLUMNS, rows[:4])
    part2 = write_csv(tmp_path / "part-00002.csv", CUR2_COLUMNS, rows[4:])
    wh = tmp_path / "parts.duckdb"
    ok(gl("ingest", "cur", part1, part2, "--warehouse", wh))
    assert attribute(wh)["total"] == ledger.TOTAL
    ok(gl("ingest", "cur", part1, "--warehouse", wh))
    assert attribute(wh)["total"] == Decimal("46.00")


def test_15_cur2_parquet_with_a_tag_map(tmp_path: Path) -> None:
    wh = tmp_path / "pq.duckdb"
    ok(
        gl(
            "ingest",
            "cur",
            ledger.write_cur2_parquet(tmp_path / "part-00001.snappy.parquet"),
            "--warehouse",
            wh,
        )
    )
    ok(gl("ingest", "usage", ledger.write_usage(tmp_path / "usage.csv"), "--warehouse", wh))
    doc = attribute(wh)
    assert doc["total"] == ledger.TOTAL and doc["billed_total"] == ledger.BILLED_TOTAL
    by_team = teams(doc)
    for name, expected in (("search", ledger.SEARCH), ("ml", ledger.ML)):
        for key, value in expected.items():
            assert by_team[name][key] == value, (name, key, by_team[name][key], value)
    assert doc["idle"] == ledger.IDLE and doc["unallocated"] == ledger.UNALLOCATED
