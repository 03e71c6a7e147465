"""Moves the DuckDB warehouse between S3 and a pod's local volume (the chart's `warehouse.mode: s3`).

    warehouse_sync.py fetch s3://bucket/key /var/lib/gpulens/gpulens.duckdb [--missing-ok]
    warehouse_sync.py publish /var/lib/gpulens/gpulens.duckdb s3://bucket/key

`fetch` downloads the object and records its ETag beside the file (`<file>.etag`; empty when the object
did not exist and `--missing-ok` allowed starting from an empty warehouse). `publish` uploads the file
only if the object still has that ETag (S3 conditional write, If-Match / If-None-Match), so when two
ingest jobs overlap, the second one fails loudly instead of silently dropping the first one's rows; the
next scheduled run starts again from the newer copy. Shipped in a ConfigMap; needs only boto3, which
the gpulens image carries. AWS credentials come from the pod's IRSA role; AWS_ENDPOINT_URL, if set,
points it at an S3-compatible server.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key); anything else is a usage error."""
    if not uri.startswith("s3://") or "/" not in uri[5:] or uri.endswith("/"):
        raise ValueError(f"{uri}: expected s3://bucket/key of the warehouse object")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def etag_path(local: Path) -> Path:
    return local.with_name(local.name + ".etag")


def fetch(s3: Any, uri: str, local: Path, missing_ok: bool) -> str:
    """Download `uri` to `local` (atomically) and return the object's ETag ("" when it is absent)."""
    bucket, key = split_uri(uri)
    partial = local.with_name(local.name + ".part")
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404") and missing_ok:
            etag_path(local).write_text("")
            return ""
        raise
    with partial.open("wb") as out:
        for chunk in response["Body"].iter_chunks(chunk_size=8 << 20):
            out.write(chunk)
    os.replace(partial, local)
    etag = str(response["ETag"])
    etag_path(local).write_text(etag)
    return etag


def publish(s3: Any, local: Path, uri: str) -> None:
    """Upload `local` to `uri` unless someone published another copy since this pod fetched it."""
    bucket, key = split_uri(uri)
    seen = etag_path(local).read_text() if etag_path(local).exists() else ""
    condition = {"IfMatch": seen} if seen else {"IfNoneMatch": "*"}
    with local.open("rb") as body:
        s3.put_object(Bucket=bucket, Key=key, Body=body, **condition)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    get = sub.add_parser("fetch", help="download the warehouse object")
    get.add_argument("uri")
    get.add_argument("local", type=Path)
    get.add_argument("--missing-ok", action="store_true", help="start empty when the object does not exist")
    put = sub.add_parser("publish", help="upload the warehouse if nobody else did since the fetch")
    put.add_argument("local", type=Path)
    put.add_argument("uri")
    args = parser.parse_args(argv)
    s3 = boto3.client("s3")
    try:
        if args.action == "fetch":
            fetch(s3, args.uri, args.local, args.missing_ok)
        else:
            publish(s3, args.local, args.uri)
    except ValueError as exc:
        print(f"warehouse_sync: error: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        hint = (
            " (another job published the warehouse first; the next run starts from its copy)"
            if (code == "PreconditionFailed")
            else ""
        )
        print(
            f"warehouse_sync {args.action}: error: {code}: {exc.response['Error'].get('Message', '')}{hint}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
