"""`command`: a user hook (restart a job, checkpoint and stop it) with the alert as JSON on stdin.

The hook gets Alertmanager's alert object (`status`, `labels`, `annotations`, `fingerprint`,
`startsAt`); exit 0 is success. `optional: true` makes a hook that is not installed a `skipped`
step instead of a failure, so a shipped policy can name a hook a site may not have.

Label values are the sender's text: an argument rendered from a template that does not itself start
with `-` must not start with `-` (an alert with `job_id="--all"` must not become an option) unless a
literal `--` comes first in `argv`; `key={label}` arguments are safe by construction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from gpulens.remediation.actions.base import ActionFailed, render
from gpulens.remediation.actions.process import run_program
from gpulens.remediation.model import Alert


@dataclass(frozen=True)
class CommandAction:
    argv: Sequence[str]  # each element a template: ["/opt/hooks/restart", "{job_id}"]
    optional: bool = False

    kind: ClassVar[str] = "command"
    destructive: ClassVar[bool] = True  # a hook may do anything
    drains: ClassVar[bool] = False

    def check(self, alert: Alert) -> None:
        self.arguments(alert)

    def arguments(self, alert: Alert) -> list[str]:
        """`argv` rendered for `alert`; `ActionFailed` when a label would pass as an option or holds NUL."""
        argv, after_dashes = [], False
        for i, template in enumerate(self.argv):
            value = render(template, alert)
            if "\0" in value:
                raise ActionFailed(f"argument {i} of the hook would contain a NUL byte")
            if i > 0 and not after_dashes and value.startswith("-") and not template.startswith("-"):
                raise ActionFailed(
                    f"argument {i} of the hook would be {value[:40]!r}, which looks like an option; "
                    "put '--' before label arguments in argv or write them as key={label}"
                )
            after_dashes = after_dashes or (i > 0 and template == "--")
            argv.append(value)
        return argv

    def run(self, alert: Alert, timeout: float) -> None:
        argv = self.arguments(alert)
        run_program(argv, stdin=json.dumps(alert.to_json()), timeout=timeout, missing_skips=self.optional)
