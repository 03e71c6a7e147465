"""Builds the demo warehouse: writes the scenario's artifacts, then loads them with the same
`gpulens ingest ...` and `gpulens attribute` commands a user runs (their handlers, in process).

A second build with the same seed and period finds `build.json` beside a warehouse and reuses both.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gpulens.demo.artifacts import Artifacts, artifact_paths, write_artifacts
from gpulens.demo.scenario import Scenario, build_scenario
from gpulens.errors import GpulensError

BUILD_VERSION = 2  # bump when the scenario or its artifacts change shape, so old demo folders rebuild


@dataclass(frozen=True)
class DemoBuild:
    workdir: Path
    warehouse: Path
    scenario: Scenario
    artifacts: Artifacts
    reused: bool
    summary: dict[str, object]  # `gpulens attribute --format json` of the period


def build(
    workdir: Path,
    *,
    seed: int = 7,
    period: str = "2026-10",
    rebuild: bool = False,
    say: Callable[[str], None] = print,
) -> DemoBuild:
    """The demo warehouse under `workdir`, built now or reused from an earlier run."""
    scenario = build_scenario(period, seed)
    warehouse = workdir / "gpulens.duckdb"
    stamp = workdir / "build.json"
    expected = {"version": BUILD_VERSION, "seed": seed, "period": period}
    if not rebuild and warehouse.exists() and stamp.exists():
        recorded = json.loads(stamp.read_text())
        if {k: recorded.get(k) for k in expected} == expected:
            say(f"reusing the demo month built earlier in {workdir} (--rebuild to start over)")
            return DemoBuild(
                workdir,
                warehouse,
                scenario,
                artifact_paths(workdir / "artifacts", period),
                True,
                recorded.get("summary", {}),
            )
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in (warehouse, warehouse.with_name(warehouse.name + ".wal"), stamp):
        stale.unlink(missing_ok=True)
    t0 = time.monotonic()
    say(f"writing a simulated {period} for 16 GPU nodes (CUR 2.0, usage rollups, trainer logs) ...")
    artifacts = write_artifacts(scenario, workdir / "artifacts")
    summary = load(artifacts, warehouse, period, say=say)
    stamp.write_text(json.dumps({**expected, "summary": summary}, indent=2))
    say(f"demo month ready in {time.monotonic() - t0:.0f} s")
    return DemoBuild(workdir, warehouse, scenario, artifacts, False, summary)


def load(
    artifacts: Artifacts, warehouse: Path, period: str, *, say: Callable[[str], None] = print
) -> dict[str, object]:
    """Runs the user's commands on the artifacts; returns the amortized allocation summary."""
    wh = ["--warehouse", str(warehouse)]
    steps: list[tuple[str, list[str]]] = [
        ("ingest cur", ["ingest", "cur", str(artifacts.cur_dir), *wh]),
        ("ingest usage", ["ingest", "usage", str(artifacts.usage_file), *wh]),
        ("ingest runs", ["ingest", "runs", *map(str, artifacts.run_files), *wh]),
        (
            "attribute (billed)",
            ["attribute", "--period", period, "--cost", "billed", "--format", "json", *wh],
        ),
        ("attribute", ["attribute", "--period", period, "--format", "json", *wh]),
    ]
    out = ""
    for name, argv in steps:
        say(f"  gpulens {name} ...")
        out = run_command(argv)
    return dict(json.loads(out))


def run_command(argv: Sequence[str]) -> str:
    """`gpulens ARGV` through the CLI's own entry point; its stdout, or a GpulensError on failure."""
    from gpulens import cli

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(list(argv))
    if code != 0:
        detail = stderr.getvalue().strip().splitlines()
        raise GpulensError(
            f"`gpulens {' '.join(argv[:2])}` failed: {detail[-1] if detail else f'exit {code}'}"
        )
    return stdout.getvalue()
