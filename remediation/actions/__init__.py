"""The actions a policy can name, by name. Each is a frozen dataclass; its fields are its parameters."""

from __future__ import annotations

from gpulens.remediation.actions.base import Action, ActionFailed, ActionSkipped
from gpulens.remediation.actions.cloudwatch import CloudWatchAction
from gpulens.remediation.actions.command import CommandAction
from gpulens.remediation.actions.k8s import CordonAction, DrainAction
from gpulens.remediation.actions.log import LogAction
from gpulens.remediation.actions.slurm import SlurmDrainAction
from gpulens.remediation.actions.sns import SnsAction
from gpulens.remediation.actions.webhook import WebhookAction

ACTIONS: dict[str, type] = {
    cls.kind: cls
    for cls in (
        LogAction,
        SnsAction,
        CloudWatchAction,
        WebhookAction,
        CordonAction,
        DrainAction,
        SlurmDrainAction,
        CommandAction,
    )
}

__all__ = ["ACTIONS", "Action", "ActionFailed", "ActionSkipped"]
