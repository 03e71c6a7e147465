"""Plain data that crosses the remediation modules: an alert, an action step, an audit record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

Status = Literal["firing", "resolved"]

# docs/design.md §2: the results an audit record may carry. `pending` is the write-ahead line of an action
# that is about to run for real (--execute); its outcome follows as `done` or `failed`.
RESULTS: tuple[str, ...] = ("done", "dry_run", "deduplicated", "rate_limited", "skipped", "failed", "pending")


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Alert:
    """One alert as Alertmanager (or a CloudWatch alarm) describes it.

    `labels` carry `alertname`, `node`, `gpu`, `xid`, the XID `action` class, `team`, `job_id`, ...;
    `fingerprint` is Alertmanager's stable hash of the labels; `starts_at` is its RFC 3339 text.
    """

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    status: Status = "firing"
    fingerprint: str = ""
    starts_at: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen(self.labels))
        object.__setattr__(self, "annotations", _frozen(self.annotations))

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def node(self) -> str | None:
        return self.labels.get("node")

    def to_json(self) -> dict[str, Any]:
        """The alert as the hooks and notifications see it (Alertmanager's field names)."""
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "fingerprint": self.fingerprint,
            "startsAt": self.starts_at,
        }


@dataclass(frozen=True)
class ActionStep:
    """One configured action of a policy rule, built and checked when the policy loads.

    `action` is the action object (its fields are the policy's parameters); `timeout` is seconds per
    attempt; `retries` the extra attempts after a failure, spaced by `backoff` seconds doubling each
    time; `line` the policy line that declared it.
    """

    kind: str
    action: Any
    timeout: float = 30.0
    retries: int = 2
    backoff: float = 1.0
    line: int = 0


@dataclass(frozen=True)
class AuditRecord:
    """One line of the audit log, with exactly the keys of docs/design.md §2.

    `ts` is RFC 3339 UTC; `node`, `gpu` and `xid` are the alert's label values (None when absent).
    """

    ts: str
    alert: str
    fingerprint: str
    node: str | None
    gpu: str | None
    xid: str | None
    action: str
    dry_run: bool
    result: str
