"""`gpulens dashboards push` against a local stand-in for Grafana's API (tests/grafana/grafana_server.py):
the requests it makes, folder handling, overwrite, datasource by UID, idempotence, clear errors."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from gpulens.dashboards.grafana.build import dashboards
from gpulens.dashboards.grafana.push import GrafanaTarget, push
from gpulens.errors import GpulensError
from tests.grafana.grafana_server import PASSWORD, TOKEN, USER, State, run_grafana
from tests.support.servers import free_port

UIDS = ["gpulens-fleet", "gpulens-node", "gpulens-training", "gpulens-team"]


def state() -> State:
    s = State()
    s.datasources["prom-main"] = {"uid": "prom-main", "name": "Prometheus (main)", "type": "prometheus"}
    s.datasources["loki"] = {"uid": "loki", "name": "Loki", "type": "loki"}
    return s


def datasource_var(dashboard: dict[str, object]) -> dict[str, object]:
    templating = dashboard["templating"]
    assert isinstance(templating, dict)
    return next(v for v in templating["list"] if v["type"] == "datasource")


def test_first_push_creates_folder_and_dashboards_with_the_datasource() -> None:
    s = state()
    with run_grafana(s) as url:
        results = push(
            GrafanaTarget(url, token=TOKEN, folder="GPU fleet", datasource_uid="prom-main"), dashboards()
        )
    assert [(r.uid, r.status) for r in results] == [(uid, "created") for uid in UIDS]
    assert [(r.method, r.path) for r in s.requests] == [
        ("GET", "/api/health"),
        ("GET", "/api/datasources/uid/prom-main"),
        ("GET", "/api/folders"),
        ("POST", "/api/folders"),
        *[
            step
            for uid in UIDS
            for step in (("GET", f"/api/dashboards/uid/{uid}"), ("POST", "/api/dashboards/db"))
        ],
    ]
    assert all(r.authorization == f"Bearer {TOKEN}" for r in s.requests[1:])
    assert s.requests[3].body == {"title": "GPU fleet", "uid": "gpu-fleet"}
    for request in s.writes()[1:]:
        body = request.body
        assert body["folderUid"] == "gpu-fleet" and body["overwrite"] is True
        assert body["dashboard"]["id"] is None
        assert datasource_var(body["dashboard"])["current"] == {
            "selected": True,
            "text": "Prometheus (main)",
            "value": "prom-main",
        }
    # Everything but the datasource's current value is the committed JSON.
    sent = s.writes()[1].body["dashboard"]
    expected = dashboards()["gpulens-fleet-overview.json"]
    assert {k: v for k, v in sent.items() if k not in ("id", "templating")} == {
        k: v for k, v in expected.items() if k != "templating"
    }


def test_second_push_changes_nothing_and_a_changed_dashboard_is_overwritten() -> None:
    s = state()
    with run_grafana(s) as url:
        target = GrafanaTarget(url, user=USER, password=PASSWORD)
        push(target, dashboards())
        writes_after_first = len(s.writes())
        again = push(target, dashboards())
        assert [r.status for r in again] == ["unchanged"] * 4
        assert len(s.writes()) == writes_after_first  # no folder, no new dashboard version
        s.dashboards["gpulens-team"]["dashboard"]["title"] = "edited in the UI"
        third = push(target, dashboards())
    assert [r.status for r in third] == ["unchanged", "unchanged", "unchanged", "updated"]
    assert s.dashboards["gpulens-team"]["dashboard"]["title"] == "gpulens / Team usage"
    assert s.dashboards["gpulens-team"]["dashboard"]["version"] == 2
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert s.writes()[-1].authorization == f"Basic {basic}"
    assert len(s.folders) == 1


def test_existing_folder_is_reused_by_title() -> None:
    s = state()
    s.folders["abc123"] = {"id": 1, "uid": "abc123", "title": "gpulens"}
    with run_grafana(s) as url:
        push(GrafanaTarget(url, token=TOKEN), dashboards())
    assert all(r.path != "/api/folders" for r in s.writes())
    assert {d["meta"]["folderUid"] for d in s.dashboards.values()} == {"abc123"}
    # Without --datasource-uid the variable is left for Grafana's default Prometheus data source.
    assert datasource_var(s.dashboards["gpulens-fleet"]["dashboard"])["current"] == {}


@pytest.mark.parametrize(
    ("target_args", "message"),
    [
        ({"token": "wrong"}, "rejected the credentials (HTTP 401) while listing folders: check --token"),
        (
            {"token": TOKEN, "datasource_uid": "nope"},
            "column --datasource-uid: Grafana has no data source with uid 'nope'",
        ),
        ({"token": TOKEN, "datasource_uid": "loki"}, "data source 'loki' is of type 'loki', not prometheus"),
    ],
)
def test_errors_name_the_problem(target_args: dict[str, str], message: str) -> None:
    s = state()
    with run_grafana(s) as url, pytest.raises(GpulensError) as raised:
        push(GrafanaTarget(url, **target_args), dashboards())
    assert message in str(raised.value)
    assert s.dashboards == {} and s.folders == {}


def run_cli(*args: str, env_token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = None if env_token is None else os.environ | {"GRAFANA_TOKEN": env_token}
    return subprocess.run(
        [sys.executable, "-m", "gpulens", "dashboards", "push", *args],
        capture_output=True,
        text=True,
        env=env,
    )


def test_cli_bad_token_is_one_line_without_the_secret() -> None:
    with run_grafana(state()) as url:
        out = run_cli("--url", url, "--token", "glsa_wrong_secret")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "rejected the credentials (HTTP 401)" in out.stderr
    assert "glsa_wrong_secret" not in out.stderr + out.stdout


def test_cli_unreachable_url_and_url_with_credentials_are_redacted() -> None:
    port = free_port()
    out = run_cli("--url", f"http://admin:hunter2@127.0.0.1:{port}", "--token", "t")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert f"cannot reach Grafana at http://127.0.0.1:{port}" in out.stderr and "hunter2" not in out.stderr


def test_cli_pushes_with_token_from_environment() -> None:
    s = state()
    with run_grafana(s) as url:
        out = run_cli("--url", url, "--folder", "GPUs", "--datasource-uid", "prom-main", env_token=TOKEN)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "created   gpulens-fleet  gpulens / Fleet overview",
        "created   gpulens-node  gpulens / Node & GPU",
        "created   gpulens-training  gpulens / Training job",
        "created   gpulens-team  gpulens / Team usage",
    ]
    assert sorted(s.dashboards) == sorted(UIDS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "grafana.local"], "column --url: is not an http(s) URL of a Grafana server"),
        (["--url", "http://127.0.0.1:3000", "--user", "admin"], "--user needs --password"),
        (["--url", "http://127.0.0.1:3000"], "give --token (or $GRAFANA_TOKEN), or --user and --password"),
    ],
)
def test_cli_usage_errors(args: list[str], message: str) -> None:
    out = run_cli(*args, "--token", "t") if args[1] == "grafana.local" else run_cli(*args, env_token="")
    assert out.returncode == 1 and message in out.stderr and out.stderr.count("\n") == 1


def test_cli_token_and_user_are_mutually_exclusive() -> None:
    out = run_cli("--url", "http://127.0.0.1:3000", "--token", "t", "--user", "u")
    assert out.returncode == 2
