"""A training image's install (docs/design.md §1): `pip install gpulens` without extras, plus torch, in a
fresh virtualenv, imports `gpulens.trainer` and runs a monitored step, and pulls none of the
attribution, report or explorer stack.

Slow (it builds a virtualenv and installs torch): `make test` runs it, `make test-fast` leaves it out.
The tree is copied first so that the build leaves nothing (build/, *.egg-info) in the checkout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support.servers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(1200)]

FORBIDDEN = {"duckdb", "pandas", "pyarrow", "dash", "reportlab", "xlsxwriter", "grpcio", "rich", "jsonschema"}
SOURCE_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "*.egg-info", "build", "__pycache__", ".*_cache", "tests", "benchmarks", "*.duckdb*"
)
STEP = """
import json, sys, torch
from gpulens.trainer import StepMonitor
model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
monitor = StepMonitor(job_id="lean", team="t", flops_per_token=6 * 9, socket=sys.argv[1] + "/none.sock",
                      log_path=sys.argv[1] + "/log.jsonl")
with monitor.step(tokens=4) as step:
    loss = model(torch.randn(4, 8)).pow(2).mean()
    loss.backward()
    opt.step()
    step.record(loss=loss)
monitor.close()
"""


def _pip(python: Path, *args: str) -> str:
    out = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_core_install_runs_a_monitored_step_without_the_rest(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=SOURCE_IGNORE)
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    _pip(python, "install", "-q", "torch==2.13.0")
    _pip(python, "install", "-q", str(source))

    run = subprocess.run(
        [str(python), "-c", STEP, str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]  # besides `run` start/end records (§4)
    assert [(r["job_id"], r["step"]) for r in steps] == [("lean", 0)]
    assert steps[0]["loss"] > 0 and steps[0]["step_seconds"] > 0

    # the CLI of a lean install: every command listed, and one without its extra says which to install
    gpulens = tmp_path / "venv" / "bin" / "gpulens"
    assert subprocess.run([str(gpulens), "--help"], capture_output=True, timeout=120).returncode == 0
    warehouse = tmp_path / "w.duckdb"
    warehouse.touch()
    argv = [str(gpulens), "attribute", "--period", "2026-10", "--warehouse", str(warehouse)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stderr.splitlines()) == (
        1,
        [
            "gpulens attribute: error: needs the Python package 'duckdb', which is not installed: "
            "pip install 'gpulens[attribution]'"
        ],
    )

    installed = {p["name"].lower() for p in json.loads(_pip(python, "list", "--format", "json"))}
    (tmp_path / "pip-list.json").write_text(json.dumps(sorted(installed)))
    print("lean install:", sorted(installed), file=sys.stderr)
    assert "gpulens" in installed
    assert installed & FORBIDDEN == set()
