"""`command`: a user hook (restart a job, checkpoint and stop it) with the alert as JSON on stdin.

The hook gets Alertmanager's alert object (`status`, `labels`, `annotations`, `fingerprint`,
`startsAt`); exit 0 is success. `optional: true` makes a hook that is not installed a `skipped`
step instead of a failure, so a shipped policy can name a hook a site may not have.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from gpulens.remediation.actions.base import render
from gpulens.remediation.actions.process import run_program
from gpulens.remediation.model import Alert


@dataclass(frozen=True)
class CommandAction:
    argv: Sequence[str]  # each element a template: ["/opt/hooks/restart", "{job_id}"]
    optional: bool = False

    kind: ClassVar[str] = "command"
    destructive: ClassVar[bool] = True  # a hook may do anything
    drains: ClassVar[bool] = False

    def run(self, alert: Alert, timeout: float) -> None:
        argv = [render(arg, alert) for arg in self.argv]
        run_program(argv, stdin=json.dumps(alert.to_json()), timeout=timeout, missing_skips=self.optional)
