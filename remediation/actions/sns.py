"""`sns`: publish the alert to an SNS topic (e-mail, SMS, chat, Lambda subscribers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gpulens.remediation.actions import aws
from gpulens.remediation.actions.base import DEFAULT_MESSAGE, ActionFailed, render
from gpulens.remediation.model import Alert

SUBJECT_LIMIT = 100  # SNS rejects longer subjects


@dataclass(frozen=True)
class SnsAction:
    topic_arn: str  # a template: arn:aws:sns:us-east-1:123456789012:gpulens-{team}
    subject: str = "gpulens: {alertname} on {node}"
    message: str = DEFAULT_MESSAGE
    region: str | None = None
    endpoint_url: str | None = None

    kind: ClassVar[str] = "sns"
    destructive: ClassVar[bool] = False
    drains: ClassVar[bool] = False

    def run(self, alert: Alert, timeout: float) -> None:
        sns = aws.client("sns", region=self.region, endpoint_url=self.endpoint_url, timeout=timeout)
        attributes = {
            key: {"DataType": "String", "StringValue": value}
            for key, value in (
                ("alertname", alert.name),
                ("node", alert.node),
                ("status", alert.status),
                ("fingerprint", alert.fingerprint),
            )
            if value
        }
        try:
            sns.publish(
                TopicArn=render(self.topic_arn, alert),
                Subject=render(self.subject, alert)[:SUBJECT_LIMIT],
                Message=render(self.message, alert),
                MessageAttributes=attributes,
            )
        except aws.aws_errors() as exc:
            raise ActionFailed(f"SNS publish failed: {exc}") from exc
