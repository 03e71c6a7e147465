"""warehouse_sync.py (the chart's S3 warehouse mode) against a real S3-compatible server (moto's standalone
server on 127.0.0.1): fetch, publish, and the conditional write that stops two jobs from losing rows."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.helm.chart import CHART
from tests.support.moto_server import moto_server

SCRIPT = CHART / "files" / "scripts" / "warehouse_sync.py"
BUCKET, KEY = "gpulens-test", "warehouse/gpulens.duckdb"
URI = f"s3://{BUCKET}/{KEY}"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("warehouse_sync", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = load_script()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        client(url).create_bucket(Bucket=BUCKET)
        yield url


def client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture()
def s3(endpoint: str) -> Any:
    s3 = client(endpoint)
    s3.delete_object(Bucket=BUCKET, Key=KEY)
    return s3


def stored(s3: Any) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())


def test_first_job_starts_empty_and_publishes(s3: Any, tmp_path: Path) -> None:
    local = tmp_path / "gpulens.duckdb"
    with pytest.raises(ClientError, match="NoSuchKey"):
        sync.fetch(s3, URI, local, missing_ok=False)
    assert sync.fetch(s3, URI, local, missing_ok=True) == ""
    assert not local.exists() and (tmp_path / "gpulens.duckdb.etag").read_text() == ""
    local.write_bytes(b"first delivery")
    sync.publish(s3, local, URI)
    assert stored(s3) == b"first delivery"
    # A second first-timer must not overwrite it: If-None-Match: * refuses.
    other = tmp_path / "other" / "gpulens.duckdb"
    other.parent.mkdir()
    sync.fetch(s3, "s3://gpulens-test/warehouse/absent.duckdb", other, missing_ok=True)
    other.write_bytes(b"second")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        sync.publish(s3, other, URI)


def test_overlapping_jobs_cannot_overwrite_each_other(s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"v1")
    a, b = tmp_path / "a" / "gpulens.duckdb", tmp_path / "b" / "gpulens.duckdb"
    for local in (a, b):
        local.parent.mkdir()
        sync.fetch(s3, URI, local, missing_ok=False)
        assert local.read_bytes() == b"v1"
    a.write_bytes(b"v1 + cur")
    b.write_bytes(b"v1 + usage")
    sync.publish(s3, a, URI)
    with pytest.raises(ClientError, match="PreconditionFailed"):
        sync.publish(s3, b, URI)
    assert stored(s3) == b"v1 + cur"
    # The next run starts from the newer copy and publishes on top of it.
    sync.fetch(s3, URI, b, missing_ok=False)
    assert b.read_bytes() == b"v1 + cur"
    b.write_bytes(b"v1 + cur + usage")
    sync.publish(s3, b, URI)
    assert stored(s3) == b"v1 + cur + usage"


def run(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_command_line_as_the_pods_run_it(s3: Any, endpoint: str, tmp_path: Path) -> None:
    """Exit codes and one-line errors, through AWS_ENDPOINT_URL as a pod would be configured."""
    local = tmp_path / "gpulens.duckdb"
    missing = run(endpoint, "fetch", URI, str(local))
    assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1 and "NoSuchKey" in missing.stderr
    assert run(endpoint, "fetch", URI, str(local), "--missing-ok").returncode == 0
    local.write_bytes(b"w")
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"someone else")
    late = run(endpoint, "publish", str(local), URI)
    assert late.returncode == 1 and len(late.stderr.splitlines()) == 1
    assert "PreconditionFailed" in late.stderr and "another job published" in late.stderr
    bad = run(endpoint, "fetch", "s3://bucket-only/", str(local))
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "warehouse_sync: error: s3://bucket-only/: expected s3://bucket/key of the warehouse object"
    )
