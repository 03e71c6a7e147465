"""`gpulens remediate serve` start-up failures: one line on stderr, exit 1, nothing left running."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import gpulens_exe

TOKEN_ENV = "GPULENS_REMEDIATE_TOKEN"


def serve(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token is not None:
        env[TOKEN_ENV] = token
    return subprocess.run(
        [gpulens_exe(), "remediate", "serve", *args], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.parametrize("token", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_execute_without_a_token_refuses_to_start(tmp_path: Path, token: str | None) -> None:
    # Issue 15, item 1: an executing receiver without a token would let anyone who reaches it drain nodes.
    audit = tmp_path / "audit.jsonl"
    done = serve("--execute", "--host", "0.0.0.0", "--port", "0", "--audit-log", str(audit), token=token)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"gpulens remediate: error: --execute requires a bearer token: set ${TOKEN_ENV} to a non-empty secret"
    ]
    assert not audit.exists()  # refused before anything was opened


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
