"""Alertmanager's webhook payload (version 4) into `Alert`s; anything malformed is a `PayloadError`.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config documents the format:
``{"version": "4", "status", "receiver", "groupLabels", ..., "alerts": [{"status", "labels",
"annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}]}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from gpulens.errors import GpulensError
from gpulens.remediation.model import Alert

STATUSES = ("firing", "resolved")


class PayloadError(GpulensError):
    """The request body is not an Alertmanager version-4 webhook payload; `field` says where."""


class TooManyAlerts(PayloadError):
    """More alerts in one payload than the receiver accepts (HTTP 413)."""


def parse_payload(body: bytes, max_alerts: int | None = None) -> list[Alert]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    except RecursionError:  # e.g. 100,000 nested brackets: malformed, not a crash
        raise PayloadError("not JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise PayloadError("the payload must be a JSON object")
    version = doc.get("version", "4")
    if str(version) != "4":
        raise PayloadError(
            f'unsupported payload version {version!r} (Alertmanager sends "4")', field="version"
        )
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("`alerts` must be a list", field="alerts")
    if max_alerts is not None and len(alerts) > max_alerts:
        raise TooManyAlerts(
            f"{len(alerts)} alerts in one payload; at most {max_alerts} are accepted "
            "(set max_alerts in Alertmanager's webhook_config)",
            field="alerts",
        )
    return [parse_alert(raw, f"alerts[{i}]") for i, raw in enumerate(alerts)]


def parse_alert(raw: Any, where: str = "alert") -> Alert:
    if not isinstance(raw, dict):
        raise PayloadError("an alert must be a JSON object", field=where)
    labels = _strings(raw.get("labels"), f"{where}.labels")
    if "alertname" not in labels:
        raise PayloadError("the alert has no alertname label", field=f"{where}.labels")
    status = raw.get("status", "firing")
    if status not in STATUSES:
        raise PayloadError(f"status must be firing or resolved, not {status!r}", field=f"{where}.status")
    fingerprint = raw.get("fingerprint") or label_fingerprint(labels)
    if not isinstance(fingerprint, str):
        raise PayloadError("fingerprint must be a string", field=f"{where}.fingerprint")
    starts_at = raw.get("startsAt", "")
    return Alert(
        labels=labels,
        annotations=_strings(raw.get("annotations", {}), f"{where}.annotations"),
        status=status,
        fingerprint=fingerprint,
        starts_at=starts_at if isinstance(starts_at, str) else "",
    )


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit id of a label set, for alerts that come without Alertmanager's fingerprint."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _strings(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise PayloadError("must be an object of string values", field=where)
    return dict(value)
