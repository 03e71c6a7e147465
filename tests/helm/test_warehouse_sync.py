"""warehouse_sync.py (the chart's S3 warehouse mode) against a real S3-compatible server (moto's standalone
server on 127.0.0.1): fetch, publish, and the conditional write that stops two jobs from losing rows."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.helm.chart import CHART
from tests.support.servers import free_port

SCRIPT = CHART / "files" / "scripts" / "warehouse_sync.py"
URI = "s3://gpulens-test/warehouse/gpulens.duckdb"


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    client(env).create_bucket(Bucket="gpulens-test")
    try:
        yield env
    finally:
        server.stop()


def client(env: dict[str, str]):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def sync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def stored(env: dict[str, str]) -> bytes:
    return bytes(client(env).get_object(Bucket="gpulens-test", Key="warehouse/gpulens.duckdb")["Body"].read())


def test_first_job_starts_empty_and_publishes(s3_env: dict[str, str], tmp_path: Path) -> None:
    client(s3_env).delete_object(Bucket="gpulens-test", Key="warehouse/gpulens.duckdb")
    local = tmp_path / "gpulens.duckdb"
    missing = sync(s3_env, "fetch", URI, str(local))
    assert missing.returncode == 1 and "NoSuchKey" in missing.stderr and len(missing.stderr.splitlines()) == 1
    assert sync(s3_env, "fetch", URI, str(local), "--missing-ok").returncode == 0
    assert not local.exists() and (tmp_path / "gpulens.duckdb.etag").read_text() == ""
    local.write_bytes(b"first delivery")
    assert sync(s3_env, "publish", str(local), URI).returncode == 0
    assert stored(s3_env) == b"first delivery"


def test_overlapping_jobs_cannot_overwrite_each_other(s3_env: dict[str, str], tmp_path: Path) -> None:
    client(s3_env).put_object(Bucket="gpulens-test", Key="warehouse/gpulens.duckdb", Body=b"v1")
    a, b = tmp_path / "a" / "gpulens.duckdb", tmp_path / "b" / "gpulens.duckdb"
    for local in (a, b):
        local.parent.mkdir()
        assert sync(s3_env, "fetch", URI, str(local)).returncode == 0
        assert local.read_bytes() == b"v1"
    a.write_bytes(b"v1 + cur")
    b.write_bytes(b"v1 + usage")
    assert sync(s3_env, "publish", str(a), URI).returncode == 0
    late = sync(s3_env, "publish", str(b), URI)
    assert late.returncode == 1
    assert "PreconditionFailed" in late.stderr and "another job published" in late.stderr
    assert stored(s3_env) == b"v1 + cur"
    # The next run starts from the newer copy and publishes on top of it.
    assert sync(s3_env, "fetch", URI, str(b)).returncode == 0 and b.read_bytes() == b"v1 + cur"
    b.write_bytes(b"v1 + cur + usage")
    assert sync(s3_env, "publish", str(b), URI).returncode == 0
    assert stored(s3_env) == b"v1 + cur + usage"


def test_a_bad_uri_is_one_usage_line(s3_env: dict[str, str], tmp_path: Path) -> None:
    out = sync(s3_env, "fetch", "s3://bucket-only/", str(tmp_path / "w.duckdb"))
    assert out.returncode == 2 and out.stderr.strip() == (
        "warehouse_sync: error: s3://bucket-only/: expected s3://bucket/key of the warehouse object")
