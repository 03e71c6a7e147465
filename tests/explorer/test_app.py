"""The explorer's shell and command: empty states, basic auth, safe defaults, one-line errors."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gpulens.commands.explorer import auth_from_env
from gpulens.dashboards.explorer import ids
from gpulens.dashboards.explorer.app import ExplorerConfig, ExplorerServer, route
from gpulens.dashboards.explorer.queries import Queries
from gpulens.errors import GpulensError
from tests.support.servers import free_port, gpulens_exe, wait_http


@pytest.mark.parametrize(
    ("path", "element", "command"),
    [
        ("/cost", ids.COST_EMPTY, "gpulens ingest cur"),
        ("/utilization", ids.UTIL_EMPTY, "gpulens ingest usage"),
        ("/training", ids.TRAIN_EMPTY, "gpulens ingest runs"),
    ],
)
def test_empty_warehouse_says_which_ingest_to_run(
    tmp_path: Path, path: str, element: str, command: str
) -> None:
    page, freshness, *_ = route(Queries(tmp_path / "empty.duckdb"), path, "")
    rendered = json.dumps(page.to_plotly_json(), default=lambda o: o.to_plotly_json())
    assert element in rendered and command in rendered
    assert freshness == "no usage loaded"


def _get(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_basic_auth_guards_pages_and_callbacks(tmp_path: Path) -> None:
    server = ExplorerServer(
        ExplorerConfig(tmp_path / "w.duckdb", port=free_port(), auth=("finance", "s3cret"))
    )
    server.start()
    try:
        for path in ("/cost", "/_dash-layout", "/_dash-dependencies"):
            assert _get(server.url + path) == 401
            assert _get(server.url + path, "finance:wrong") == 401
            assert _get(server.url + path, "finance:s3cret") == 200
    finally:
        server.stop()


def test_auth_variable_is_user_colon_password() -> None:
    assert auth_from_env("a:b:c") == ("a", "b:c")
    assert auth_from_env(None) is None and auth_from_env("") is None
    with pytest.raises(GpulensError, match="user:password"):
        auth_from_env("nopassword")


def _explorer_on_new_warehouse(port: int, tmp_path: Path) -> list[str]:
    """`gpulens explorer` on `port` with default binding, creating an empty warehouse under tmp_path."""
    return [
        gpulens_exe(),
        "explorer",
        "--port",
        str(port),
        "--create",
        "--warehouse",
        str(tmp_path / "w.duckdb"),
    ]


def test_command_binds_localhost_by_default(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        _explorer_on_new_warehouse(port, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/cost", proc=proc)
        listening = {
            c.laddr for c in __import__("psutil").Process(proc.pid).net_connections() if c.status == "LISTEN"
        }
        assert {(a.ip, a.port) for a in listening} == {("127.0.0.1", port)}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_command_reports_a_busy_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            _explorer_on_new_warehouse(port, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and f"127.0.0.1:{port}" in done.stderr


def test_command_refuses_a_missing_warehouse_instead_of_creating_it(tmp_path: Path) -> None:
    """A mistyped --warehouse used to be created empty and served as a month of zeros."""
    typo = tmp_path / "wharehouse.duckdb"
    done = subprocess.run(
        [gpulens_exe(), "explorer", "--port", str(free_port()), "--warehouse", str(typo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0
    assert str(typo) in done.stderr and "--create" in done.stderr
    assert not typo.exists()
