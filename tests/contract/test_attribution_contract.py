"""SPEC §2 JSON shape, §5 restatement, §6 semantics — against the ledger in tests/contract/ledger.py.

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


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    wh = tmp_path / "ledger.duckdb"
    ok(gl("ingest", "cur", ledger.write_cur(tmp_path / "cur.csv"), "--warehouse", wh))
    ok(gl("ingest", "usage", ledger.write_usage(tmp_path / "usage.csv"), "--warehouse", wh))
    return wh


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
    assert doc["total"] == Decimal("73.00")           # not 65 + 73
    assert teams(doc)["search"]["total"] == Decimal("29.00") + Decimal("4.00")   # 20.00 of L1's 40
    assert_invariant(doc)


def test_6_other_payer_adds(tmp_path: Path, warehouse: Path) -> None:
    other = write_csv(tmp_path / "other-payer.csv", CUR2_COLUMNS, [
        cur_line("P1", "Usage", "bucket-other", "4.25", payer=OTHER_PAYER, product="AmazonS3",
                 tags={"user_team": "Search"}),
    ])
    ok(gl("ingest", "cur", other, "--warehouse", warehouse))
    doc = attribute(warehouse)
    assert doc["total"] == Decimal("69.25")
    assert teams(doc)["search"]["direct"] == Decimal("9.25")
    ok(gl("ingest", "cur", other, "--warehouse", warehouse))        # the same delivery again
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
    cur = write_csv(tmp_path / "owner.csv", CUR2_COLUMNS, [
        cur_line("O1", "Usage", "r-1", "1.00", tags={"user_owner": " Alice"}),
        cur_line("O2", "Usage", "r-2", "2.00", tags={"user:owner": "ALICE "}),
        cur_line("O3", "Usage", "r-3", "4.00", tags={"owner": "bob"}),
        cur_line("O4", "Usage", "r-4", "8.00", tags={"user_team": "carol"}),
    ])
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
    again = (ledger.write_legacy_gz(tmp_path / "legacy-restated.csv.gz") if flavour == "legacy"
             else ledger.write_focus(tmp_path / "focus-restated.csv"))
    ok(gl("ingest", "cur", again, "--warehouse", wh))
    assert attribute(wh)["total"] == ledger.TOTAL


def test_10_money_is_not_rounded_before_summing(tmp_path: Path) -> None:
    # FSx 10.00 tagged cluster c9, three teams with 3600 GPU-seconds each there -> 10/3 each.
    wh = tmp_path / "thirds.duckdb"
    cur = write_csv(tmp_path / "thirds.csv", CUR2_COLUMNS, [
        cur_line("T1", "Usage", "fs-9", "10.00", product="AmazonFSx", tags={"user_cluster": "c9"})])
    usage = write_csv(tmp_path / "u.csv", USAGE_COLUMNS, [
        usage_row("2026-10-01 00:00:00", "node-9", "i-9", "c9", g, f"j{g}", t, 3600, 0.9)
        for g, t in enumerate(("a", "b", "c"))])
    ok(gl("ingest", "cur", cur, "--warehouse", wh))
    ok(gl("ingest", "usage", usage, "--warehouse", wh))
    doc = attribute(wh)
    by_team = teams(doc)
    assert set(by_team) == {"a", "b", "c"}
    for t in by_team.values():
        assert abs(t["shared"] - Decimal(10) / 3) < Decimal("0.000001"), t   # 3.3333..., not 3.33
    assert_invariant(doc)
