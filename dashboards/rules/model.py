"""Typed Prometheus rule groups that render to the rule-file format Prometheus and promtool read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class Recording:
    """A recording rule: `record` names the series `expr` produces; `labels` are added to it."""

    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"record": self.record, "expr": self.expr}
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


@dataclass(frozen=True)
class Alert:
    """An alerting rule with the annotations every gpulens alert carries (summary, description, runbook)."""

    alert: str
    expr: str
    severity: Severity
    summary: str
    description: str
    runbook_url: str
    for_: str = "0m"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alert": self.alert, "expr": self.expr}
        if self.for_ != "0m":
            out["for"] = self.for_
        out["labels"] = {"severity": self.severity}
        out["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": self.runbook_url,
        }
        return out


@dataclass(frozen=True)
class RuleGroup:
    """One rule group; `interval` is its evaluation interval (None: Prometheus' global one)."""

    name: str
    rules: tuple[Recording | Alert, ...]
    interval: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.interval:
            out["interval"] = self.interval
        out["rules"] = [rule.to_dict() for rule in self.rules]
        return out


def rule_file(groups: tuple[RuleGroup, ...]) -> dict[str, Any]:
    """The document Prometheus loads from `rule_files`."""
    return {"groups": [group.to_dict() for group in groups]}
