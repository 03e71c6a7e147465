"""The remediation policy: which alerts get which ordered actions, and the safety settings.

A policy is YAML (the shipped one is `default_policy.yaml`, which documents every key). It is
checked whole when it loads — unknown keys, unknown actions, missing or mistyped parameters, bad
templates — and each error names the line, so a broken policy stops the server at start instead
of failing on the night a GPU falls off the bus.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import re
import string
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gpulens.remediation.actions import ACTIONS
from gpulens.remediation.located_yaml import Located, PolicyError, load_located
from gpulens.remediation.model import ActionStep, Alert
from gpulens.remediation.safety import BlastRadiusLimit, HookLimitSettings

STEP_KEYS = {"action": str, "timeout_seconds": float, "retries": int, "backoff_seconds": float}


@dataclass(frozen=True)
class Rule:
    """Alerts whose labels equal one of `match`'s values and match every `match_re` pattern (fully)."""

    name: str
    match: Mapping[str, tuple[str, ...]]
    match_re: Mapping[str, re.Pattern[str]]
    actions: tuple[ActionStep, ...]
    line: int = 0

    def matches(self, alert: Alert) -> bool:
        labels = alert.labels
        return all(labels.get(k) in allowed for k, allowed in self.match.items()) and all(
            pattern.fullmatch(labels.get(k, "")) for k, pattern in self.match_re.items()
        )


@dataclass(frozen=True)
class Settings:
    """`dedup_window` seconds; `blast_radius` the drain limit; `hooks` the limit on `command` runs;
    `escalate` runs instead of a refused drain."""

    dedup_window: float = 3600.0
    blast_radius: BlastRadiusLimit = field(default_factory=BlastRadiusLimit)
    hooks: HookLimitSettings = field(default_factory=HookLimitSettings)
    escalate: tuple[ActionStep, ...] = ()


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    settings: Settings
    source: str

    def rule_for(self, alert: Alert) -> Rule | None:
        """The first rule that matches, as in an Alertmanager route without `continue`."""
        return next((rule for rule in self.rules if rule.matches(alert)), None)


def default_policy_text() -> str:
    return resources.files("gpulens.remediation").joinpath("default_policy.yaml").read_text(encoding="utf-8")


def load_policy(path: Path | None) -> Policy:
    """The policy in `path`, or the shipped default policy when `path` is None."""
    if path is None:
        return parse_policy(default_policy_text(), "default_policy.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read the policy: {exc.strerror}", path=path) from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str) -> Policy:
    doc = load_located(text, source)
    reader = _Reader(source)
    top = reader.mapping(doc, 1, "the policy")
    reader.only(top, {"version", "settings", "rules"})
    if top.get("version", 1) != 1:
        raise reader.error(top.line_of("version"), "only policy version 1 is understood")
    settings = _settings(reader, top.get("settings", Located(top.line)), top.line_of("settings"))
    rules_node = reader.sequence(top.get("rules"), top.line_of("rules"), "rules")
    rules = tuple(_rule(reader, node, top.line_of("rules"), i) for i, node in enumerate(rules_node))
    if not rules:
        raise reader.error(top.line_of("rules"), "the policy has no rules")
    return Policy(rules=rules, settings=settings, source=source)


def _settings(reader: _Reader, node: Any, line: int) -> Settings:
    node = reader.mapping(node, line, "settings")
    reader.only(node, {"dedup_window_seconds", "blast_radius", "hooks", "escalate"})
    blast = reader.mapping(
        node.get("blast_radius", Located(node.line)), node.line_of("blast_radius"), "blast_radius"
    )
    reader.only(blast, {"max_nodes_per_hour", "max_fleet_fraction_per_hour", "fleet_size"})
    limit = BlastRadiusLimit(
        max_nodes=reader.number(blast, "max_nodes_per_hour", int, BlastRadiusLimit.max_nodes),
        max_fraction=reader.number(
            blast, "max_fleet_fraction_per_hour", float, BlastRadiusLimit.max_fraction
        ),
        fleet_size=reader.number(blast, "fleet_size", int, BlastRadiusLimit.fleet_size),
    )
    hooks = _hook_limit(reader, node.get("hooks", Located(node.line)), node.line_of("hooks"))
    escalate = tuple(
        _step(reader, step, node.line_of("escalate"))
        for step in reader.sequence(node.get("escalate", []), node.line_of("escalate"), "escalate")
    )
    for step in escalate:
        if step.action.destructive:  # escalation replaces a refused drain; it must not be one
            raise reader.error(step.line, f"escalate may only notify; {step.kind!r} changes the fleet")
    return Settings(
        dedup_window=reader.number(node, "dedup_window_seconds", float, Settings.dedup_window),
        blast_radius=limit,
        hooks=hooks,
        escalate=escalate,
    )


def _hook_limit(reader: _Reader, node: Any, line: int) -> HookLimitSettings:
    node = reader.mapping(node, line, "hooks")
    reader.only(node, {"max_per_job_per_hour", "max_per_hour", "job_label"})
    job_label = node.get("job_label", HookLimitSettings.job_label)
    if not isinstance(job_label, str) or not job_label:
        raise reader.error(node.line_of("job_label"), f"job_label must be a label name, not {job_label!r}")
    return HookLimitSettings(
        max_per_job=reader.number(node, "max_per_job_per_hour", int, HookLimitSettings.max_per_job),
        max_total=reader.number(node, "max_per_hour", int, HookLimitSettings.max_total),
        job_label=job_label,
    )


def _rule(reader: _Reader, node: Any, line: int, index: int) -> Rule:
    node = reader.mapping(node, line, f"rule {index + 1}")
    reader.only(node, {"name", "match", "match_re", "actions"})
    name = str(node.get("name", f"rule-{index + 1}"))
    match = reader.mapping(node.get("match", Located(node.line)), node.line_of("match"), "match")
    match_re = reader.mapping(node.get("match_re", Located(node.line)), node.line_of("match_re"), "match_re")
    steps = reader.sequence(node.get("actions"), node.line_of("actions"), f"rule {name!r} actions")
    if not steps:
        raise reader.error(node.line_of("actions"), f"rule {name!r} has no actions")
    return Rule(
        name=name,
        match={str(k): reader.values(v, match.line_of(k), k) for k, v in match.items()},
        match_re={str(k): reader.pattern(v, match_re.line_of(k), k) for k, v in match_re.items()},
        actions=tuple(_step(reader, step, node.line_of("actions")) for step in steps),
        line=node.line,
    )


def _step(reader: _Reader, node: Any, line: int) -> ActionStep:
    node = reader.mapping(node, line, "an action")
    kind = node.get("action")
    if not isinstance(kind, str):
        raise reader.error(node.line, "an action needs `action: NAME`")
    if kind not in ACTIONS:
        known = ", ".join(sorted(ACTIONS))
        raise reader.error(node.line_of("action"), f"unknown action {kind!r} (known: {known})")
    params = {k: v for k, v in node.items() if k not in STEP_KEYS}
    return ActionStep(
        kind=kind,
        action=_build(reader, kind, params, node),
        timeout=reader.number(node, "timeout_seconds", float, 30.0, positive=True),
        retries=reader.number(node, "retries", int, 2),
        backoff=reader.number(node, "backoff_seconds", float, 1.0),
        line=node.line,
    )


def _build(reader: _Reader, kind: str, params: dict[str, Any], node: Located) -> Any:
    """The action object, after checking `params` against its dataclass fields and their types."""
    cls = ACTIONS[kind]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in params.items():
        if key not in fields:
            allowed = ", ".join(sorted([*fields, *STEP_KEYS]))
            raise reader.error(node.line_of(key), f"{kind}: unknown parameter {key!r} (allowed: {allowed})")
        if not _conforms(value, hints[key]):
            raise reader.error(
                node.line_of(key), f"{kind}: {key} must be {_describe(hints[key])}, not {value!r}"
            )
        _check_templates(reader, value, node.line_of(key), key)
    missing = [name for name, f in fields.items() if name not in params and _required(f)]
    if missing:
        raise reader.error(node.line, f"{kind}: missing parameter {missing[0]!r}")
    return cls(**params)


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _conforms(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin in (collections.abc.Sequence, list):
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin in (collections.abc.Mapping, dict):
        return isinstance(value, dict) and all(
            _conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items()
        )
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    text = str(hint) if typing.get_origin(hint) else hint.__name__
    return text.replace("typing.", "").replace("collections.abc.", "").replace("NoneType", "null")


def _check_templates(reader: _Reader, value: Any, line: int, key: str) -> None:
    """`{label}` templates are parsed now so that a typo fails at start, not at the first alert."""
    texts = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
    for text in texts:
        if isinstance(text, str):
            try:
                list(string.Formatter().parse(text))
            except ValueError as exc:
                raise reader.error(line, f"{key}: bad template {text!r}: {exc}") from None


class _Reader:
    """Type checks over located YAML that raise `PolicyError`s naming the source and line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, line: int, message: str) -> PolicyError:
        return PolicyError(f"line {line}: {message}", path=self.source)

    def mapping(self, node: Any, line: int, what: str) -> Located:
        if not isinstance(node, Located):
            raise self.error(line, f"{what} must be a mapping (key: value), not {_kind(node)}")
        return node

    def sequence(self, node: Any, line: int, what: str) -> list[Any]:
        if not isinstance(node, list):
            raise self.error(line, f"{what} must be a list (- item), not {_kind(node)}")
        return node

    def only(self, node: Located, allowed: set[str]) -> None:
        for key in node:
            if key not in allowed:
                raise self.error(
                    node.line_of(key), f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})"
                )

    def number(self, node: Located, key: str, kind: type, default: Any, *, positive: bool = False) -> Any:
        value = node.get(key, default)
        if not _conforms(value, kind) or value < 0 or (positive and value == 0):
            sign = "a positive" if positive else "a non-negative"
            raise self.error(node.line_of(key), f"{key} must be {sign} {kind.__name__}, not {value!r}")
        return kind(value)

    def values(self, node: Any, line: int, key: str) -> tuple[str, ...]:
        items = node if isinstance(node, list) else [node]
        if not items or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in items):
            raise self.error(line, f"match {key!r} must be a value or a list of values, not {node!r}")
        return tuple(str(v) for v in items)

    def pattern(self, node: Any, line: int, key: str) -> re.Pattern[str]:
        if not isinstance(node, str):
            raise self.error(line, f"match_re {key!r} must be a regular expression string")
        try:
            return re.compile(node)
        except re.error as exc:
            raise self.error(line, f"match_re {key!r}: bad regular expression: {exc}") from None


def _kind(node: Any) -> str:
    return "nothing" if node is None else type(node).__name__.replace("Located", "mapping")
