"""benchmarks/gpu/trainer_sync_check.py: the parts that run without a GPU (the lead runs it on an H100)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.servers import REPO

SCRIPT = REPO / "benchmarks" / "gpu" / "trainer_sync_check.py"


def test_without_cuda_it_says_so_and_exits_cleanly() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert "no CUDA device available" in out.stdout and "Traceback" not in out.stderr


def test_the_same_code_on_the_cpu_checks_records_and_prints_the_table() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--device",
            "cpu",
            "--steps",
            "12",
            "--rounds",
            "1",
            "--round-steps",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "records and the NaN at step 9 checked" in out.stdout
    for variant in ("bare loop", "StepMonitor", "naive synchronize() timer"):
        assert f"| {variant} |" in out.stdout
