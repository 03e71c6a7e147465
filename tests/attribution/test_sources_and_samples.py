"""Where deliveries come from (files, AWS's directory layout with manifests, s3:// on a real
S3-compatible server) and the real public samples in /work/shared/data (totals as their README states,
and as Python's csv module sums them independently)."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.allocate import allocate_period
from gpulens.attribution.warehouse import Warehouse

from .conftest import LEDGER_FILES, USAGE

DATA = Path("/work/shared/data")
needs_data = pytest.mark.skipif(not DATA.exists(), reason="the shared public samples are not on this machine")


def _sum(path: Path, column: str, null: str = "") -> Decimal:
    with path.open(newline="") as fh:
        return sum(
            (Decimal(r[column]) for r in csv.DictReader(fh) if r[column] not in ("", null)), Decimal(0)
        )


def _totals(warehouse: Path) -> dict[str, tuple[int, Decimal, Decimal]]:
    with Warehouse(warehouse).connect(read_only=True) as con:
        rows = con.execute(
            "SELECT billing_period, count(*), sum(unblended_cost), sum(amortized_cost) "
            "FROM cost_line_items GROUP BY 1"
        ).fetchall()
    return {p: (n, u, a) for p, n, u, a in rows}


@needs_data
def test_real_legacy_cur_sample(gpulens: Callable[..., int], warehouse: Path) -> None:
    # README: 1,281 rows (Usage 1269, Tax 12), period 2023-11, no ResourceId or tag columns, total ≈
    # $1.682309.
    sample = DATA / "cur" / "legacy_cur_anonymized_focus_converters.csv"
    assert gpulens("ingest", "cur", sample) == 0
    count, unblended, amortized = _totals(warehouse)["2023-11"]
    assert count == 1281
    assert unblended == _sum(sample, "lineItem/UnblendedCost") == amortized  # no commitments in it
    assert unblended.quantize(Decimal("0.000001")) == Decimal("1.682309")
    with Warehouse(warehouse).connect(read_only=True) as con:
        types = dict(
            con.execute("SELECT line_item_type, count(*) FROM cost_line_items GROUP BY 1").fetchall()
        )
        a = allocate_period(con, "2023-11")
    assert types == {"Usage": 1269, "Tax": 12}
    assert (
        a.teams == () and a.unallocated == a.total
    )  # untagged, no usage: all of it must be tagged by someone


@needs_data
def test_real_focus_sample(gpulens: Callable[..., int], warehouse: Path) -> None:
    # README: 1,000 rows, 2024-09 (999) + one 2024-10 row, ΣBilledCost ≈ 20.5202, ΣEffectiveCost ≈ 14.9765,
    # the literal string NULL for nulls, timestamps without T or Z, Tags as JSON objects.
    sample = DATA / "focus" / "focus_1.0_sample_anonymized_real.csv"
    assert gpulens("ingest", "cur", sample) == 0
    totals = _totals(warehouse)
    assert {p: n for p, (n, _, _) in totals.items()} == {"2024-09": 999, "2024-10": 1}
    billed = sum(u for _, u, _ in totals.values())
    effective = sum(a for _, _, a in totals.values())
    # The file carries 11 decimals; the warehouse keeps money to 1e-10, each cell rounded once.
    tolerance = Decimal("1000") * Decimal("0.5E-10")
    assert abs(billed - _sum(sample, "BilledCost", "NULL")) <= tolerance
    assert billed.quantize(Decimal("0.0001")) == Decimal("20.5202")
    assert abs(effective - _sum(sample, "EffectiveCost", "NULL")) <= tolerance
    assert effective.quantize(Decimal("0.0001")) == Decimal("14.9765")
    with Warehouse(warehouse).connect(read_only=True) as con:
        tagged = con.execute("SELECT count(*) FROM cost_line_items WHERE cardinality(tags) > 0").fetchone()
        gpu = con.execute(
            "SELECT DISTINCT instance_type FROM cost_line_items WHERE instance_type LIKE 'g%' ORDER BY 1"
        ).fetchall()
    assert tagged == (711,)
    assert gpu == [("g3.4xlarge",), ("g5.4xlarge",)]


@needs_data
def test_real_athena_snake_case_sample(gpulens: Callable[..., int], warehouse: Path) -> None:
    # koku's legacy CUR in Athena naming: tags flattened to resource_tags_* columns; only aws_created_by is
    # filled in its two rows (user_insights_project and user_c25_key are empty, so absent).
    assert gpulens("ingest", "cur", DATA / "cur" / "koku_legacy_cur_athena_snakecase_2rows.csv") == 0
    with Warehouse(warehouse).connect(read_only=True) as con:
        keys = con.execute(
            "SELECT DISTINCT unnest(map_keys(tags)) FROM cost_line_items ORDER BY 1"
        ).fetchall()
    assert _totals(warehouse)["2022-07"][0] == 2
    assert keys == [("aws_created_by",)]


@needs_data
def test_aws_layouts_with_manifests(gpulens: Callable[..., int], warehouse: Path, tmp_path: Path) -> None:
    # keboola's mock buckets: CUR 2.0 (BILLING_PERIOD=2024-09, csv.gz, manifest dataFiles: 4 data rows,
    # $0.108304) and CUR 1.0 (a .csv.zip listed by reportKeys: 3 rows). A stray file the manifest does not
    # list must be ignored (AWS leaves superseded deliveries beside the current one).
    root = tmp_path / "buckets"
    shutil.copytree(DATA / "cur" / "keboola_mock" / "cur_2_0" / "s3_structure", root / "v2")
    shutil.copytree(DATA / "cur" / "keboola_mock" / "cur_1_0" / "s3_structure", root / "v1")
    (
        root / "v2" / "mock-cur-v2-bucket" / "data" / "BILLING_PERIOD=2024-09" / "superseded-00001.csv"
    ).write_text("not,a,delivery\n")
    assert gpulens("ingest", "cur", root / "v2") == 0
    assert gpulens("ingest", "cur", root / "v1") == 0
    totals = _totals(warehouse)
    assert totals["2024-09"][:2] == (4, Decimal("0.108304"))
    assert totals["2024-01"][0] == 3


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's standalone S3 server on 127.0.0.1, with throwaway credentials in the default chain."""
    from tests.support.moto_server import fake_aws_credentials, moto_server

    fake_aws_credentials(monkeypatch)
    with moto_server() as url:
        yield url


def test_s3_delivery_with_manifest(
    s3: str,
    gpulens: Callable[..., int],
    warehouse: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket="attribution-cur-bucket")
    data = "exports/gpulens/data/BILLING_PERIOD=2026-10/gpulens-00001.snappy.parquet"
    client.upload_file(str(LEDGER_FILES["cur2-parquet"]), "attribution-cur-bucket", data)
    client.put_object(
        Bucket="attribution-cur-bucket",
        Key="exports/gpulens/data/BILLING_PERIOD=2026-10/old-00001.csv",
        Body=b"superseded,garbage\n",
    )
    manifest = {"dataFiles": [f"s3://attribution-cur-bucket/{data}"], "schema": "2"}
    client.put_object(
        Bucket="attribution-cur-bucket",
        Body=json.dumps(manifest).encode(),
        Key="exports/gpulens/metadata/BILLING_PERIOD=2026-10/gpulens-Manifest.json",
    )

    assert gpulens("ingest", "cur", "s3://attribution-cur-bucket/exports/gpulens", "--endpoint-url", s3) == 0
    assert gpulens("ingest", "usage", USAGE) == 0
    with Warehouse(warehouse).connect(read_only=True) as con:
        a = allocate_period(con, "2026-10")
        sources = con.execute("SELECT DISTINCT source FROM cost_line_items").fetchall()
    assert (a.total, a.idle, a.unallocated) == (Decimal("85.95"), Decimal("28.00"), Decimal("17.10"))
    assert sources == [(f"cur2:s3://attribution-cur-bucket/{data}",)]

    # The same through $AWS_ENDPOINT_URL, and a missing prefix is one clear line.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    assert gpulens("ingest", "cur", "s3://attribution-cur-bucket/exports/gpulens") == 0
    capsys.readouterr()
    assert gpulens("ingest", "cur", "s3://attribution-cur-bucket/nothing-here") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "gpulens ingest: error: s3://attribution-cur-bucket/nothing-here: no objects under this prefix"
    ]


def test_focus_parquet_and_a_directory_without_manifest(
    gpulens: Callable[..., int], warehouse: Path, tmp_path: Path
) -> None:
    # The FOCUS ledger as Parquet, and the CUR 2.0 ledger split into two parts under BILLING_PERIOD=2026-10/
    # of another payer: each is one delivery; both allocate to the ledger's 85.95.
    import duckdb

    part_dir = tmp_path / "export" / "data" / "BILLING_PERIOD=2026-10"
    part_dir.mkdir(parents=True)
    con = duckdb.connect()
    focus = tmp_path / "focus.parquet"
    con.execute(
        f"COPY (SELECT * FROM read_csv('{LEDGER_FILES['focus-csv']}', all_varchar = true)) TO '{focus}'"
    )
    source = f"read_csv('{LEDGER_FILES['cur2-csv']}', all_varchar = true)"
    for n, where in enumerate(["identity_line_item_id <= 'L07'", "identity_line_item_id > 'L07'"], start=1):
        con.execute(
            f"COPY (SELECT * REPLACE ('222' AS bill_payer_account_id) FROM {source} WHERE {where}) "
            f"TO '{part_dir}/part-{n}.csv' (HEADER)"
        )
    assert gpulens("ingest", "cur", focus) == 0
    assert gpulens("ingest", "cur", tmp_path / "export") == 0
    with Warehouse(warehouse).connect(read_only=True) as con2:
        per_payer = con2.execute(
            "SELECT payer_account_id, count(*), sum(amortized_cost) FROM cost_line_items "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert per_payer == [("111111111111", 14, Decimal("85.95")), ("222", 15, Decimal("85.95"))]


def test_usage_from_parquet(gpulens: Callable[..., int], warehouse: Path, tmp_path: Path) -> None:
    import duckdb

    parquet = tmp_path / "usage.parquet"
    duckdb.connect().execute(f"COPY (SELECT * FROM read_csv('{USAGE}')) TO '{parquet}'")
    assert gpulens("ingest", "usage", parquet) == 0
    with Warehouse(warehouse).connect(read_only=True) as con:
        assert con.execute("SELECT count(*), sum(gpu_seconds) FROM gpu_usage_hourly").fetchone() == (
            7,
            25200.0,
        )


def test_legacy_assembly_folders_only_the_current_delivery(
    gpulens: Callable[..., int], warehouse: Path, tmp_path: Path
) -> None:
    # Legacy CUR: <report>/<range>/<report>-Manifest.json names the current assembly; each assembly folder
    # keeps its own copy of its manifest. Assembly A (superseded, L12 at 2.00) must not count beside
    # assembly B (current, L12 corrected to 3.50): 85.95 + 1.50 = 87.45.
    import gzip as gz

    period = tmp_path / "cur" / "report" / "20261001-20261101"
    text = gz.decompress(LEDGER_FILES["legacy-csv-gz"].read_bytes()).decode()
    corrected = text.replace(",i-orphan,t3.large,1,2.00,", ",i-orphan,t3.large,1,3.50,")
    assert corrected != text
    for assembly, body in (("A", text), ("B", corrected)):
        (period / assembly).mkdir(parents=True)
        (period / assembly / "report-1.csv.gz").write_bytes(gz.compress(body.encode()))
        listing = {"reportKeys": [f"report/20261001-20261101/{assembly}/report-1.csv.gz"]}
        (period / assembly / "report-Manifest.json").write_text(json.dumps(listing))
    (period / "report-Manifest.json").write_text(json.dumps(listing))  # the current one: B
    assert gpulens("ingest", "cur", tmp_path / "cur") == 0
    assert _totals(warehouse)["2026-10"][0::2] == (15, Decimal("87.45"))
