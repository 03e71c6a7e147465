"""Policy loading: the shipped default, and every kind of bad policy refused with its line named."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from gpulens.remediation.actions.command import CommandAction
from gpulens.remediation.actions.k8s import DrainAction
from gpulens.remediation.located_yaml import PolicyError
from gpulens.remediation.model import Alert
from gpulens.remediation.policy import load_policy, parse_policy
from tests.remediation.conftest import xid_alert
from tests.support.servers import REPO, gpulens_exe


def kinds_for(alert: Alert) -> list[str]:
    rule = load_policy(None).rule_for(alert)
    return [] if rule is None else [step.kind for step in rule.actions]


def named(alertname: str, **labels: str) -> Alert:
    return Alert(labels={"alertname": alertname, **labels})


def test_default_policy_maps_the_alert_classes_of_the_issue() -> None:
    assert kinds_for(xid_alert(action="reboot_node")) == ["log", "k8s-drain"]
    assert kinds_for(xid_alert(xid="48", action="reset_gpu")) == ["log", "k8s-drain"]
    assert kinds_for(named("GpuXidRecoverable", action="restart_app", node="n1")) == ["log", "command"]
    assert kinds_for(named("TrainingLossNaN", team="search", job_id="j1")) == ["log", "command"]
    assert kinds_for(named("TrainingLossDiverged", team="search", job_id="j1")) == ["log", "command"]
    assert kinds_for(named("GpuUnderutilized", node="n1", gpu="0")) == ["log"]
    assert kinds_for(named("GpuXidNonRecoverable", action="investigate")) == []
    assert kinds_for(named("AgentDown")) == []


def test_default_policy_hooks_are_optional_and_drains_have_long_timeouts() -> None:
    policy = load_policy(None)
    steps = [step for rule in policy.rules for step in rule.actions]
    assert all(s.action.optional for s in steps if isinstance(s.action, CommandAction))
    assert all(s.timeout >= 120 for s in steps if isinstance(s.action, DrainAction))
    assert policy.settings.blast_radius.max_nodes == 2
    assert [s.kind for s in policy.settings.escalate] == ["log"]
    # Issue 15: the shipped hooks are rate-limited, and label arguments come after `--`.
    assert (policy.settings.hooks.max_per_job, policy.settings.hooks.max_total) == (1, 5)
    assert all(
        list(s.action.argv[1:3]) == ["--", "{job_id}"] for s in steps if isinstance(s.action, CommandAction)
    )


GOOD_RULE = """
rules:
  - name: drain
    match: {alertname: GpuXidNonRecoverable}
    actions:
      - action: slurm-drain
        reason: "xid {xid}"
        timeout_seconds: 5
        retries: 0
"""


def test_a_custom_policy_reads_parameters_and_step_settings(write_policy: Any) -> None:
    policy = load_policy(write_policy(GOOD_RULE))
    (step,) = policy.rules[0].actions
    assert (step.kind, step.timeout, step.retries, step.line) == ("slurm-drain", 5.0, 0, 5)
    assert step.action.reason == "xid {xid}"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        # 1. an action nobody implements
        (
            "rules:\n  - match: {alertname: X}\n    actions:\n      - action: log\n"
            "      - action: k8s-nuke\n",
            5,
            "unknown action 'k8s-nuke'",
        ),
        # 2. a parameter the action does not take
        (
            "rules:\n  - actions:\n      - action: webhook\n        url: http://x\n        colour: red\n",
            5,
            "unknown parameter 'colour'",
        ),
        # 3. a required parameter missing
        ("rules:\n  - actions:\n      - action: sns\n", 3, "missing parameter 'topic_arn'"),
        # 4. a parameter of the wrong type
        ("rules:\n  - actions:\n      - action: command\n        argv: /bin/true\n", 4, "argv must be"),
        # 5. a broken template
        ("rules:\n  - actions:\n      - action: log\n        message: 'node {node'\n", 4, "bad template"),
        # 6. a regular expression that does not compile
        (
            "rules:\n  - match_re: {alertname: 'Gpu(('}\n    actions: [{action: log}]\n",
            2,
            "bad regular expression",
        ),
        # 7. a key twice
        (
            "rules:\n  - actions: [{action: log}]\n    actions: [{action: log}]\n",
            3,
            "duplicate key 'actions'",
        ),
        # 8. escalation that would itself drain
        (
            "settings:\n  escalate:\n    - action: k8s-cordon\nrules:\n  - actions: [{action: log}]\n",
            3,
            "escalate may only notify",
        ),
        # 9. YAML that does not parse
        ("rules:\n  - actions: [{action: log}\n  - x\n", 3, "YAML syntax"),
        # 10. a misspelt top-level key
        ("rulez:\n  - actions: [{action: log}]\n", 1, "unknown key 'rulez'"),
        # 11. a negative timeout
        (
            "rules:\n  - actions:\n      - action: log\n        timeout_seconds: -1\n",
            4,
            "timeout_seconds must be",
        ),
        # 12. no rules at all
        ("rules: []\n", 1, "no rules"),
    ],
)
def test_bad_policies_are_refused_naming_the_line(
    write_policy: Any, text: str, line: int, words: str
) -> None:
    path = write_policy(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: line {line}: "), message
    assert words in message


def test_serve_refuses_to_start_on_an_unknown_action(write_policy: Any, tmp_path: Path) -> None:
    path = write_policy(
        "rules:\n  - match: {alertname: GpuLost}\n    actions:\n      - action: reboot-everything\n"
    )
    done = subprocess.run(
        [
            gpulens_exe(),
            "remediate",
            "serve",
            "--policy",
            str(path),
            "--port",
            "0",
            "--audit-log",
            str(tmp_path / "audit.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert f"{path}: line 4: unknown action 'reboot-everything'" in line
    assert "known: " in line and "k8s-drain" in line


def test_check_lists_the_rules_of_a_policy(write_policy: Any) -> None:
    done = subprocess.run(
        [gpulens_exe(), "remediate", "check", "--policy", str(write_policy(GOOD_RULE))],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "drain: slurm-drain"


def test_a_missing_policy_file_is_one_error_line(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy"):
        load_policy(tmp_path / "nope.yaml")


def test_the_policy_example_in_the_docs_is_a_valid_policy() -> None:
    docs = (REPO / "docs" / "remediation.md").read_text()
    example = docs.split("## Policy", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    policy = parse_policy(example, "docs/remediation.md")
    assert [step.kind for step in policy.rules[0].actions] == ["webhook", "slurm-drain"]
    assert policy.settings.blast_radius.allowance == 2
