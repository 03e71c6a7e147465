"""`log`: a notification into the server's own log (stderr) — the notify step that needs no account."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from gpulens.remediation.actions.base import DEFAULT_MESSAGE, printable, render
from gpulens.remediation.model import Alert

logger = logging.getLogger("gpulens.remediation.notify")


@dataclass(frozen=True)
class LogAction:
    message: str = DEFAULT_MESSAGE

    kind: ClassVar[str] = "log"
    destructive: ClassVar[bool] = False
    drains: ClassVar[bool] = False

    def run(self, alert: Alert, timeout: float) -> None:
        # Escaped: a label value with a newline must not forge a log line of its own.
        logger.warning("%s", printable(render(self.message, alert)))
