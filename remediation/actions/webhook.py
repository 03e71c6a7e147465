"""`webhook`: a JSON POST with Slack-compatible `text` and the alert itself under `alert`.

The URL is a secret for Slack and most chat tools: it is never logged or put in an error message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from gpulens.remediation.actions.base import DEFAULT_MESSAGE, ActionFailed, render
from gpulens.remediation.model import Alert


@dataclass(frozen=True)
class WebhookAction:
    url: str
    message: str = DEFAULT_MESSAGE
    headers: Mapping[str, str] = field(default_factory=dict)

    kind: ClassVar[str] = "webhook"
    destructive: ClassVar[bool] = False
    drains: ClassVar[bool] = False

    def run(self, alert: Alert, timeout: float) -> None:
        body = json.dumps({"text": render(self.message, alert), "alert": alert.to_json()}).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json", **self.headers}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                reply.read()
        except urllib.error.HTTPError as exc:
            raise ActionFailed(f"webhook answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ActionFailed(f"webhook unreachable: {reason}") from None
