"""What every action shares: its errors, the alert text it sends, and the node it acts on.

An action is a frozen dataclass whose fields are its policy parameters (the policy loader checks
names and types against the fields), with one method, `run(alert, timeout)`. `timeout` is seconds
for this attempt; retries are the engine's job. `run` returns on success, raises `ActionFailed`
(retried) or `ActionSkipped` (the action does not apply to this alert: no node label, hook not installed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar, Protocol

from gpulens.errors import GpulensError
from gpulens.remediation.model import Alert

DEFAULT_MESSAGE = "[{status}] {alertname} node={node} gpu={gpu} xid={xid} ({action}): {summary}"

# Node names go into API paths and scontrol arguments; allow what Kubernetes and Slurm allow.
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class ActionFailed(GpulensError):
    """The action ran and did not succeed; the engine retries it with backoff."""


class ActionSkipped(GpulensError):
    """The action does not apply to this alert; recorded as `skipped`, never retried."""


class Action(Protocol):
    kind: ClassVar[str]
    destructive: ClassVar[bool]  # changes the fleet: never for a resolved alert, never in dry-run
    drains: ClassVar[bool]  # takes a node out of service: counted against the blast radius

    def run(self, alert: Alert, timeout: float) -> None: ...


class _Fields(dict[str, str]):
    """Template fields: every label and annotation, `status`; a missing one renders as '-'."""

    def __missing__(self, key: str) -> str:
        return "-"


def render(template: str, alert: Alert) -> str:
    """`template` with `{label}` fields filled from the alert, e.g. ``gpulens-{team}``."""
    fields = _Fields({**alert.annotations, **alert.labels, "status": alert.status.upper()})
    try:
        return template.format_map(fields)
    except (ValueError, IndexError, AttributeError) as exc:
        raise ActionFailed(f"cannot render {template!r}: {exc}") from exc


def node_of(alert: Alert, label: str) -> str:
    """The node the alert is about, from its `label` label, checked before it reaches an API or a command."""
    node = alert.labels.get(label)
    if not node:
        raise ActionSkipped(f"the alert has no {label!r} label")
    if not _NODE_NAME.match(node):
        raise ActionFailed(f"{node!r} is not a valid node name")
    return node


def short(text: str | bytes, limit: int = 200) -> str:
    """The first line of a command's or server's reply, for an error message."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:limit]


def as_dict(mapping: Mapping[str, str]) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping.items()}
