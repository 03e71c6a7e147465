"""The policy engine: alerts in, audited decisions out, actions run behind the safety rails.

For each alert (given its XID `action` class when it carries only the code): the first matching rule gives ordered actions; a repeat within the dedup window is
`deduplicated`; a resolved alert never runs a destructive action (`skipped`); a drain beyond the
blast radius is `rate_limited` and the policy's `escalate` actions (notify a human) run instead;
without `execute` everything stops at `dry_run`. Each decision is in the audit log before it is
acted on: an action that runs for real first writes `pending`, then `done`, `failed` or `skipped`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gpulens.remediation.actions import ACTIONS, ActionFailed, ActionSkipped
from gpulens.remediation.audit import AuditLog, parse_rfc3339, rfc3339
from gpulens.remediation.model import ActionStep, Alert, AuditRecord
from gpulens.remediation.policy import Policy
from gpulens.remediation.safety import BlastRadius, Deduplicator, with_retries
from gpulens.remediation.xid_labels import with_xid_action

logger = logging.getLogger(__name__)

NO_ACTION = "none"  # the `action` of an alert that no rule matches


@dataclass(frozen=True)
class EngineOptions:
    """`execute` False is dry-run; `clock` gives epoch seconds; `sleep` waits between retries."""

    execute: bool = False
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


class Engine:
    def __init__(
        self,
        policy: Policy,
        audit: AuditLog,
        options: EngineOptions = EngineOptions(),
        observe: Callable[[AuditRecord], None] = lambda record: None,
    ) -> None:
        self.policy = policy
        self.audit = audit
        self.options = options
        self.observe = observe
        self.dedup = Deduplicator(policy.settings.dedup_window)
        self.blast = BlastRadius(policy.settings.blast_radius)
        # One batch at a time: blast-radius and dedup decisions must see each other in order.
        self._lock = threading.Lock()

    def handle(self, alerts: Iterable[Alert]) -> list[AuditRecord]:
        """Decide and act on each alert in order; returns the final record of every decision."""
        with self._lock:
            records: list[AuditRecord] = []
            for alert in alerts:
                records.extend(self._alert(alert))
            return records

    def restore(self) -> int:
        """Rebuild dedup and blast-radius state from the audit log, so a restart drains nothing twice.

        Only destructive actions that were taken (or begun) in the same mode count: they imply a
        firing alert. Returns the number of records used.
        """
        now, used = self.options.clock(), 0
        for record in self.audit.records():
            action = ACTIONS.get(record.action)
            if action is None or not action.destructive or record.dry_run == self.options.execute:
                continue
            if record.result not in ("done", "pending", "dry_run"):
                continue
            at = parse_rfc3339(record.ts)
            if now - at < self.dedup.window:
                self.dedup.remember(record.fingerprint, "firing", at)
                used += 1
            if action.drains and record.node and now - at < self.blast.limit.window:
                self.blast.remember(record.node, at)
        return used

    def _alert(self, alert: Alert) -> list[AuditRecord]:
        alert = with_xid_action(alert)
        rule = self.policy.rule_for(alert)
        if rule is None:
            return [self._record(alert, NO_ACTION, "skipped")]
        if not self.dedup.first_time(alert.fingerprint, alert.status, self.options.clock()):
            return [self._record(alert, step.kind, "deduplicated") for step in rule.actions]
        records: list[AuditRecord] = []
        for step in rule.actions:
            records.extend(self._step(alert, step))
        return records

    def _step(self, alert: Alert, step: ActionStep) -> list[AuditRecord]:
        action = step.action
        if alert.status == "resolved" and action.destructive:
            return [self._record(alert, step.kind, "skipped")]
        if action.drains:
            node = alert.labels.get(getattr(action, "node_label", "node"))
            if not node:
                return [self._record(alert, step.kind, "skipped")]
            if not self.blast.admit(node, self.options.clock()):
                refused = self._record(alert, step.kind, "rate_limited")
                logger.warning("blast-radius limit: %s not drained for %s", node, alert.name)
                return [
                    refused,
                    *[r for esc in self.policy.settings.escalate for r in self._step(alert, esc)],
                ]
        if not self.options.execute:
            return [self._record(alert, step.kind, "dry_run")]
        self._record(alert, step.kind, "pending")
        return [self._record(alert, step.kind, self._run(alert, step))]

    def _run(self, alert: Alert, step: ActionStep) -> str:
        """Run the action with its timeout and retries; the result word for the audit log."""
        try:
            with_retries(
                lambda: step.action.run(alert, step.timeout),
                retries=step.retries,
                backoff=step.backoff,
                retry_on=(ActionFailed,),
                sleep=self.options.sleep,
            )
        except ActionSkipped as exc:
            logger.info("%s skipped for %s: %s", step.kind, alert.name, exc)
            return "skipped"
        except ActionFailed as exc:
            logger.error(
                "%s failed for %s after %d attempts: %s", step.kind, alert.name, step.retries + 1, exc
            )
            return "failed"
        except Exception:  # noqa: BLE001 - one broken action must not take the receiver down; it is audited
            logger.exception("%s crashed for %s", step.kind, alert.name)
            return "failed"
        return "done"

    def _record(self, alert: Alert, action: str, result: str) -> AuditRecord:
        labels = alert.labels
        record = AuditRecord(
            ts=rfc3339(self.options.clock()),
            alert=alert.name,
            fingerprint=alert.fingerprint,
            node=labels.get("node"),
            gpu=labels.get("gpu"),
            xid=labels.get("xid"),
            action=action,
            dry_run=not self.options.execute,
            result=result,
        )
        self.audit.append(record)
        if result != "pending":
            self.observe(record)
            logger.info(
                "%s %s for %s node=%s gpu=%s xid=%s",
                result,
                action,
                alert.name,
                record.node,
                record.gpu,
                record.xid,
            )
        return record
