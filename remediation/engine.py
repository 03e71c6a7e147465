"""The policy engine: alerts in, audited decisions out, actions run behind the safety rails.

Two phases (docs/remediation.md, "Under a storm"):

1. Decide, under one lock and without running anything: for each alert (given its XID `action`
   class when it carries only the code) the first matching rule gives ordered steps, and each step is
   decided in this order: a resolved alert never runs a destructive action (`skipped`); the action
   checks the alert (a node name that is not a name, a hook argument that would pass as an option:
   `failed`, before any budget is spent); a repeat of the same identity (alert name, status and the
   labels the action uses) within the dedup window is `deduplicated`; a drain beyond the blast radius
   or a hook beyond its rate limit is `rate_limited` (a refused drain runs the policy's `escalate`
   steps); without `execute` the step ends as `dry_run`, else as `pending`. The batch's records are
   written and fsynced together before anything acts.
2. Act: each alert's `pending` steps run in order, on a bounded pool of worker threads, each attempt
   under the step's own timeout; the outcome (`done`, `failed`, `skipped`) is appended when it is known.
   A slow drain therefore holds one worker, never the decisions of other alerts.

One alert that breaks the engine is audited `failed` and never stops its neighbours.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, wait
from dataclasses import dataclass

from gpulens.remediation.actions import ACTIONS, ActionFailed, ActionSkipped
from gpulens.remediation.actions.base import check, printable, used_labels
from gpulens.remediation.audit import AuditLog, parse_rfc3339, rfc3339
from gpulens.remediation.model import ActionStep, Alert, AuditRecord
from gpulens.remediation.policy import Policy
from gpulens.remediation.safety import BlastRadius, Deduplicator, HookLimit, with_retries
from gpulens.remediation.workers import WorkerPool
from gpulens.remediation.xid_labels import with_xid_action

logger = logging.getLogger(__name__)

NO_ACTION = "none"  # the `action` of an alert that no rule matches
DEFAULT_WORKERS = 4


@dataclass(frozen=True)
class EngineOptions:
    """`execute` False is dry-run; `clock` gives epoch seconds; `sleep` waits between retries.

    `workers` threads run actions; 0 runs them in the caller's thread while the decision lock is
    held (one batch at a time, start to finish: the design before the worker pool, kept as the
    benchmark's alternative).
    """

    execute: bool = False
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    workers: int = DEFAULT_WORKERS


@dataclass(frozen=True)
class _Decision:
    """One decided step; `step` is set when it is `pending` (it runs for real)."""

    record: AuditRecord
    alert: Alert
    step: ActionStep | None = None


class Batch:
    """The decisions of one call: `decided` as written before acting; `wait` for the outcomes."""

    def __init__(self, decided: list[AuditRecord], outcomes: dict[int, Future[AuditRecord]]) -> None:
        self.decided = decided
        self._outcomes = outcomes

    def wait(self, timeout: float | None = None) -> list[AuditRecord]:
        """Every decision's final record, or its `pending` one where the action is still running."""
        wait(list(self._outcomes.values()), timeout=timeout)
        return [self._final(i, record) for i, record in enumerate(self.decided)]

    def _final(self, index: int, record: AuditRecord) -> AuditRecord:
        outcome = self._outcomes.get(index)
        if outcome is None or not outcome.done() or outcome.exception() is not None:
            return record
        return outcome.result()


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
        self.hooks = HookLimit(policy.settings.hooks)
        self.pool = WorkerPool(options.workers) if options.workers > 0 else None
        # Decisions are serialized: dedup, blast-radius and hook decisions must see each other in order.
        self._lock = threading.Lock()

    def handle(self, alerts: Iterable[Alert]) -> list[AuditRecord]:
        """Decide, act, and wait for every action; the final record of every decision."""
        return self.submit(alerts).wait()

    def submit(self, alerts: Iterable[Alert]) -> Batch:
        """Decide and audit every alert now; hand the actions to the workers and return without waiting.

        Raises OSError when the audit log cannot be written: then nothing acts.
        """
        with self._lock:
            decisions = [d for alert in alerts for d in self._decide_safely(alert)]
            self.audit.append_all([d.record for d in decisions])
            for decision in decisions:
                if decision.step is None:
                    self._observe(decision.record)
            outcomes: dict[int, Future[AuditRecord]] = {}
            jobs: dict[int, list[tuple[ActionStep, Future[AuditRecord]]]] = {}
            for i, decision in enumerate(decisions):
                if decision.step is not None:
                    outcomes[i] = Future()
                    jobs.setdefault(id(decision.alert), []).append((decision.step, outcomes[i]))
            alerts_by_id = {id(d.alert): d.alert for d in decisions}
            for key, steps in jobs.items():
                self._dispatch(alerts_by_id[key], steps)
        return Batch([d.record for d in decisions], outcomes)

    def close(self) -> None:
        """Stop the workers after their current actions; queued actions stay `pending` in the log."""
        if self.pool is not None:
            self.pool.close()

    def restore(self) -> int:
        """Rebuild dedup, blast-radius and hook-limit state from the audit log, so a restart repeats nothing.

        Only destructive actions that were taken (or begun) in the same mode count: they imply a
        firing alert. The record's `node` is the node the drain acted on (its `node_label`). A hook
        record does not carry the job, so restored hook runs count towards `max_per_hour` only.
        Returns the number of records used.
        """
        now, used = self.options.clock(), 0
        for record in self.audit.records():
            action = ACTIONS.get(record.action)
            if action is None or not action.destructive or record.dry_run == self.options.execute:
                continue
            if record.result not in ("done", "pending", "dry_run"):
                continue
            try:
                at = parse_rfc3339(str(record.ts))
            except ValueError:
                continue
            if now - at < self.dedup.window:
                self.dedup.remember(("fingerprint", record.fingerprint, record.action), "firing", at)
                if action.drains and record.node:
                    self.dedup.remember(
                        ("identity", record.alert, record.action, (record.node,)), "firing", at
                    )
                used += 1
            if action.drains and record.node and now - at < self.blast.limit.window:
                self.blast.remember(record.node, at)
            elif not action.drains and record.result != "done" and now - at < self.hooks.limit.window:
                self.hooks.remember(None, at)  # one `pending` (or `dry_run`) record per hook run
        return used

    # -- deciding ------------------------------------------------------------------------------------

    def _decide_safely(self, alert: Alert) -> list[_Decision]:
        try:
            return self._decide(alert)
        except Exception:
            logger.exception("could not decide on alert %s", printable(alert.name))
            return [_Decision(self._record(alert, NO_ACTION, "failed"), alert)]

    def _decide(self, alert: Alert) -> list[_Decision]:
        alert = with_xid_action(alert)
        rule = self.policy.rule_for(alert)
        if rule is None:
            return [_Decision(self._record(alert, NO_ACTION, "skipped"), alert)]
        now = self.options.clock()
        return [d for step in rule.actions for d in self._decide_step(alert, step, now)]

    def _decide_step(self, alert: Alert, step: ActionStep, now: float) -> list[_Decision]:
        action = step.action

        def decided(result: str) -> list[_Decision]:
            return [_Decision(self._record(alert, step.kind, result, step), alert)]

        if alert.status == "resolved" and action.destructive:
            return decided("skipped")
        try:
            check(action, alert)  # before any budget: an invalid alert takes no slot
        except ActionSkipped:
            return decided("skipped")
        except ActionFailed as exc:
            logger.warning("%s refused for %s: %s", step.kind, printable(alert.name), printable(str(exc)))
            return decided("failed")
        if not self.dedup.first_time_of(self._identity(alert, step), alert.status, now):
            return decided("deduplicated")
        if action.drains and not self.blast.admit(alert.labels[action.node_label], now):
            logger.warning(
                "blast-radius limit: %s not drained for %s",
                printable(alert.labels[action.node_label]),
                printable(alert.name),
            )
            escalations = [
                d for esc in self.policy.settings.escalate for d in self._decide_step(alert, esc, now)
            ]
            return decided("rate_limited") + escalations
        if action.destructive and not action.drains:
            job = alert.labels.get(self.hooks.limit.job_label)
            if not self.hooks.admit(job, now):
                logger.warning(
                    "hook rate limit: %s not run for %s (job %s)",
                    step.kind,
                    printable(alert.name),
                    printable(job or "-"),
                )
                return decided("rate_limited")
        if not self.options.execute:
            return decided("dry_run")
        return [_Decision(self._record(alert, step.kind, "pending", step), alert, step)]

    @staticmethod
    def _identity(alert: Alert, step: ActionStep) -> tuple[Hashable, ...]:
        """The keys a repeat is recognized by: the alert's identity for this action, and its fingerprint.

        The identity (name + the labels the action uses) is what matters: sixty alerts that differ
        only in a label the hook does not use are one hook run. The fingerprint keeps state restored
        from the audit log (which has no job label) working.
        """
        values = tuple(alert.labels.get(label) for label in used_labels(step.action))
        # A notification is also told apart by its policy line (a rule's `log` and an escalation's `log`
        # are two messages); a destructive action is not, so that its keys can be rebuilt by `restore`.
        scope: Hashable = step.kind if step.action.destructive else (step.kind, step.line)
        return (("identity", alert.name, scope, values), ("fingerprint", alert.fingerprint, scope))

    # -- acting --------------------------------------------------------------------------------------

    def _dispatch(self, alert: Alert, steps: list[tuple[ActionStep, Future[AuditRecord]]]) -> None:
        if self.pool is None:
            self._act(alert, steps)  # inline, under the decision lock
        else:
            self.pool.submit(lambda: self._act(alert, steps))

    def _act(self, alert: Alert, steps: list[tuple[ActionStep, Future[AuditRecord]]]) -> None:
        """Run one alert's pending steps in policy order; each outcome is audited, then resolves its
        future."""
        for step, outcome in steps:
            if not outcome.set_running_or_notify_cancel():
                continue
            try:
                record = self._record(alert, step.kind, self._run(alert, step), step)
                self.audit.append(record)
                self._observe(record)
                outcome.set_result(record)
            except Exception as exc:  # e.g. the audit log failed: say so, keep the worker serving
                logger.exception("the outcome of %s for %s was not audited", step.kind, printable(alert.name))
                outcome.set_exception(exc)

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
            logger.info("%s skipped for %s: %s", step.kind, printable(alert.name), printable(str(exc)))
            return "skipped"
        except ActionFailed as exc:
            logger.error(
                "%s failed for %s after %d attempts: %s",
                step.kind,
                printable(alert.name),
                step.retries + 1,
                printable(str(exc)),
            )
            return "failed"
        except Exception:
            logger.exception("%s crashed for %s", step.kind, printable(alert.name))
            return "failed"
        return "done"

    # -- recording -----------------------------------------------------------------------------------

    def _record(self, alert: Alert, action: str, result: str, step: ActionStep | None = None) -> AuditRecord:
        """The audit record (not yet written); a drain's `node` is the node it acts on (its `node_label`)."""
        labels = alert.labels
        node_label = step.action.node_label if step is not None and step.action.drains else "node"
        return AuditRecord(
            ts=rfc3339(self.options.clock()),
            alert=alert.name,
            fingerprint=alert.fingerprint,
            node=labels.get(node_label),
            gpu=labels.get("gpu"),
            xid=labels.get("xid"),
            action=action,
            dry_run=not self.options.execute,
            result=result,
        )

    def _observe(self, record: AuditRecord) -> None:
        self.observe(record)
        logger.info(
            "%s %s for %s node=%s gpu=%s xid=%s",
            record.result,
            record.action,
            *(printable(str(value)) for value in (record.alert, record.node, record.gpu, record.xid)),
        )
