"""Shared pieces for the remediation tests: alerts, policies written as files, a ledger clock."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gpulens.remediation.model import Alert

T0 = 1_795_600_000.0  # 2026-11-25T09:46:40Z, a fixed "now" for engine tests


def xid_alert(
    node: str = "gpu-node-1",
    *,
    gpu: str = "3",
    xid: str = "79",
    action: str = "reboot_node",
    status: str = "firing",
    fingerprint: str | None = None,
) -> Alert:
    return Alert(
        labels={
            "alertname": "GpuXidNonRecoverable",
            "node": node,
            "gpu": gpu,
            "xid": xid,
            "action": action,
            "severity": "critical",
        },
        annotations={"summary": f"Non-recoverable XID {xid} on GPU {gpu} of {node}"},
        status=status,  # type: ignore[arg-type]
        fingerprint=fingerprint or f"fp-{node}-{gpu}-{xid}",
        starts_at="2026-11-24T08:26:00Z",
    )


def payload(*alerts: Alert) -> bytes:
    """An Alertmanager version-4 webhook body carrying `alerts`."""
    return json.dumps(
        {
            "version": "4",
            "groupKey": "{}:{}",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "gpulens",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://am",
            "alerts": [
                {**a.to_json(), "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom"}
                for a in alerts
            ],
        }
    ).encode()


class Clock:
    """A settable clock for the engine: tests move time by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def write_policy(tmp_path: Path) -> Any:
    def write(text: str, name: str = "policy.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write
