"""moto's standalone server (a real HTTP endpoint for S3, SNS, SQS, CloudWatch, EventBridge ...) for
the tests that talk to AWS through boto3 or DuckDB's httpfs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from moto.server import ThreadedMotoServer

from tests.support.servers import free_port


@contextmanager
def moto_server() -> Iterator[str]:
    """A fresh moto server on 127.0.0.1 at a free port; yields its endpoint URL and stops it on exit.
    Each use starts an empty server, so tests that each enter their own share no buckets or topics."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, region: str = "us-east-1") -> None:
    """Throwaway credentials and a region in the default chain, and no profile to override them."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
