"""What every action shares: its errors, the alert text it sends, and the node it acts on.

An action is a frozen dataclass whose fields are its policy parameters (the policy loader checks
names and types against the fields), with one method, `run(alert, timeout)`. `timeout` is seconds
for this attempt; retries are the engine's job. `run` returns on success, raises `ActionFailed`
(retried) or `ActionSkipped` (the action does not apply to this alert: no node label, hook not installed).
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from gpulens.errors import GpulensError
from gpulens.remediation.model import Alert

DEFAULT_MESSAGE = "[{status}] {alertname} node={node} gpu={gpu} xid={xid} ({action}): {summary}"

# Node names go into API paths and scontrol arguments; allow what Kubernetes and Slurm allow. Always
# `fullmatch`: `re.match` with `$` accepts a trailing newline ("node-a\n").
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
# C0/C1 control characters and the Unicode line separators: a label value must not start a log line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class ActionFailed(GpulensError):
    """The action ran and did not succeed; the engine retries it with backoff."""


class ActionSkipped(GpulensError):
    """The action does not apply to this alert; recorded as `skipped`, never retried."""


class Action(Protocol):
    kind: ClassVar[str]
    destructive: ClassVar[bool]  # changes the fleet: never for a resolved alert, never in dry-run
    drains: ClassVar[bool]  # takes a node out of service: counted against the blast radius

    def run(self, alert: Alert, timeout: float) -> None: ...


class Checked(Protocol):
    """An action that can refuse an alert before the engine admits it (takes a rate-limit slot)."""

    def check(self, alert: Alert) -> None: ...


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
    if not _NODE_NAME.fullmatch(node):
        raise ActionFailed(f"{node!r} is not a valid node name")
    return node


def check(action: Any, alert: Alert) -> None:
    """Raise `ActionFailed`/`ActionSkipped` when `action` cannot apply to `alert`, before any budget is
    spent (a node name that is not one, a hook argument that would pass as an option)."""
    checker = getattr(action, "check", None)
    if checker is not None:
        checker(alert)


def used_labels(action: Any) -> tuple[str, ...]:
    """The labels an action acts on: its alert's identity for de-duplication (with the alert's name).

    A drain acts on one node whatever its message says, so its node label alone; any other action on
    the labels its templates name (`{job_id}` in a hook's argv, `{node}` in a message).
    """
    if getattr(action, "drains", False):
        return (str(action.node_label),)
    names: set[str] = set()
    for f in dataclasses.fields(action):
        value = getattr(action, f.name)
        texts = (
            value
            if isinstance(value, (list, tuple))
            else value.values()
            if isinstance(value, dict)
            else [value]
        )
        for text in texts:
            if isinstance(text, str):
                names.update(field for _, field, _, _ in string.Formatter().parse(text) if field)
    return tuple(sorted(names))


def printable(text: str) -> str:
    """`text` with control characters escaped (``\\n``, ``\\x1b``): one log record stays one line."""
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def short(text: str | bytes, limit: int = 200) -> str:
    """The first line of a command's or server's reply, for an error message."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:limit]


def as_dict(mapping: Mapping[str, str]) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping.items()}
