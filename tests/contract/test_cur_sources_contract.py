"""docs/design.md §2/§5 `ingest cur`: a legacy CUR delivery in AWS's layout, with manifests, from a local
directory and from s3://bucket/prefix on a real S3-compatible server (moto's standalone server).

Layout (legacy CUR, report `gl`, October 2026):
  exports/gl/20261001-20261101/gl-Manifest.json               current manifest -> asm-new's part
  exports/gl/20261001-20261101/asm-new/gl-00001.csv.gz        the ledger (amortized 65.00)
  exports/gl/20261001-20261101/asm-new/gl-Manifest.json       AWS's copy of the current manifest
  exports/gl/20261001-20261101/asm-old/gl-00001.csv.gz        a superseded assembly (L1 = 99.00: 132.00)
  exports/gl/20261001-20261101/asm-old/gl-Manifest.json       its manifest (superseded)
Expected: only asm-new counts -> total 65.00, whichever way the delivery is given.
"""

from __future__ import annotations

import gzip
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from tests.contract import ledger
from tests.contract.support import gl, ok

PERIOD_DIR = "exports/gl/20261001-20261101"


def _manifest(key: str) -> str:
    return json.dumps(
        {
            "assemblyId": key.split("/")[-2],
            "reportKeys": [key],
            "billingPeriod": {"start": "20261001T000000.000Z", "end": "20261101T000000.000Z"},
            "bucket": "cur-bucket",
            "reportName": "gl",
            "compression": "GZIP",
        }
    )


def build_layout(root: Path) -> Path:
    period = root / PERIOD_DIR
    for assembly, l1 in (("asm-new", "32.00"), ("asm-old", "99.00")):
        (period / assembly).mkdir(parents=True)
        part = period / assembly / "gl-00001.csv.gz"
        ledger.write_legacy_gz(part)
        if l1 != "32.00":  # rewrite L1's cost in the old assembly
            text = gzip.open(part, "rt").read().replace(",32.00,", f",{l1},", 1)
            with gzip.open(part, "wt") as f:
                f.write(text)
        (period / assembly / "gl-Manifest.json").write_text(
            _manifest(f"{PERIOD_DIR}/{assembly}/gl-00001.csv.gz")
        )
    shutil.copyfile(period / "asm-new" / "gl-Manifest.json", period / "gl-Manifest.json")
    return root


def _total(wh: Path) -> Decimal:
    out = ok(gl("attribute", "--period", "2026-10", "--format", "json", "--warehouse", wh))
    return Decimal(str(json.loads(out.stdout)["total"]))


def test_local_directory_follows_the_current_manifest(tmp_path: Path) -> None:
    root = build_layout(tmp_path / "bucket")
    wh = tmp_path / "w.duckdb"
    ok(gl("ingest", "cur", root / "exports", "--warehouse", wh))
    assert _total(wh) == ledger.TOTAL


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import boto3

    from tests.support.moto_server import fake_aws_credentials, moto_server

    fake_aws_credentials(monkeypatch)
    with moto_server() as url:
        yield url, boto3.client("s3", endpoint_url=url, region_name="us-east-1")


def test_s3_prefix_follows_the_current_manifest(tmp_path: Path, s3) -> None:  # type: ignore[no-untyped-def]
    url, client = s3
    root = build_layout(tmp_path / "bucket")
    client.create_bucket(Bucket="cur-bucket")
    for path in root.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "cur-bucket", path.relative_to(root).as_posix())
    wh = tmp_path / "w.duckdb"
    ok(gl("ingest", "cur", "s3://cur-bucket/exports", "--endpoint-url", url, "--warehouse", wh))
    assert _total(wh) == ledger.TOTAL
