"""Where the rendered files go: a local folder or `s3://bucket/prefix` (boto3 `put_object`).

Credentials for S3 come from boto3's own chain (environment, profile, instance role); nothing here
reads or prints them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpulens.attribution.report.render import CONTENT_TYPES
from gpulens.errors import GpulensError


def deliver_local(files: Mapping[str, bytes], out_dir: Path) -> tuple[Path, ...]:
    """Write each file into `out_dir` (created if missing), via a temporary name so that a reader
    never sees half a file."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name, data in files.items():
            target = out_dir / name
            tmp = target.with_name(f".{name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
            written.append(target)
    except OSError as exc:
        raise GpulensError(f"cannot write the report: {exc.strerror}", path=exc.filename or out_dir) from exc
    return tuple(written)


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b/` -> (`bucket`, `a/b`); the prefix may be empty."""
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise GpulensError(f"{url!r} is not an s3://bucket/prefix URL")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix.strip("/")


def deliver_s3(
    files: Mapping[str, bytes], url: str, *, endpoint_url: str | None = None, client: Any = None
) -> tuple[str, ...]:
    """Upload each file to `url` (`s3://bucket/prefix`); returns the object URLs written."""
    import boto3  # the aws extra; imported here so local delivery works without it
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3_url(url)
    s3 = client or boto3.client("s3", endpoint_url=endpoint_url)
    written = []
    for name, data in files.items():
        key = f"{prefix}/{name}" if prefix else name
        try:
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=data,
                ContentType=CONTENT_TYPES.get(name, "application/octet-stream"),
            )
        except (BotoCoreError, ClientError) as exc:
            raise GpulensError(f"upload to s3://{bucket}/{key} failed: {exc}") from exc
        written.append(f"s3://{bucket}/{key}")
    return tuple(written)
