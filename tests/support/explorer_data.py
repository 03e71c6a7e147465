"""The demo month as test data, built once per test session through the real pipeline
(`gpulens.demo.build`: artifacts, then `gpulens ingest cur|usage|runs` and `gpulens attribute`).

Both tests/explorer and tests/demo import the `demo_data` fixture; it builds into one folder under
the session's base temp dir, so whichever suite asks second reuses the first build (build.json).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gpulens.demo.build import DemoBuild, build
from tests.support.servers import gpulens_exe


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> DemoBuild:
    return build(tmp_path_factory.getbasetemp() / "demo-build", say=lambda _: None)


def cli_json(*args: str) -> Any:
    """`gpulens ARGS` as a user runs it (a subprocess), its stdout parsed as JSON."""
    done = subprocess.run([gpulens_exe(), *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def cli_flags(warehouse: Path) -> Any:
    return cli_json("flags", "--format", "json", "--warehouse", str(warehouse))
