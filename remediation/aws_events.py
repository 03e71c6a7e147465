"""SNS and EventBridge events into `Alert`s, for the Lambda path.

Understood: CloudWatch alarm notifications delivered by SNS (`AlarmName`, `NewStateValue`,
`Trigger.Dimensions`), EventBridge "CloudWatch Alarm State Change" events, and an Alertmanager
payload (or a single Alertmanager alert object) published to SNS as JSON. An alarm's metric
dimensions become labels (`node`, `gpu`, `xid`, ...); its `alertname` is the `alertname` dimension
when there is one, else the alarm's name (the engine adds the `action` class of an `xid` label). `ALARM` is
firing, `OK` resolved, `INSUFFICIENT_DATA` ignored.
Events that gpulens itself emitted (source `gpulens.remediation`) are ignored, so a catch-all
EventBridge rule cannot make the handler feed itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gpulens.remediation.actions.cloudwatch import EVENT_SOURCE
from gpulens.remediation.model import Alert
from gpulens.remediation.payload import PayloadError, label_fingerprint, parse_alert, parse_payload

ALARM_STATES = {"ALARM": "firing", "OK": "resolved"}


def alerts_from_event(event: Mapping[str, Any]) -> list[Alert]:
    """Every alert an SNS or EventBridge Lambda event carries; raises `PayloadError` for anything else."""
    if "Records" in event:
        return [alert for record in event["Records"] for alert in _sns_record(record)]
    if "detail-type" in event:
        return _eventbridge(event)
    raise PayloadError("neither an SNS nor an EventBridge event")


def _sns_record(record: Mapping[str, Any]) -> list[Alert]:
    sns = record.get("Sns")
    if not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
        raise PayloadError("an SNS record without Sns.Message", field="Records[].Sns.Message")
    try:
        message = json.loads(sns["Message"])
    except ValueError:
        raise PayloadError("the SNS message is not JSON", field="Records[].Sns.Message") from None
    if not isinstance(message, dict):
        raise PayloadError("the SNS message is not a JSON object", field="Records[].Sns.Message")
    if "AlarmName" in message:
        dimensions = {d.get("name"): d.get("value") for d in message.get("Trigger", {}).get("Dimensions", [])}
        return _alarm(
            message["AlarmName"], message.get("NewStateValue"), dimensions, message.get("StateChangeTime")
        )
    if "alerts" in message:
        return parse_payload(json.dumps(message).encode())
    return [parse_alert(message, "Sns.Message")]


def _eventbridge(event: Mapping[str, Any]) -> list[Alert]:
    if event.get("source") == EVENT_SOURCE:
        return []
    detail = event.get("detail") or {}
    if event.get("detail-type") != "CloudWatch Alarm State Change":
        raise PayloadError(
            f"unsupported EventBridge detail-type {event.get('detail-type')!r}", field="detail-type"
        )
    metrics = detail.get("configuration", {}).get("metrics", [])
    dimensions: dict[str, Any] = {}
    for metric in metrics:
        dimensions.update(metric.get("metricStat", {}).get("metric", {}).get("dimensions", {}))
    state = detail.get("state", {})
    return _alarm(
        detail.get("alarmName"), state.get("value"), dimensions, state.get("timestamp") or event.get("time")
    )


def _alarm(name: Any, state: Any, dimensions: Mapping[Any, Any], at: Any) -> list[Alert]:
    if not isinstance(name, str) or not name:
        raise PayloadError("an alarm without a name", field="AlarmName")
    if state not in ALARM_STATES:
        return []  # INSUFFICIENT_DATA says nothing about the GPU
    labels = {str(k): str(v) for k, v in dimensions.items() if k and v is not None}
    labels.setdefault("alertname", name)
    labels["alarm"] = name
    return [
        Alert(
            labels=labels,
            status=ALARM_STATES[state],
            fingerprint=label_fingerprint(labels),
            starts_at=at if isinstance(at, str) else "",
        )
    ]
