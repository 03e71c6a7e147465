"""`cloudwatch`: one CloudWatch metric datum and one EventBridge event per alert.

The datum (`Count` 1, dimensions AlertName and Node) feeds alarms and dashboards; the event feeds
EventBridge rules. The Lambda handler ignores events whose source is ours, so a rule that routes
every event to it cannot loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from gpulens.remediation.actions import aws
from gpulens.remediation.actions.base import ActionFailed
from gpulens.remediation.model import Alert

EVENT_SOURCE = "gpulens.remediation"


@dataclass(frozen=True)
class CloudWatchAction:
    namespace: str = "GPULens/Remediation"
    metric_name: str = "Alerts"
    event_bus: str = "default"
    detail_type: str = "GPULens Alert"
    region: str | None = None
    endpoint_url: str | None = None

    kind: ClassVar[str] = "cloudwatch"
    destructive: ClassVar[bool] = False
    drains: ClassVar[bool] = False

    def run(self, alert: Alert, timeout: float) -> None:
        self._put_metric(alert, timeout)
        self._put_event(alert, timeout)

    def _put_metric(self, alert: Alert, timeout: float) -> None:
        cloudwatch = aws.client(
            "cloudwatch", region=self.region, endpoint_url=self.endpoint_url, timeout=timeout
        )
        dimensions = [
            {"Name": "AlertName", "Value": alert.name or "-"},
            {"Name": "Node", "Value": alert.node or "-"},
        ]
        try:
            cloudwatch.put_metric_data(
                Namespace=self.namespace,
                MetricData=[
                    {"MetricName": self.metric_name, "Dimensions": dimensions, "Value": 1.0, "Unit": "Count"}
                ],
            )
        except aws.aws_errors() as exc:
            raise ActionFailed(f"CloudWatch put_metric_data failed: {exc}") from exc

    def _put_event(self, alert: Alert, timeout: float) -> None:
        events = aws.client("events", region=self.region, endpoint_url=self.endpoint_url, timeout=timeout)
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": self.detail_type,
            "Detail": json.dumps(alert.to_json()),
            "EventBusName": self.event_bus,
        }
        try:
            reply = events.put_events(Entries=[entry])
        except aws.aws_errors() as exc:
            raise ActionFailed(f"EventBridge put_events failed: {exc}") from exc
        if reply.get("FailedEntryCount"):
            failed = reply["Entries"][0]
            raise ActionFailed(
                f"EventBridge refused the event: {failed.get('ErrorCode')} {failed.get('ErrorMessage')}"
            )
