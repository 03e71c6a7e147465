"""Fill in an alert's XID `action` class from the agent's XID catalog when only the code is known.

Alerts built from `gpulens_gpu_xid_errors_total` carry `action`; a CloudWatch alarm dimension or a
hand-written rule may carry only `xid`. The policy matches on the class, so the same catalog the
agent uses (`gpulens.collector.xid`) supplies it.
"""

from __future__ import annotations

from gpulens.collector.xid import classify
from gpulens.remediation.model import Alert

MAX_XID_DIGITS = 6


def with_xid_action(alert: Alert) -> Alert:
    """`alert` with `action` (and `recoverable`) labels from the XID catalog when it has only `xid`."""
    xid = alert.labels.get("xid", "")
    # XIDs are small numbers; a label of thousands of digits is not one (and `int()` refuses past
    # 4,300 digits), so such an alert keeps its labels and matches no XID rule.
    if not (xid.isascii() and xid.isdigit() and len(xid) <= MAX_XID_DIGITS) or "action" in alert.labels:
        return alert
    known = classify(int(xid))
    labels = {**alert.labels, "action": known.action}
    labels.setdefault("recoverable", "true" if known.recoverable else "false")
    return Alert(
        labels=labels,
        annotations=alert.annotations,
        status=alert.status,
        fingerprint=alert.fingerprint,
        starts_at=alert.starts_at,
    )
