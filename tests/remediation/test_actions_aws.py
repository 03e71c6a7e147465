"""sns and cloudwatch against moto's standalone server on 127.0.0.1: real boto3 calls over HTTP,
checked by reading back what AWS would deliver (an SQS subscription, CloudWatch statistics, an
EventBridge rule's SQS target).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest

from gpulens.remediation.actions import ActionFailed
from gpulens.remediation.actions.cloudwatch import CloudWatchAction
from gpulens.remediation.actions.sns import SnsAction
from tests.remediation.conftest import xid_alert
from tests.support.moto_server import moto_server

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def aws(service: str, url: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=url)


def queue(url: str, name: str) -> tuple[str, str]:
    sqs = aws("sqs", url)
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return queue_url, arn


def receive(url: str, queue_url: str) -> list[dict[str, Any]]:
    messages = aws("sqs", url).receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def test_sns_publishes_the_alert_to_the_team_topic(moto_url: str) -> None:
    topic = aws("sns", moto_url).create_topic(Name="gpulens-ai-research")["TopicArn"]
    queue_url, queue_arn = queue(moto_url, "sns-subscriber")
    aws("sns", moto_url).subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    template = topic.replace("ai-research", "{team}")
    alert = xid_alert("gpu-node-4")
    alert = type(alert)(
        labels={**alert.labels, "team": "ai-research"},
        annotations=alert.annotations,
        fingerprint=alert.fingerprint,
    )
    SnsAction(topic_arn=template, region=REGION, endpoint_url=moto_url).run(alert, timeout=10)
    (notification,) = receive(moto_url, queue_url)
    assert notification["Subject"] == "gpulens: GpuXidNonRecoverable on gpu-node-4"
    assert notification["Message"].startswith(
        "[FIRING] GpuXidNonRecoverable node=gpu-node-4 gpu=3 xid=79 (reboot_node)"
    )
    assert notification["MessageAttributes"]["node"]["Value"] == "gpu-node-4"


def test_sns_to_a_missing_topic_fails(moto_url: str) -> None:
    missing = f"arn:aws:sns:{REGION}:123456789012:no-such-topic"
    with pytest.raises(ActionFailed, match="SNS publish failed"):
        SnsAction(topic_arn=missing, region=REGION, endpoint_url=moto_url).run(xid_alert(), timeout=10)


def test_cloudwatch_puts_a_metric_datum_and_an_eventbridge_event(moto_url: str) -> None:
    queue_url, queue_arn = queue(moto_url, "eventbridge-target")
    events = aws("events", moto_url)
    events.put_rule(Name="gpulens-alerts", EventPattern=json.dumps({"source": ["gpulens.remediation"]}))
    events.put_targets(Rule="gpulens-alerts", Targets=[{"Id": "q", "Arn": queue_arn}])

    CloudWatchAction(region=REGION, endpoint_url=moto_url).run(xid_alert("gpu-node-5"), timeout=10)

    now = datetime.now(timezone.utc)
    stats = aws("cloudwatch", moto_url).get_metric_statistics(
        Namespace="GPULens/Remediation",
        MetricName="Alerts",
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
        Dimensions=[
            {"Name": "AlertName", "Value": "GpuXidNonRecoverable"},
            {"Name": "Node", "Value": "gpu-node-5"},
        ],
    )
    assert sum(point["Sum"] for point in stats["Datapoints"]) == 1.0
    (event,) = receive(moto_url, queue_url)
    assert event["source"] == "gpulens.remediation"
    assert event["detail-type"] == "GPULens Alert"
    assert event["detail"]["labels"]["node"] == "gpu-node-5"
