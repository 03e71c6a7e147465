"""Deliveries as AWS really lays them out (docs/design.md §5 "Further", docs/attribution.md "Delivery
rules"): nothing counted twice, nothing lost, no month wiped by another.

Ledger: the 2026-10 month of tests/fixtures/cur (15 lines, 85.95 amortized, payer 111111111111), in
CUR 2.0 CSV, legacy CUR CSV.gz and FOCUS CSV. Each refused delivery exits 1 with one stderr line
naming the files (or period) at fault and leaves the warehouse exactly as it was.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.warehouse import Warehouse
from tests.contract.support import CUR2_COLUMNS, cur_line, write_csv

from .conftest import LEDGER_FILES

CUR2 = LEDGER_FILES["cur2-csv"]
LEGACY = LEDGER_FILES["legacy-csv-gz"]
FOCUS = LEDGER_FILES["focus-csv"]
LEDGER_TOTAL = Decimal("85.95")


def _state(warehouse: Path) -> tuple:
    if not warehouse.exists():
        return ()
    with Warehouse(warehouse).connect(read_only=True) as con:
        return (
            con.execute(
                "SELECT billing_period, payer_account_id, count(*), sum(amortized_cost) FROM cost_line_items "
                "GROUP BY ALL ORDER BY ALL"
            ).fetchall(),
            con.execute("SELECT count(*) FROM deliveries").fetchone(),
        )


def _refused(
    gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str], warehouse: Path, *args: object
) -> str:
    """Runs `ingest cur ARGS`, expects exit 1, one stderr line and an untouched warehouse."""
    before = _state(warehouse)
    capsys.readouterr()
    assert gpulens("ingest", "cur", *args) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert _state(warehouse) == before
    return err[0]


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


@pytest.fixture
def held(gpulens: Callable[..., int], warehouse: Path) -> Path:
    """The ledger month already held (85.95), so that a refused delivery visibly changes nothing."""
    assert gpulens("ingest", "cur", CUR2) == 0
    return warehouse


# --- item 2: the same money twice ----------------------------------------------------------------------


def test_the_same_file_given_twice_is_refused(
    held: Path, gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`ingest cur x.csv x.csv` would hold 2 x 85.95 = 171.90 for 2026-10; refused, 85.95 kept."""
    part = _copy(CUR2, tmp_path / "x.csv")
    err = _refused(gpulens, capsys, held, part, part)
    assert "x.csv" in err and "given twice" in err


def test_a_copy_under_another_name_is_refused(
    held: Path, gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The same bytes as a.csv and b.csv: 171.90 where 85.95 is billed; refused naming both."""
    a, b = _copy(CUR2, tmp_path / "a.csv"), _copy(CUR2, tmp_path / "b.csv")
    err = _refused(gpulens, capsys, held, a, b)
    assert "a.csv" in err and "b.csv" in err


def test_a_file_beside_its_compressed_copy_is_refused(
    held: Path, gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A folder holding x.csv.gz and its unzipped x.csv: 171.90 for 2026-10; refused naming both."""
    folder = tmp_path / "export"
    _copy(CUR2, folder / "x.csv")
    (folder / "x.csv.gz").write_bytes(gzip.compress(CUR2.read_bytes()))
    err = _refused(gpulens, capsys, held, folder)
    assert "x.csv.gz" in err and "x.csv " in err + " "


def _two_exports(root: Path) -> Path:
    """A prefix with a CUR 2.0 export and a FOCUS export of the same payer and month."""
    _copy(CUR2, root / "cur2" / "data" / "BILLING_PERIOD=2026-10" / "cur2-00001.csv")
    _copy(FOCUS, root / "focus" / "data" / "BILLING_PERIOD=2026-10" / "focus-00001.csv")
    return root


def test_cur2_and_focus_of_one_month_are_refused_then_chosen_with_format(
    gpulens: Callable[..., int], warehouse: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """CUR 2.0 (85.95) + FOCUS (85.95) of 2026-10, payer 111111111111, in one prefix: 171.90 before;
    refused naming both files. `--format cur2` reads the CUR 2.0 file only: 85.95, 1 file skipped."""
    prefix = _two_exports(tmp_path / "bucket")
    err = _refused(gpulens, capsys, warehouse, prefix)
    assert "cur2-00001.csv" in err and "focus-00001.csv" in err and "--format" in err
    assert gpulens("ingest", "cur", prefix, "--format", "cur2") == 0
    assert "skipped 1 file" in capsys.readouterr().out
    assert _state(warehouse)[0] == [("2026-10", "111111111111", 15, LEDGER_TOTAL)]


def test_two_executions_without_metadata_are_refused(
    held: Path, gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """data/ synced without metadata/, holding executions exec-1 and exec-2 of export `ledger`
    (85.95 each): 171.90 before; refused naming both, since only the manifest says which is current."""
    data = tmp_path / "ledger" / "data" / "BILLING_PERIOD=2026-10"
    _copy(CUR2, data / "exec-1" / "ledger-00001.csv")
    _copy(CUR2, data / "exec-2" / "ledger-00001.csv").write_text(CUR2.read_text().replace("L01,", "L01b,"))
    err = _refused(gpulens, capsys, held, tmp_path / "ledger")
    assert "exec-1/ledger-00001.csv" in err and "exec-2/ledger-00001.csv" in err and "manifest" in err


def test_two_legacy_reports_of_one_month_are_refused(
    gpulens: Callable[..., int], warehouse: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An hourly and a daily legacy report of 2026-10 under one prefix: 171.90 before; refused."""
    _copy(LEGACY, tmp_path / "cur" / "hourly" / "20261001-20261101" / "hourly-1.csv.gz")
    _copy(LEGACY, tmp_path / "cur" / "daily" / "20261001-20261101" / "daily-1.csv.gz")
    err = _refused(gpulens, capsys, warehouse, tmp_path / "cur")
    assert "hourly-1.csv.gz" in err and "daily-1.csv.gz" in err


def test_parts_of_one_export_are_one_delivery(
    gpulens: Callable[..., int], warehouse: Path, tmp_path: Path
) -> None:
    """ledger-00001.csv (L01-L07) and ledger-00002.csv (L08-L15) of one export and folder add up to
    the ledger's 85.95: parts are not two exports."""
    rows = list(csv.DictReader(CUR2.open(newline="")))
    folder = tmp_path / "data" / "BILLING_PERIOD=2026-10"
    folder.mkdir(parents=True)
    write_csv(folder / "ledger-00001.csv", list(rows[0]), rows[:7])
    write_csv(folder / "ledger-00002.csv", list(rows[0]), rows[7:])
    assert gpulens("ingest", "cur", tmp_path / "data") == 0
    assert _state(warehouse)[0] == [("2026-10", "111111111111", 15, LEDGER_TOTAL)]


# --- a part alone, and a period no manifest describes -------------------------------------------------


def _manifested(root: Path) -> tuple[Path, Path]:
    """CUR 2.0 layout: data/BILLING_PERIOD=2026-10/ledger-0000{1,2}.csv and the manifest listing both."""
    rows = list(csv.DictReader(CUR2.open(newline="")))
    data = root / "ledger" / "data" / "BILLING_PERIOD=2026-10"
    data.mkdir(parents=True)
    write_csv(data / "ledger-00001.csv", list(rows[0]), rows[:7])
    write_csv(data / "ledger-00002.csv", list(rows[0]), rows[7:])
    meta = root / "ledger" / "metadata" / "BILLING_PERIOD=2026-10"
    meta.mkdir(parents=True)
    keys = [f"s3://bucket/ledger/data/BILLING_PERIOD=2026-10/ledger-0000{n}.csv" for n in (1, 2)]
    (meta / "ledger-Manifest.json").write_text(json.dumps({"executionId": "e1", "dataFiles": keys}))
    return data / "ledger-00001.csv", root / "ledger"


def test_one_part_of_a_manifested_delivery_alone_is_refused(
    held: Path, gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Part 1 alone (L01-L07, 60.00 of 85.95) would replace the whole of 2026-10 with 60.00; refused
    naming the missing part; the folder (both parts) loads 85.95."""
    part1, folder = _manifested(tmp_path)
    err = _refused(gpulens, capsys, held, part1)
    assert "ledger-00002.csv" in err
    assert gpulens("ingest", "cur", folder) == 0
    assert _state(held)[0] == [("2026-10", "111111111111", 15, LEDGER_TOTAL)]


def test_a_period_without_a_manifest_is_not_skipped(
    gpulens: Callable[..., int], warehouse: Path, tmp_path: Path
) -> None:
    """The folder holds 2026-10 with its manifest and 2026-09 (one S3 line, 4.00) without one: both
    periods load (before, 2026-09 was skipped in silence)."""
    _, folder = _manifested(tmp_path)
    sept = [cur_line("S1", "Usage", "bucket-s", "4.00", product="AmazonS3")]
    sept[0]["bill_billing_period_start_date"] = "2026-09-01T00:00:00Z"
    sept[0]["line_item_usage_start_date"], sept[0]["line_item_usage_end_date"] = (
        "2026-09-30T00:00:00Z",
        "2026-10-01T00:00:00Z",
    )
    other = folder / "data" / "BILLING_PERIOD=2026-09"
    other.mkdir(parents=True)
    write_csv(other / "ledger-00001.csv", CUR2_COLUMNS, sept)
    assert gpulens("ingest", "cur", folder) == 0
    assert _state(warehouse)[0] == [
        ("2026-09", "111111111111", 1, Decimal("4.00")),
        ("2026-10", "111111111111", 15, LEDGER_TOTAL),
    ]


def test_an_export_given_by_a_relative_path_loads_like_its_absolute_one(
    gpulens: Callable[..., int], warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gpulens ingest cur ledger` from the folder above the export: the manifest's keys are matched on
    the path's tail, so the relative spelling loads both parts (85.95); it used to be refused as "not
    under ledger", while part 1 alone given relatively slipped past the partial-delivery check."""
    _manifested(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert gpulens("ingest", "cur", "ledger/data/BILLING_PERIOD=2026-10/ledger-00001.csv") == 1
    assert not _state(warehouse) or _state(warehouse)[0] == []
    assert gpulens("ingest", "cur", "ledger") == 0
    assert _state(warehouse)[0] == [("2026-10", "111111111111", 15, LEDGER_TOTAL)]


def test_a_period_folder_missing_a_part_is_refused(
    held: Path, gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The period folder given alone holds only part 1 (60.00 of 85.95) of a two-part manifest kept in
    the `metadata/` twin: it would replace 2026-10 with 60.00; refused naming the missing part."""
    part1, _ = _manifested(tmp_path)
    (part1.parent / "ledger-00002.csv").unlink()
    err = _refused(gpulens, capsys, held, part1.parent)
    assert "ledger-00002.csv" in err


def test_a_file_outside_any_period_folder_is_read_beside_a_manifest(
    gpulens: Callable[..., int], warehouse: Path, tmp_path: Path
) -> None:
    """The export folder (2026-10, manifest) also holds `november.csv` (one S3 line, 4.00, billing
    period 2026-11 in its column, in no period folder): both load; November used to be skipped in
    silence."""
    _, folder = _manifested(tmp_path)
    nov = [cur_line("N1", "Usage", "bucket-s", "4.00", product="AmazonS3")]
    nov[0]["bill_billing_period_start_date"] = "2026-11-01T00:00:00Z"
    nov[0]["line_item_usage_start_date"], nov[0]["line_item_usage_end_date"] = (
        "2026-11-02T00:00:00Z",
        "2026-11-03T00:00:00Z",
    )
    write_csv(folder / "november.csv", CUR2_COLUMNS, nov)
    assert gpulens("ingest", "cur", folder) == 0
    assert _state(warehouse)[0] == [
        ("2026-10", "111111111111", 15, LEDGER_TOTAL),
        ("2026-11", "111111111111", 1, Decimal("4.00")),
    ]


# --- item 3: the period comes from the bill, never from usage dates ------------------------------------


def _prepaid(path: Path, *, with_period_column: bool) -> Path:
    """A September delivery: a Capacity Block fee (240.00) bought in September for 2026-10-02."""
    arn = "arn:aws:ec2:us-east-1:222222222222:capacity-reservation/cr-0b1"
    row = cur_line("CB1", "Fee", arn, "240.00", start="2026-10-02T00:00:00Z", end="2026-10-02T02:00:00Z",
                   instance_type="p5.48xlarge")  # fmt: skip
    row["bill_billing_period_start_date"] = "2026-09-01T00:00:00Z"
    columns = [c for c in CUR2_COLUMNS if with_period_column or c != "bill_billing_period_start_date"]
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_csv(path, columns, [{c: row[c] for c in columns}])


def test_a_fee_billed_in_advance_does_not_wipe_the_month_it_pays_for(
    held: Path, gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """October holds the ledger (85.95). A September file without bill_billing_period_start_date,
    under BILLING_PERIOD=2026-09/, whose one line is a Capacity Block fee dated 2026-10-02: before,
    its period came from the usage date (2026-10) and it replaced all of October (85.95 -> 240.00).
    Now it is September's: 2026-09 240.00, 2026-10 still 85.95. The same file outside a period
    folder names no period and is refused."""
    folder = _prepaid(
        tmp_path / "x" / "data" / "BILLING_PERIOD=2026-09" / "x-00001.csv", with_period_column=False
    )
    assert gpulens("ingest", "cur", folder) == 0
    assert _state(held)[0] == [
        ("2026-09", "111111111111", 1, Decimal("240.00")),
        ("2026-10", "111111111111", 15, LEDGER_TOTAL),
    ]
    loose = _prepaid(tmp_path / "loose.csv", with_period_column=False)
    err = _refused(gpulens, capsys, held, loose)
    assert "loose.csv" in err and "billing period" in err and "bill_billing_period_start_date" in err


# --- item 4: legacy tag columns that differ only in case -------------------------------------------------


def test_legacy_tag_columns_differing_in_case_keep_their_teams(
    gpulens: Callable[..., int], warehouse: Path, tmp_path: Path
) -> None:
    """Legacy CUR with resourceTags/user:Team, resourceTags/user:team and resourceTags/user:TEAM (real
    exports have all three); three S3 lines, 1.00 / 2.00 / 4.00, each tagged in one of them:
    a 1.00, b 2.00, c 4.00 direct, unallocated 0.00 (before: the reader renamed two of the columns
    to user:team_1 / user:TEAM_2 and 6.00 landed in unallocated)."""
    head = ["identity/LineItemId", "bill/PayerAccountId", "bill/BillingPeriodStartDate",
            "lineItem/LineItemType", "lineItem/UsageStartDate", "lineItem/UsageEndDate",
            "lineItem/ProductCode", "lineItem/ResourceId", "lineItem/UnblendedCost", "lineItem/CurrencyCode",
            "resourceTags/user:Team", "resourceTags/user:team", "resourceTags/user:TEAM"]  # fmt: skip
    base = ["111111111111", "2026-10-01T00:00:00Z", "Usage", "2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z",
            "AmazonS3"]  # fmt: skip
    rows = [
        ["T1", *base, "bucket-a", "1.00", "USD", "A", "", ""],
        ["T2", *base, "bucket-b", "2.00", "USD", "", "b", ""],
        ["T3", *base, "bucket-c", "4.00", "USD", "", "", "C"],
    ]
    text = io.StringIO()
    csv.writer(text).writerows([head, *rows])
    path = tmp_path / "legacy-00001.csv"
    path.write_text(text.getvalue())
    assert gpulens("ingest", "cur", path) == 0
    assert gpulens("attribute", "--period", "2026-10", "--format", "json") == 0
    from gpulens.attribution.allocate import allocate_period

    with Warehouse(warehouse).connect(read_only=True) as con:
        a = allocate_period(con, "2026-10")
    assert {t.team: t.direct for t in a.teams} == {
        "a": Decimal("1.00"),
        "b": Decimal("2.00"),
        "c": Decimal("4.00"),
    }
    assert a.unallocated == Decimal(0)


# --- item 5: a stale delivery -----------------------------------------------------------------------------


def test_an_older_delivery_is_refused_unless_forced(
    gpulens: Callable[..., int], warehouse: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """v2 (made 2026-11-03, L12 restated 2.00 -> 3.50: 87.45) is held; v1 (made 2026-11-02, 85.95)
    ingested after it would bring the total back to 85.95: refused naming the period and both
    times; `--force` loads it (85.95), after which v1 is the delivery held. The deliveries table records
    each delivery's creation time."""
    rows = list(csv.DictReader(CUR2.open(newline="")))
    rows[11]["line_item_unblended_cost"] = "3.50"
    (tmp_path / "v2").mkdir()
    v2 = write_csv(tmp_path / "v2" / "ledger-00001.csv", list(rows[0]), rows)
    v1 = _copy(CUR2, tmp_path / "v1" / "ledger-00001.csv")
    os.utime(v2, (1793664000, 1793664000))  # 2026-11-03 00:00 UTC
    os.utime(v1, (1793577600, 1793577600))  # 2026-11-02 00:00 UTC
    assert gpulens("ingest", "cur", v2) == 0
    assert _state(warehouse)[0] == [("2026-10", "111111111111", 15, Decimal("87.45"))]
    err = _refused(gpulens, capsys, warehouse, v1)
    assert (
        "2026-10" in err
        and "2026-11-02 00:00:00" in err
        and "2026-11-03 00:00:00" in err
        and "--force" in err
    )
    assert gpulens("ingest", "cur", v1, "--force") == 0
    assert _state(warehouse)[0] == [("2026-10", "111111111111", 15, LEDGER_TOTAL)]
    assert gpulens("ingest", "cur", v1) == 0  # v1 is now the delivery held: the same again is not older
    with Warehouse(warehouse).connect(read_only=True) as con:
        created = con.execute("SELECT created FROM deliveries ORDER BY ingested_at").fetchall()
    assert [str(c[0]) for c in created] == [
        "2026-11-03 00:00:00",
        "2026-11-02 00:00:00",
        "2026-11-02 00:00:00",
    ]


def test_an_old_month_given_beside_a_newer_month_is_still_older(
    gpulens: Callable[..., int], warehouse: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """v2 of 2026-10 (made 2026-11-03, 87.45) is held. A folder holding v1 of 2026-10 (made 2026-11-02,
    85.95) and a November file made 2026-12-01 was dated by its newest file as a whole, so v1 replaced
    v2 and recorded 2026-12-01, after which v2 itself was refused. Each period is dated by its own
    files: refused naming 2026-10 and 2026-11-02; v2 stays."""
    rows = list(csv.DictReader(CUR2.open(newline="")))
    rows[11]["line_item_unblended_cost"] = "3.50"
    (tmp_path / "v2").mkdir()
    v2 = write_csv(tmp_path / "v2" / "ledger-00001.csv", list(rows[0]), rows)
    v1 = _copy(CUR2, tmp_path / "old" / "ledger-00001.csv")
    nov = [cur_line("N1", "Usage", "bucket-s", "4.00", product="AmazonS3")]
    nov[0]["bill_billing_period_start_date"] = "2026-11-01T00:00:00Z"
    nov[0]["line_item_usage_start_date"], nov[0]["line_item_usage_end_date"] = (
        "2026-11-02T00:00:00Z",
        "2026-11-03T00:00:00Z",
    )
    november = write_csv(tmp_path / "old" / "november-00001.csv", CUR2_COLUMNS, nov)
    os.utime(v2, (1793664000, 1793664000))  # 2026-11-03 00:00 UTC
    os.utime(v1, (1793577600, 1793577600))  # 2026-11-02 00:00 UTC
    os.utime(november, (1796083200, 1796083200))  # 2026-12-01 00:00 UTC
    assert gpulens("ingest", "cur", v2) == 0
    err = _refused(gpulens, capsys, warehouse, tmp_path / "old")
    assert "2026-10" in err and "2026-11-02 00:00:00" in err
    assert _state(warehouse)[0] == [("2026-10", "111111111111", 15, Decimal("87.45"))]


# --- item 9: the smaller ones on the way in ------------------------------------------------------------


def test_lowercase_null_is_null(gpulens: Callable[..., int], warehouse: Path, tmp_path: Path) -> None:
    """FOCUS's own examples write null as `null`: ResourceId and Tags `null` are NULL, not the text
    "null" (a resource called "null" would collect every such line)."""
    text = FOCUS.read_text().replace(",NULL,", ",null,")
    lines = text.splitlines()
    lines[1] = lines[1].replace(",i-shared,", ",null,")
    path = tmp_path / "focus-00001.csv"
    path.write_text("\n".join(lines) + "\n")
    assert gpulens("ingest", "cur", path) == 0
    with Warehouse(warehouse).connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM cost_line_items WHERE resource_id = 'null'").fetchone() == (
            0,
        )
        assert (
            con.execute("SELECT count(*) FROM cost_line_items WHERE resource_id IS NULL").fetchone()[0] >= 1
        )


@pytest.mark.parametrize(
    ("flavour", "bad"),
    [("cur2", '{"user_team": "a"'), ("cur2", '["a", "b"]'), ("focus", "team=a")],
)
def test_malformed_tag_json_is_refused_with_row_and_column(
    flavour: str,
    bad: str,
    held: Path,
    gpulens: Callable[..., int],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Row 3's tags are not a JSON object: refused naming row 3 and the tag column (before: silently
    untagged, or refused without a row)."""
    source, column = (CUR2, "resource_tags") if flavour == "cur2" else (FOCUS, "Tags")
    rows = list(csv.DictReader(source.open(newline="")))
    rows[2][column] = bad
    path = write_csv(tmp_path / "tags.csv", list(rows[0]), rows)
    err = _refused(gpulens, capsys, held, path)
    assert f"tags.csv: row 3, column {column}:" in err and "not a JSON object" in err


def test_a_missing_legacy_column_is_named(
    gpulens: Callable[..., int], warehouse: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A legacy export without savingsPlan/SavingsPlanEffectiveCost whose row 2 is a
    SavingsPlanCoveredUsage line: refused naming row 2 and that column (before: "row 2: is empty")."""
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(LEGACY.read_bytes()).decode())))
    header = [c for c in rows[0] if c != "savingsPlan/SavingsPlanEffectiveCost"]
    path = write_csv(tmp_path / "legacy.csv", header, [{c: r[c] for c in header} for r in rows])
    err = _refused(gpulens, capsys, warehouse, path)
    assert "legacy.csv: row 2, column savingsPlan/SavingsPlanEffectiveCost: is missing" in err
