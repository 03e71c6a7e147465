"""The lean core and its extras (docs/design.md §1): what each extra installs, and what a command says
when its extra is missing versus when gpulens itself has an import bug."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from gpulens.extras import COMMAND_EXTRAS, EXTRA_MODULES, missing_extra
from tests.support.servers import REPO

PACKAGES = ("gpulens", "collector", "trainer", "attribution", "dashboards", "remediation")
# distribution name (pyproject) -> top-level module it installs
DIST_MODULES = {
    "torch": {"torch"},
    "prometheus-client": {"prometheus_client"},
    "nvidia-ml-py": {"pynvml"},
    "orjson": {"orjson"},
    "grpcio": {"grpc"},
    "duckdb": {"duckdb"},
    "pyarrow": {"pyarrow"},
    "rich": {"rich"},
    "reportlab": {"reportlab"},
    "xlsxwriter": {"xlsxwriter"},
    "dash": {"dash", "flask", "werkzeug"},
    "plotly": {"plotly"},
    "pandas": {"pandas"},
    "grafana-client": {"grafana_client", "niquests"},
    "pyyaml": {"yaml"},
    "jsonschema": {"jsonschema"},
    "kubernetes": {"kubernetes", "urllib3"},
    "boto3": {"boto3", "botocore"},
    "numpy": {"numpy"},
    "tensorboard": {"tensorboard"},
}
# imported by the trainer's adapters from the user's own training stack, never installed by gpulens
USER_BROUGHT = {"transformers", "pytorch_lightning", "lightning"}
# installed with NVIDIA's DCGM (datacenter-gpu-manager), not from PyPI; the dcgm backend probes for them
SYSTEM_BROUGHT = {"pydcgm", "dcgm_agent", "dcgm_structs"}


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _extra_modules(extras: dict[str, list[str]], name: str) -> set[str]:
    modules: set[str] = set()
    for requirement in extras[name]:
        nested = re.fullmatch(r"gpulens\[([\w,]+)\]", requirement)
        if nested:
            for inner in nested.group(1).split(","):
                modules |= _extra_modules(extras, inner)
        else:
            modules |= DIST_MODULES[re.split(r"[<>=!\[; ]", requirement, maxsplit=1)[0]]
    return modules


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party module -> the source files that import it (anywhere in the file)."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in {"gpulens", "__future__"}:
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_the_core_has_no_dependencies() -> None:
    """A training image gets gpulens.trainer and the wire format from the standard library alone."""
    assert _pyproject()["project"]["dependencies"] == []  # type: ignore[index]


def test_extra_table_in_code_equals_pyproject() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]  # type: ignore[index]
    for name, modules in EXTRA_MODULES.items():
        assert _extra_modules(extras, name) == set(modules), name
    assert set(extras) - set(EXTRA_MODULES) == {"all", "dev"}
    assert _extra_modules(extras, "all") == set().union(*EXTRA_MODULES.values())


def test_every_third_party_import_is_declared_by_an_extra() -> None:
    declared = set().union(*EXTRA_MODULES.values()) | USER_BROUGHT | SYSTEM_BROUGHT
    undeclared = {m: files for m, files in _third_party_imports().items() if m not in declared}
    assert undeclared == {}


def test_every_command_with_third_party_needs_names_an_existing_extra() -> None:
    commands = {p.stem for p in (REPO / "gpulens" / "commands").glob("*.py") if not p.stem.startswith("_")}
    assert set(COMMAND_EXTRAS) - commands <= {"goodput"}  # goodput: issue 14 adds its module
    assert set(COMMAND_EXTRAS.values()) <= set(EXTRA_MODULES)


@pytest.mark.parametrize(
    ("command", "exc", "extra"),
    [
        ("explorer", ModuleNotFoundError("no", name="duckdb"), "explorer"),  # the command's own extra
        ("runs", ModuleNotFoundError("no", name="duckdb"), "attribution"),  # first extra that has it
        ("agent", ModuleNotFoundError("no", name="grpc"), "kubelet"),
        ("ingest", ModuleNotFoundError("no", name="boto3.session"), "aws"),
        ("ingest", ModuleNotFoundError("no", name="gpulens.attribution.nope"), None),  # a bug
        ("ingest", ModuleNotFoundError("no", name="duckbd"), None),  # a typo: no extra has it
        ("ingest", ImportError("cannot import name 'x' from 'duckdb'", name="duckdb"), None),
    ],
)
def test_missing_extra_tells_an_install_matter_from_a_bug(
    command: str, exc: ImportError, extra: str | None
) -> None:
    assert missing_extra(command, exc) == extra


def _cli(tmp_path: Path, blocked: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """`gpulens ARGV` in a fresh interpreter in which the module `blocked` cannot be imported."""
    script = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None\n"
        "from gpulens.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )


def test_a_missing_package_is_one_line_naming_the_commands_extra(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    warehouse.touch()
    out = _cli(tmp_path, "duckdb", "attribute", "--period", "2026-01", "--warehouse", str(warehouse))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "gpulens attribute: error: needs the Python package 'duckdb', which is not installed: "
        "pip install 'gpulens[attribution]'"
    ]


def test_a_package_missing_at_registration_leaves_the_other_commands_working(tmp_path: Path) -> None:
    """`rules` imports PyYAML as the CLI is built: without it `rules` answers one line, the rest run."""
    out = _cli(tmp_path, "yaml", "rules", "build", "--out", str(tmp_path / "rules"))
    assert (out.returncode, out.stderr.splitlines()) == (
        1,
        [
            "gpulens rules: error: needs the Python package 'yaml', which is not installed: "
            "pip install 'gpulens[grafana]'"
        ],
    )
    assert _cli(tmp_path, "yaml", "--help").returncode == 0


def test_an_import_bug_inside_gpulens_shows_as_a_bug(tmp_path: Path) -> None:
    """A gpulens module that cannot be imported is not an install matter: the traceback stays."""
    warehouse = tmp_path / "w.duckdb"
    warehouse.touch()
    out = _cli(
        tmp_path,
        "gpulens.attribution.warehouse",
        "attribute",
        "--period",
        "2026-01",
        "--warehouse",
        str(warehouse),
    )
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr
    assert "ModuleNotFoundError" in out.stderr and "gpulens.attribution.warehouse" in out.stderr
    assert "pip install" not in out.stderr


def test_an_import_bug_in_a_command_module_is_not_hidden(tmp_path: Path) -> None:
    out = _cli(tmp_path, "gpulens.dashboards.rules.build", "--help")
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr and "pip install" not in out.stderr
