"""`gpulens remediate serve` start-up failures: one line on stderr, exit 1, nothing left running."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.support.servers import gpulens_exe


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [gpulens_exe(), "remediate", "serve", *args], capture_output=True, text=True, timeout=60
    )


def test_an_audit_log_that_cannot_be_written_stops_the_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = serve("--port", "0", "--audit-log", str(blocker / "audit.jsonl"))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(
        f"gpulens remediate: error: {blocker / 'audit.jsonl'}: cannot open the audit log for appending: "
    )


def test_a_port_in_use_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve("--port", str(port), "--audit-log", str(tmp_path / "a.jsonl"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"gpulens remediate: error: cannot listen on 127.0.0.1:{port} (--host/--port): Address already in use"
    ]


def test_bad_usage_is_exit_2() -> None:
    assert serve("--port", "many").returncode == 2
    assert subprocess.run([gpulens_exe(), "remediate"], capture_output=True, timeout=60).returncode == 2
