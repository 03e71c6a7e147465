"""AWS Lambda entry point: SNS or EventBridge events through the same policy engine as the server.

Configure with environment variables (this module is an edge, like the CLI):
`GPULENS_POLICY` (a policy file in the deployment package; default: the shipped policy),
`GPULENS_AUDIT_LOG` (default `/tmp/gpulens-remediation.jsonl`; mount EFS to keep it),
`GPULENS_EXECUTE` (`1` or `true` to act; anything else is dry-run).
The engine is built once per container, so dedup and blast-radius state last while it is warm and
are restored from the audit log when it is not; run with reserved concurrency 1 so one engine sees
every alert.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from gpulens.remediation.app import RemediationConfig, build_engine
from gpulens.remediation.aws_events import alerts_from_event
from gpulens.remediation.engine import Engine

logger = logging.getLogger(__name__)

_engines: dict[RemediationConfig, Engine] = {}


def config_from_environment(environ: dict[str, str]) -> RemediationConfig:
    policy = environ.get("GPULENS_POLICY")
    return RemediationConfig(
        audit_log=Path(environ.get("GPULENS_AUDIT_LOG", "/tmp/gpulens-remediation.jsonl")),
        policy=Path(policy) if policy else None,
        execute=environ.get("GPULENS_EXECUTE", "").lower() in ("1", "true", "yes"),
    )


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda handler: `{"alerts": N, "decisions": [{"action", "result", "node"}, ...]}`."""
    config = config_from_environment(dict(os.environ))
    engine = _engines.get(config)
    if engine is None:
        engine = _engines[config] = build_engine(config)
    alerts = alerts_from_event(event)
    records = engine.handle(alerts)
    return {
        "alerts": len(alerts),
        "decisions": [{"action": r.action, "result": r.result, "node": r.node} for r in records],
    }
