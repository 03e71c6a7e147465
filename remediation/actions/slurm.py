"""`slurm-drain`: `scontrol update NodeName=NODE State=DRAIN Reason=...` — running jobs finish, no new
ones start."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gpulens.remediation.actions.base import node_of, render
from gpulens.remediation.actions.process import run_program
from gpulens.remediation.model import Alert


@dataclass(frozen=True)
class SlurmDrainAction:
    reason: str = "gpulens: {alertname} gpu={gpu} xid={xid}"
    scontrol: str = "scontrol"
    node_label: str = "node"

    kind: ClassVar[str] = "slurm-drain"
    destructive: ClassVar[bool] = True
    drains: ClassVar[bool] = True

    def check(self, alert: Alert) -> None:
        node_of(alert, self.node_label)

    def run(self, alert: Alert, timeout: float) -> None:
        node = node_of(alert, self.node_label)
        # One argv element per field: no shell, so a reason with spaces needs no quoting.
        argv = [
            self.scontrol,
            "update",
            f"NodeName={node}",
            "State=DRAIN",
            f"Reason={render(self.reason, alert)}",
        ]
        run_program(argv, timeout=timeout)
