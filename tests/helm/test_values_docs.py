"""docs/design.md, convention 10: every values.yaml key is commented and maps to a flag, a variable or a
Kubernetes field;
values.yaml and values.schema.json describe the same keys."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from tests.helm.chart import CHART

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):(\s|$)")


def schema() -> dict[str, Any]:
    return dict(json.loads((CHART / "values.schema.json").read_text()))


def resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return resolve(root["$defs"][ref.rsplit("/", 1)[1]], root) if ref else node


def described(path: tuple[str, ...], root: dict[str, Any]) -> bool:
    """True when the schema lists `path` as a key of its own (not inside a pass-through Kubernetes object)."""
    node = root
    for key in path:
        props = resolve(node, root).get("properties")
        if props is None or key not in props:
            return False
        node = props[key]
    return True


def keyed_lines() -> Iterator[tuple[int, tuple[str, ...], str]]:
    """(line number, key path, previous non-blank line) for every mapping key in values.yaml."""
    stack: list[tuple[int, str]] = []
    previous = ""
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), 1):
        match = KEY.match(line)
        if match and not line.lstrip().startswith("#"):
            indent = len(match["indent"])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match["key"]))
            yield number, tuple(k for _, k in stack), previous
        if line.strip():
            previous = line.strip()


def test_every_key_has_a_comment_directly_above() -> None:
    root = schema()
    undocumented = [
        f"values.yaml:{n}: {'.'.join(path)}"
        for n, path, before in keyed_lines()
        if described(path, root) and not before.startswith("#")
    ]
    assert undocumented == []


def test_every_leaf_comment_says_where_the_value_goes() -> None:
    """A leaf's comment names a flag, a variable, a Kubernetes field (->) or what it switches on."""
    root = schema()
    lines = (CHART / "values.yaml").read_text().splitlines()
    vague = []
    for n, path, _ in keyed_lines():
        node = resolve(_node(path, root), root) if described(path, root) else {}
        if not described(path, root) or "properties" in node:
            continue
        comment = _comment_block(lines, n - 1)
        if not re.search(
            r"->|Render|Deploy|Create|Use |Map |Share|Let |Grant|Load|Write|Mail|Add|Carry|See ", comment
        ):
            vague.append(f"values.yaml:{n}: {'.'.join(path)}: {comment[:60]}")
    assert vague == []


def _node(path: tuple[str, ...], root: dict[str, Any]) -> dict[str, Any]:
    node = root
    for key in path:
        node = resolve(node, root)["properties"][key]
    return node


def _comment_block(lines: list[str], index: int) -> str:
    block: list[str] = []
    i = index - 1
    while i >= 0 and lines[i].strip().startswith("#"):
        block.insert(0, lines[i].strip().lstrip("#").strip())
        i -= 1
    return " ".join(block)


def schema_paths(
    node: dict[str, Any], root: dict[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for key, child in resolve(node, root).get("properties", {}).items():
        yield prefix + (key,)
        yield from schema_paths(child, root, prefix + (key,))


def test_values_and_schema_list_the_same_keys() -> None:
    root = schema()
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def present(path: tuple[str, ...]) -> bool:
        node: Any = values
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    missing = [".".join(p) for p in schema_paths(root, root) if not present(p)]
    assert missing == [], "keys in values.schema.json without a default in values.yaml"
    # The other direction: additionalProperties is false throughout, so the schema check of the defaults
    # (test_render.test_the_defaults_satisfy_the_schema) fails on any key the schema does not know.
    assert root["additionalProperties"] is False
