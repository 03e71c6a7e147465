"""YAML that remembers where things are: mappings carry the line of each key, for error messages."""

from __future__ import annotations

from typing import Any

import yaml

from gpulens.errors import GpulensError


class PolicyError(GpulensError):
    """A policy file that cannot be used; the message starts with the line at fault."""


class Located(dict[Any, Any]):
    """A YAML mapping with `line` (its first line) and `lines[key]` (each key's line), 1-based."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, self.line)


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    mapping = Located(node.start_mark.line + 1)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise _error(loader, line, f"a key must be a plain value, not {key!r}")
        if key in mapping:
            raise _error(loader, line, f"duplicate key {key!r} (first on line {mapping.lines[key]})")
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = line
    return mapping


def _error(loader: _Loader, line: int, message: str) -> PolicyError:
    return PolicyError(f"line {line}: {message}", path=loader.name)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_located(text: str, source: str) -> Any:
    """Parse one YAML document; syntax errors become a `PolicyError` naming `source` and the line."""
    loader = _Loader(text)
    loader.name = source
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise PolicyError(f"line {line}: YAML syntax: {exc.problem or exc.context}", path=source) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"YAML syntax: {exc}", path=source) from None
    finally:
        loader.dispose()
