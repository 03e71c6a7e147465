"""The engine's decisions, read back from the audit log: dry-run, dedup, resolved alerts, the blast
radius, write-ahead records, retries, restart. Time is a settable clock; actions are real scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpulens.remediation.audit import AUDIT_KEYS, AuditLog
from gpulens.remediation.engine import Engine, EngineOptions
from gpulens.remediation.model import Alert
from gpulens.remediation.policy import load_policy
from tests.remediation.conftest import T0, Clock, xid_alert
from tests.remediation.scripts import executable, fake_scontrol, parse_scontrol_calls, recording_hook
from tests.support.remediation_servers import WebhookSink


def engine_for(
    policy: Path | None,
    audit: Path,
    *,
    execute: bool = False,
    clock: Clock | None = None,
    sleeps: list[float] | None = None,
) -> Engine:
    options = EngineOptions(
        execute=execute,
        clock=clock or Clock(),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
    )
    return Engine(load_policy(policy), AuditLog(audit), options)


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def summary(path: Path) -> list[tuple[str, str, str]]:
    return [(r["node"], r["action"], r["result"]) for r in audit_lines(path)]


def test_dry_run_audits_the_drain_without_running_anything(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    records = engine_for(None, audit).handle([xid_alert("gpu-node-1")])
    assert [(r.action, r.result, r.dry_run) for r in records] == [
        ("log", "dry_run", True),
        ("k8s-drain", "dry_run", True),
    ]
    lines = audit_lines(audit)
    assert [tuple(line) for line in lines] == [AUDIT_KEYS, AUDIT_KEYS]
    assert AUDIT_KEYS == ("ts", "alert", "fingerprint", "node", "gpu", "xid", "action", "dry_run", "result")
    assert lines[1] == {
        "ts": "2026-11-25T09:46:40.000Z",
        "alert": "GpuXidNonRecoverable",
        "fingerprint": "fp-gpu-node-1-3-79",
        "node": "gpu-node-1",
        "gpu": "3",
        "xid": "79",
        "action": "k8s-drain",
        "dry_run": True,
        "result": "dry_run",
    }


def test_a_repeat_within_the_window_is_deduplicated_and_acted_on_after_it(tmp_path: Path) -> None:
    audit, clock = tmp_path / "audit.jsonl", Clock()
    engine = engine_for(None, audit, clock=clock)
    engine.handle([xid_alert()])
    clock.now = T0 + 3599
    engine.handle([xid_alert()])
    clock.now = T0 + 3600
    engine.handle([xid_alert()])
    assert [r["result"] for r in audit_lines(audit)] == ["dry_run"] * 2 + ["deduplicated"] * 2 + [
        "dry_run"
    ] * 2


NOTIFY_AND_HOOK = """
rules:
  - match: {{alertname: GpuXidNonRecoverable}}
    actions:
      - action: webhook
        url: {url}
      - action: command
        argv: ["{hook}", "{{node}}"]
        retries: 0
"""


def test_a_resolved_alert_notifies_but_never_runs_a_destructive_action(
    tmp_path: Path, write_policy: Any
) -> None:
    record, sink = tmp_path / "hook.out", WebhookSink()
    hook = recording_hook(tmp_path / "hook.sh", record)
    with sink.running() as url:
        engine = engine_for(
            write_policy(NOTIFY_AND_HOOK.format(url=url, hook=hook)), tmp_path / "a.jsonl", execute=True
        )
        engine.handle([xid_alert(status="resolved")])
    # Every decision is written before anything acts; the webhook's outcome follows.
    assert summary(tmp_path / "a.jsonl") == [
        ("gpu-node-1", "webhook", "pending"),
        ("gpu-node-1", "command", "skipped"),
        ("gpu-node-1", "webhook", "done"),
    ]
    assert not record.exists()
    assert sink.bodies[0]["text"].startswith("[RESOLVED] GpuXidNonRecoverable node=gpu-node-1 gpu=3 xid=79")


def test_the_hook_gets_the_alert_on_stdin_after_its_write_ahead_record(
    tmp_path: Path, write_policy: Any
) -> None:
    audit = tmp_path / "a.jsonl"
    record = tmp_path / "hook.out"
    # The hook copies the audit log's last line as it runs: the decision must already be on disk.
    hook = executable(tmp_path / "hook.sh", f"cat > '{record}'; tail -n 1 '{audit}' > '{record}.audit'\n")
    policy = write_policy(f"rules:\n  - actions:\n      - action: command\n        argv: ['{hook}']\n")
    engine_for(policy, audit, execute=True).handle([xid_alert("n9")])
    assert json.loads(record.read_text())["labels"]["node"] == "n9"
    seen = json.loads(Path(f"{record}.audit").read_text())
    assert (seen["action"], seen["result"], seen["dry_run"]) == ("command", "pending", False)
    assert summary(audit)[-1] == ("n9", "command", "done")


def test_a_failing_action_is_retried_with_backoff_then_audited_failed(
    tmp_path: Path, write_policy: Any
) -> None:
    record = tmp_path / "calls"
    hook = executable(tmp_path / "fail.sh", f"echo call >> '{record}'; echo 'no job' >&2; exit 3\n")
    policy = write_policy(
        f"rules:\n  - actions:\n      - action: command\n        argv: ['{hook}']\n"
        "        retries: 2\n        backoff_seconds: 0.25\n      - action: log\n"
    )
    sleeps: list[float] = []
    engine_for(policy, tmp_path / "a.jsonl", execute=True, sleeps=sleeps).handle([xid_alert()])
    assert record.read_text().count("call") == 3
    assert sleeps == [0.25, 0.5]
    # Both decisions are written first; the failure does not stop the rule: the notification still runs.
    assert [(a, r) for _, a, r in summary(tmp_path / "a.jsonl")] == [
        ("command", "pending"),
        ("log", "pending"),
        ("command", "failed"),
        ("log", "done"),
    ]


def test_a_hook_past_its_timeout_is_killed_and_failed(tmp_path: Path, write_policy: Any) -> None:
    hook = executable(tmp_path / "slow.sh", "sleep 30\n")
    policy = write_policy(
        f"rules:\n  - actions:\n      - action: command\n        argv: ['{hook}']\n"
        "        timeout_seconds: 0.5\n        retries: 0\n"
    )
    engine_for(policy, tmp_path / "a.jsonl", execute=True).handle([xid_alert()])
    assert summary(tmp_path / "a.jsonl")[-1] == ("gpu-node-1", "command", "failed")


BLAST = """
settings:
  blast_radius: {{max_nodes_per_hour: 5, max_fleet_fraction_per_hour: 0.1, fleet_size: 20}}
  escalate:
    - action: webhook
      url: {url}
      message: "HUMAN NEEDED: {{node}} not drained"
rules:
  - match: {{alertname: GpuXidNonRecoverable}}
    actions:
      - action: slurm-drain
        retries: 0
"""


def test_drains_beyond_the_blast_radius_are_refused_and_escalated(
    tmp_path: Path, write_policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ledger: fleet 20 nodes x 10% = 2 nodes per hour (tighter than max 5). Alerts at t=0,1,2,3 s for
    # nodes a, b, a (another GPU), c -> a and b drained; a's second alert is the same identity for a
    # drain (alert name + node; the GPU is not what a drain acts on): deduplicated; c refused.
    # At t=3600 a has aged out (b drained at t=1 has not, until 3601) -> d drained.
    calls = tmp_path / "scontrol.calls"
    fake_scontrol(tmp_path / "bin", calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{__import__('os').environ['PATH']}")
    sink, clock = WebhookSink(), Clock()
    with sink.running() as url:
        engine = engine_for(
            write_policy(BLAST.format(url=url)), tmp_path / "a.jsonl", execute=True, clock=clock
        )
        for i, (node, gpu) in enumerate([("a", "0"), ("b", "0"), ("a", "5"), ("c", "0")]):
            clock.now = T0 + i
            engine.handle([xid_alert(node, gpu=gpu)])
        clock.now = T0 + 3600
        engine.handle([xid_alert("d")])
    finals = [(n, a, r) for n, a, r in summary(tmp_path / "a.jsonl") if r != "pending"]
    assert finals == [
        ("a", "slurm-drain", "done"),
        ("b", "slurm-drain", "done"),
        ("a", "slurm-drain", "deduplicated"),
        ("c", "slurm-drain", "rate_limited"),
        ("c", "webhook", "done"),
        ("d", "slurm-drain", "done"),
    ]
    assert [call[1] for call in parse_scontrol_calls(calls)] == [
        "NodeName=a",
        "NodeName=b",
        "NodeName=d",
    ]
    assert [body["text"] for body in sink.bodies] == ["HUMAN NEEDED: c not drained"]


def test_dry_run_counts_against_the_blast_radius_too(tmp_path: Path) -> None:
    # The default policy allows 2 nodes an hour: a dry run shows what --execute would refuse.
    engine = engine_for(None, tmp_path / "a.jsonl")
    engine.handle([xid_alert(n) for n in ("a", "b", "c")])
    drains = [(n, r) for n, a, r in summary(tmp_path / "a.jsonl") if a == "k8s-drain"]
    assert drains == [("a", "dry_run"), ("b", "dry_run"), ("c", "rate_limited")]
    assert summary(tmp_path / "a.jsonl")[-1] == ("c", "log", "dry_run")  # the escalation


def test_a_restarted_engine_remembers_what_it_drained(
    tmp_path: Path, write_policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "scontrol.calls"
    fake_scontrol(tmp_path / "bin", calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{__import__('os').environ['PATH']}")
    policy = write_policy(
        "settings:\n  blast_radius: {max_nodes_per_hour: 1}\n"
        "rules:\n  - actions: [{action: slurm-drain, retries: 0}]\n"
    )
    audit = tmp_path / "a.jsonl"
    engine_for(policy, audit, execute=True).handle([xid_alert("a")])
    restarted = engine_for(policy, audit, execute=True, clock=Clock(T0 + 60))
    assert restarted.restore() == 2  # the drain's pending and done records
    restarted.handle([xid_alert("a"), xid_alert("b")])
    assert summary(audit)[2:] == [("a", "slurm-drain", "deduplicated"), ("b", "slurm-drain", "rate_limited")]
    assert len(parse_scontrol_calls(calls)) == 1


def test_an_alert_no_rule_matches_is_audited_as_skipped(tmp_path: Path) -> None:
    engine_for(None, tmp_path / "a.jsonl").handle([Alert(labels={"alertname": "AgentDown"}, fingerprint="f")])
    (line,) = audit_lines(tmp_path / "a.jsonl")
    assert (line["alert"], line["action"], line["result"], line["node"]) == (
        "AgentDown",
        "none",
        "skipped",
        None,
    )


def test_a_drain_without_a_node_label_is_skipped(tmp_path: Path) -> None:
    engine_for(None, tmp_path / "a.jsonl").handle([Alert(labels={"alertname": "GpuLost"}, fingerprint="f")])
    assert [(a, r) for _, a, r in summary(tmp_path / "a.jsonl")] == [
        ("log", "dry_run"),
        ("k8s-drain", "skipped"),
    ]


def test_an_alert_with_only_an_xid_code_gets_its_class_from_the_catalog(tmp_path: Path) -> None:
    # 79 (fallen off the bus) is reboot_node, 48 (double-bit ECC) reset_gpu: both drain; 13
    # (graphics engine exception) is restart_app: the restart hook, no drain.
    alerts = [
        Alert(labels={"alertname": "GpuXidNonRecoverable", "node": n, "gpu": "0", "xid": x}, fingerprint=n)
        for n, x in (("a", "79"), ("b", "48"), ("c", "13"))
    ]
    engine_for(None, tmp_path / "a.jsonl").handle(alerts)
    assert [(n, a) for n, a, _ in summary(tmp_path / "a.jsonl")] == [
        ("a", "log"),
        ("a", "k8s-drain"),
        ("b", "log"),
        ("b", "k8s-drain"),
        ("c", "log"),
        ("c", "command"),
    ]


HOOKS = """
settings:
  hooks: {{max_per_job_per_hour: 1, max_per_hour: {total}}}
rules:
  - match: {{alertname: [TrainingLossNaN, TrainingLossDiverged]}}
    actions:
      - action: command
        argv: ["{hook}", "--", "{{job_id}}"]
        retries: 0
"""


def training_alert(name: str, job: str) -> Alert:
    return Alert(labels={"alertname": name, "job_id": job, "team": "nlp"}, fingerprint=f"{name}-{job}")


def test_hooks_are_limited_per_job_and_per_hour(tmp_path: Path, write_policy: Any) -> None:
    # Ledger: 1 run per job per hour, 10 in all. t=0: NaN j1 runs; Diverged j1 (another alert, the
    # same job) is refused; NaN j2 runs. t=3600: j1's run has aged out -> Diverged j1 runs.
    record, clock = tmp_path / "hook.out", Clock()
    hook = recording_hook(tmp_path / "hook.sh", record)
    engine = engine_for(
        write_policy(HOOKS.format(total=10, hook=hook)), tmp_path / "a.jsonl", execute=True, clock=clock
    )
    first = engine.handle(
        [
            training_alert("TrainingLossNaN", "j1"),
            training_alert("TrainingLossDiverged", "j1"),
            training_alert("TrainingLossNaN", "j2"),
        ]
    )
    clock.now = T0 + 3600
    later = engine.handle([training_alert("TrainingLossDiverged", "j1")])
    assert [r.result for r in first + later] == ["done", "rate_limited", "done", "done"]
    assert sorted(line for line in record.read_text().splitlines() if line.startswith("args:")) == [
        "args:-- j1",
        "args:-- j1",
        "args:-- j2",
    ]


def test_a_restarted_engine_counts_the_hook_runs_of_the_last_hour(tmp_path: Path, write_policy: Any) -> None:
    # Ledger: 2 runs an hour in all. j1 and j2 ran; after a restart j3 is refused (the log does not
    # name jobs, so restored runs count towards the total only).
    record = tmp_path / "hook.out"
    policy = write_policy(HOOKS.format(total=2, hook=recording_hook(tmp_path / "hook.sh", record)))
    audit = tmp_path / "a.jsonl"
    engine_for(policy, audit, execute=True).handle(
        [training_alert("TrainingLossNaN", "j1"), training_alert("TrainingLossNaN", "j2")]
    )
    restarted = engine_for(policy, audit, execute=True, clock=Clock(T0 + 60))
    assert restarted.restore() == 4  # two runs, each a pending and a done record
    assert [r.result for r in restarted.handle([training_alert("TrainingLossNaN", "j3")])] == ["rate_limited"]
