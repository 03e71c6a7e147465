"""Which extra installs what (docs/design.md §1): the table behind "pip install 'gpulens[X]'".

The core distribution has no dependencies, so that a training image gets `gpulens.trainer` and the
wire format alone; each command's third-party packages come with the extra named for what it
serves. The CLI asks this module whether an ImportError is a missing extra (an install matter: one
line naming it) or a bug (a gpulens module, or a package no extra declares). `tests/test_extras.py`
holds these tables equal to pyproject.toml's optional-dependencies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# Top-level import names each extra brings, including those of the extras it names and the packages
# that come with its distributions and that gpulens imports directly (flask with dash, ...).
_ATTRIBUTION: Final = frozenset({"duckdb", "pyarrow", "rich", "orjson"})
_AGENT: Final = frozenset({"prometheus_client", "pynvml", "orjson"})
_TRAINER: Final = frozenset({"torch", "prometheus_client", "orjson"})
_EXPLORER: Final = _ATTRIBUTION | {"dash", "flask", "werkzeug", "plotly", "pandas"}

EXTRA_MODULES: Final[Mapping[str, frozenset[str]]] = {
    "trainer": _TRAINER,
    "agent": _AGENT,
    "kubelet": frozenset({"grpc"}),
    "attribution": _ATTRIBUTION,
    "report": _ATTRIBUTION | {"reportlab", "xlsxwriter"},
    "explorer": _EXPLORER,
    "grafana": frozenset({"grafana_client", "niquests", "yaml", "jsonschema"}),
    "remediation": frozenset({"kubernetes", "urllib3", "yaml", "prometheus_client"}),
    "aws": frozenset({"boto3", "botocore"}),
    "logs": frozenset({"tensorboard"}),
    "demo": _AGENT | _EXPLORER | _TRAINER | {"numpy"},
}

# The extra that serves each command; a command not listed runs on the core alone.
COMMAND_EXTRAS: Final[Mapping[str, str]] = {
    "agent": "agent",
    "attribute": "attribution",
    "dashboards": "grafana",
    "demo": "demo",
    "explorer": "explorer",
    "flags": "attribution",
    "goodput": "attribution",
    "ingest": "attribution",
    "remediate": "remediation",
    "report": "report",
    "rules": "grafana",
    "train": "trainer",
}


def missing_extra(command: str, exc: ImportError) -> str | None:
    """The extra to install for `command` when `exc` is a package an extra declares, else None.

    None means the ImportError is not an install matter (a gpulens module, a name that cannot be
    imported from an installed package, a package nothing declares): a bug, to be shown as one.
    The command's own extra is named when it brings the package (`explorer`, not `attribution`,
    for duckdb under `gpulens explorer`); else the first extra that does (`aws` for boto3).
    """
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.partition(".")[0]
    own = COMMAND_EXTRAS.get(command)
    if own is not None and module in EXTRA_MODULES[own]:
        return own
    return next((extra for extra, modules in EXTRA_MODULES.items() if module in modules), None)


def install_hint(extra: str) -> str:
    return f"pip install 'gpulens[{extra}]'"
