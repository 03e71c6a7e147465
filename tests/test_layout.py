"""docs/design.md §1: the layout and the one-way arrows between components, checked from the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import REPO

FORBIDDEN = {
    "collector": ("gpulens.trainer", "gpulens.attribution", "gpulens.dashboards", "gpulens.remediation"),
    "trainer": ("gpulens.collector", "gpulens.attribution", "gpulens.dashboards", "gpulens.remediation"),
    "attribution": ("gpulens.trainer", "gpulens.dashboards", "gpulens.remediation"),
    "dashboards": ("gpulens.trainer", "gpulens.remediation"),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("component", sorted(FORBIDDEN))
def test_component_imports_point_one_way(component: str) -> None:
    offenders = []
    for path in (REPO / component).rglob("*.py"):
        for name in imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[component]):
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert offenders == []


@pytest.mark.parametrize("package", ["collector", "trainer", "attribution", "dashboards", "remediation"])
def test_component_folders_install_as_gpulens_subpackages(package: str) -> None:
    module = __import__(f"gpulens.{package}", fromlist=["__file__"])
    assert Path(module.__file__).resolve().parent == REPO / package


def test_cli_help_lists_commands_and_exits_zero() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gpulens", "--help"], capture_output=True, text=True, check=True
    )
    assert "COMMAND" in out.stdout


def test_unknown_command_is_bad_usage() -> None:
    out = subprocess.run([sys.executable, "-m", "gpulens", "no-such-command"], capture_output=True, text=True)
    assert out.returncode == 2
