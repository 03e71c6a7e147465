"""boto3 clients for the AWS actions, with the attempt's timeout and without boto's own retries.

The engine owns retries (with backoff, audited); botocore retrying underneath would multiply them.
boto3 is imported here, lazily, because it is an optional dependency (`gpulens[aws]`).
"""

from __future__ import annotations

from typing import Any

from gpulens.remediation.actions.base import ActionFailed


def client(service: str, *, region: str | None, endpoint_url: str | None, timeout: float) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ActionFailed("boto3 is not installed (pip install 'gpulens[aws]')") from exc
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1})
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=config)


def aws_errors() -> tuple[type[BaseException], ...]:
    """The botocore exceptions an AWS call raises for a failed request."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)
