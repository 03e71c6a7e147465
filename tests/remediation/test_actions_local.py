"""slurm-drain with a fake `scontrol` on PATH, `command` with real hooks, `webhook` against a real
HTTP sink."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpulens.remediation.actions import ActionFailed, ActionSkipped
from gpulens.remediation.actions.base import printable
from gpulens.remediation.actions.command import CommandAction
from gpulens.remediation.actions.slurm import SlurmDrainAction
from gpulens.remediation.actions.webhook import WebhookAction
from gpulens.remediation.model import Alert
from tests.remediation.conftest import xid_alert
from tests.remediation.scripts import fake_scontrol, parse_scontrol_calls, recording_hook
from tests.support.remediation_servers import WebhookSink


@pytest.fixture
def scontrol_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    calls = tmp_path / "scontrol.calls"
    fake_scontrol(tmp_path / "bin", calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    return calls


def test_slurm_drain_runs_scontrol_update_with_a_reason(scontrol_calls: Path) -> None:
    SlurmDrainAction().run(xid_alert("gpu-node-7"), timeout=10)
    assert parse_scontrol_calls(scontrol_calls) == [
        ["update", "NodeName=gpu-node-7", "State=DRAIN", "Reason=gpulens: GpuXidNonRecoverable gpu=3 xid=79"]
    ]


def test_slurm_drain_reports_scontrol_errors(tmp_path: Path) -> None:
    failing = fake_scontrol(tmp_path / "bin", tmp_path / "calls", exit_code=1)
    with pytest.raises(ActionFailed, match="exited 1: slurm_update error: Invalid node name"):
        SlurmDrainAction(scontrol=str(failing)).run(xid_alert(), timeout=10)


def test_slurm_drain_refuses_node_names_that_are_not_names(scontrol_calls: Path) -> None:
    with pytest.raises(ActionFailed, match="not a valid node name"):
        SlurmDrainAction().run(xid_alert("n1 State=RESUME"), timeout=10)
    with pytest.raises(ActionFailed, match="not a valid node name"):  # `re.match` with `$` let this in
        SlurmDrainAction().run(xid_alert("n1\n"), timeout=10)
    with pytest.raises(ActionSkipped, match="no 'node' label"):
        SlurmDrainAction().run(Alert(labels={"alertname": "GpuLost"}), timeout=10)
    assert parse_scontrol_calls(scontrol_calls) == []


def test_command_gets_the_alert_json_on_stdin_and_templated_arguments(tmp_path: Path) -> None:
    record = tmp_path / "hook.out"
    hook = recording_hook(tmp_path / "restart-job", record)
    alert = Alert(
        labels={
            "alertname": "GpuXidRecoverable",
            "node": "n2",
            "job_id": "bgpt-50b",
            "action": "restart_app",
        },
        fingerprint="abc",
        starts_at="2026-11-27T10:00:00Z",
    )
    CommandAction(argv=[str(hook), "{job_id}", "--node={node}"]).run(alert, timeout=10)
    stdin, args = record.read_text().rsplit("\nargs:", 1)
    assert json.loads(stdin) == {
        "status": "firing",
        "labels": dict(alert.labels),
        "annotations": {},
        "fingerprint": "abc",
        "startsAt": "2026-11-27T10:00:00Z",
    }
    assert args.strip() == "bgpt-50b --node=n2"


def test_an_optional_hook_that_is_not_installed_is_skipped(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-hook")
    with pytest.raises(ActionSkipped, match="not installed"):
        CommandAction(argv=[missing], optional=True).run(xid_alert(), timeout=5)
    with pytest.raises(ActionFailed, match="not found"):
        CommandAction(argv=[missing]).run(xid_alert(), timeout=5)


def test_webhook_posts_slack_compatible_text_and_the_alert() -> None:
    sink = WebhookSink()
    with sink.running() as url:
        WebhookAction(url=url, message="{alertname} on {node}: {summary}").run(xid_alert("n3"), timeout=5)
    (body,) = sink.bodies
    assert body["text"] == "GpuXidNonRecoverable on n3: Non-recoverable XID 79 on GPU 3 of n3"
    assert body["alert"]["labels"]["xid"] == "79"


def test_webhook_failure_does_not_leak_the_url() -> None:
    sink = WebhookSink(status=500)
    with sink.running() as url, pytest.raises(ActionFailed) as caught:
        WebhookAction(url=f"{url}/services/T000/B000/SECRET").run(xid_alert(), timeout=5)
    assert str(caught.value) == "webhook answered HTTP 500"


def test_printable_escapes_what_would_start_a_new_log_line() -> None:
    assert printable("n1\nFORGED\r\x1b[31m\u2028ok") == "n1\\nFORGED\\r\\x1b[31m\\u2028ok"
