"""Assembly shared by `gpulens remediate serve` and the Lambda handler: policy + audit log -> engine."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpulens.remediation.audit import AuditLog
from gpulens.remediation.engine import Engine, EngineOptions
from gpulens.remediation.model import AuditRecord
from gpulens.remediation.policy import load_policy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemediationConfig:
    """`policy` None means the shipped default; `execute` False is dry-run."""

    audit_log: Path
    policy: Path | None = None
    execute: bool = False


def build_engine(
    config: RemediationConfig, observe: Callable[[AuditRecord], None] = lambda r: None
) -> Engine:
    """Load and check the policy, open the audit log, and restore state from it; errors stop the start."""
    policy = load_policy(config.policy)
    audit = AuditLog(config.audit_log)
    engine = Engine(policy, audit, EngineOptions(execute=config.execute), observe=observe)
    restored = engine.restore()
    logger.debug("%d recent decisions restored from %s", restored, config.audit_log)
    return engine
