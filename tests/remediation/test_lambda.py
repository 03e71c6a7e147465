"""The Lambda handler: SNS and EventBridge events through the same engine, configured by environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpulens.remediation import lambda_handler
from gpulens.remediation.aws_events import alerts_from_event
from gpulens.remediation.payload import PayloadError
from tests.remediation.conftest import payload, xid_alert


def sns_event(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "Sns": {
                    "Type": "Notification",
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:gpu-alarms",
                    "Subject": "ALARM",
                    "Message": json.dumps(message),
                },
            }
        ]
    }


def cloudwatch_alarm(state: str = "ALARM") -> dict[str, Any]:
    """A CloudWatch alarm notification as SNS delivers it (fields trimmed to those used)."""
    return {
        "AlarmName": "GpuXidNonRecoverable",
        "NewStateValue": state,
        "OldStateValue": "OK",
        "StateChangeTime": "2026-11-27T10:00:00.000+0000",
        "Trigger": {
            "MetricName": "XidErrors",
            "Namespace": "GPULens",
            "Dimensions": [
                {"name": "node", "value": "ip-10-0-1-17"},
                {"name": "gpu", "value": "3"},
                {"name": "xid", "value": "79"},
            ],
        },
    }


def alarm_state_change(state: str = "ALARM") -> dict[str, Any]:
    return {
        "version": "0",
        "source": "aws.cloudwatch",
        "detail-type": "CloudWatch Alarm State Change",
        "time": "2026-11-27T10:00:00Z",
        "detail": {
            "alarmName": "gpu-lost-ip-10-0-1-18",
            "state": {"value": state},
            "configuration": {
                "metrics": [
                    {
                        "metricStat": {
                            "metric": {
                                "namespace": "GPULens",
                                "name": "GpuUp",
                                "dimensions": {"alertname": "GpuLost", "node": "ip-10-0-1-18", "gpu": "5"},
                            }
                        }
                    }
                ]
            },
        },
    }


@pytest.fixture
def lambda_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    audit = tmp_path / "lambda-audit.jsonl"
    monkeypatch.setenv("GPULENS_AUDIT_LOG", str(audit))
    monkeypatch.delenv("GPULENS_POLICY", raising=False)
    monkeypatch.delenv("GPULENS_EXECUTE", raising=False)
    monkeypatch.setattr(lambda_handler, "_engines", {})
    return audit


def test_a_cloudwatch_alarm_via_sns_is_classified_and_drains_in_dry_run(lambda_env: Path) -> None:
    reply = lambda_handler.handler(sns_event(cloudwatch_alarm()), None)
    assert reply == {
        "alerts": 1,
        "decisions": [
            {"action": "log", "result": "dry_run", "node": "ip-10-0-1-17"},
            {"action": "k8s-drain", "result": "dry_run", "node": "ip-10-0-1-17"},
        ],
    }
    # The alarm carries only the XID code; the engine took its class from the collector's catalog.
    assert "action" not in alerts_from_event(sns_event(cloudwatch_alarm()))[0].labels
    # The same alarm again, in the same warm container: deduplicated.
    again = lambda_handler.handler(sns_event(cloudwatch_alarm()), None)
    assert [d["result"] for d in again["decisions"]] == ["deduplicated", "deduplicated"]
    assert len(lambda_env.read_text().splitlines()) == 4


def test_an_ok_transition_is_resolved_and_never_drains(lambda_env: Path) -> None:
    reply = lambda_handler.handler(sns_event(cloudwatch_alarm("OK")), None)
    assert [(d["action"], d["result"]) for d in reply["decisions"]] == [
        ("log", "dry_run"),
        ("k8s-drain", "skipped"),
    ]


def test_an_eventbridge_alarm_state_change_uses_its_alertname_dimension(lambda_env: Path) -> None:
    reply = lambda_handler.handler(alarm_state_change(), None)
    assert [(d["action"], d["node"]) for d in reply["decisions"]] == [
        ("log", "ip-10-0-1-18"),
        ("k8s-drain", "ip-10-0-1-18"),
    ]
    assert lambda_handler.handler(alarm_state_change("INSUFFICIENT_DATA"), None) == {
        "alerts": 0,
        "decisions": [],
    }


def test_an_alertmanager_payload_published_to_sns_is_understood(lambda_env: Path) -> None:
    reply = lambda_handler.handler(sns_event(json.loads(payload(xid_alert("n5")))), None)
    assert reply["decisions"][-1] == {"action": "k8s-drain", "result": "dry_run", "node": "n5"}


def test_our_own_events_are_ignored_and_foreign_ones_refused(lambda_env: Path) -> None:
    ours = {"source": "gpulens.remediation", "detail-type": "GPULens Alert", "detail": xid_alert().to_json()}
    assert lambda_handler.handler(ours, None) == {"alerts": 0, "decisions": []}
    with pytest.raises(PayloadError):
        lambda_handler.handler({"hello": "world"}, None)


def test_execute_and_policy_come_from_the_environment(
    tmp_path: Path, lambda_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - actions: [{action: log}]\n")
    monkeypatch.setenv("GPULENS_POLICY", str(policy))
    monkeypatch.setenv("GPULENS_EXECUTE", "true")
    reply = lambda_handler.handler(sns_event(cloudwatch_alarm()), None)
    assert reply["decisions"] == [{"action": "log", "result": "done", "node": "ip-10-0-1-17"}]
    assert [json.loads(line)["result"] for line in lambda_env.read_text().splitlines()] == ["pending", "done"]
