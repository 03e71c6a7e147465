"""End to end with real parts: sim agent -> Prometheus -> Alertmanager -> `gpulens remediate serve`.

The sim agent raises XID 79 on GPU 3; Prometheus evaluates the project's generated
`GpuXidNonRecoverable` rule (from `gpulens rules build`), Alertmanager posts the alert with a bearer
token to the receiver subprocess, and the audit log shows the dry-run drain of that node, then the
resolution (which never drains).

The one change to the generated rule: its 10-minute windows (`increase(...[10m])`, `offset 10m`)
become 5 seconds, so that the rule fires within seconds of the fault instead of needing ten minutes
of history; the rule has no `for`. The copy is checked with promtool.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.remediation_servers import run_alertmanager, run_remediate
from tests.support.servers import gpulens_exe, require_binary, run_agent, run_prometheus

TOKEN = "e2e-token"
WINDOW = "5s"


def xid_rule_for_tests(tmp_path: Path) -> Path:
    """The generated GpuXidNonRecoverable rule with its windows shortened to WINDOW."""
    out = tmp_path / "rules"
    subprocess.run(
        [gpulens_exe(), "rules", "build", "--out", str(out)], check=True, capture_output=True, timeout=120
    )
    doc = yaml.safe_load((out / "gpulens-rules.yaml").read_text())
    (rule,) = [r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "GpuXidNonRecoverable"]
    assert "for" not in rule or rule["for"] in ("0s", "0m"), "the rule gained a `for`: shorten it here too"
    assert rule["expr"].count("10m") >= 2, rule["expr"]
    short = {**rule, "expr": rule["expr"].replace("10m", WINDOW)}
    path = tmp_path / "xid-rule.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "gpulens-remediation-e2e", "rules": [short]}]}))
    subprocess.run(
        [require_binary("promtool"), "check", "rules", str(path)], check=True, capture_output=True, timeout=60
    )
    return path


def wait_audit(read: Any, predicate: Any, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = read()
        if any(predicate(line) for line in lines):
            return list(lines)
        time.sleep(0.25)
    raise TimeoutError(f"no matching audit record within {timeout}s; audit log: {read()}")


@pytest.mark.slow
def test_xid_79_on_a_sim_agent_ends_as_a_dry_run_drain_of_its_node(tmp_path: Path) -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    rules = xid_rule_for_tests(tmp_path)
    node = "gpu-node-e2e"
    # The fault comes 12 s after the agent starts: Prometheus must have scraped `up` for WINDOW first.
    with (
        run_agent(tmp_path, "--sim-fault", "79:3:12", node=node) as agent,
        run_remediate(tmp_path, token=TOKEN) as receiver,
        run_alertmanager(tmp_path, f"{receiver.url}/alerts", token=TOKEN) as alertmanager,
        run_prometheus(tmp_path, [f"127.0.0.1:{agent.port}"], rule_files=[rules], alertmanager=alertmanager),
    ):

        def drained(r: dict[str, Any]) -> bool:
            return r["action"] == "k8s-drain" and r["result"] == "dry_run"

        lines = wait_audit(receiver.audit, drained, timeout=90)
        (drain,) = [r for r in lines if drained(r)]
        assert {k: drain[k] for k in ("alert", "node", "gpu", "xid", "action", "dry_run", "result")} == {
            "alert": "GpuXidNonRecoverable",
            "node": node,
            "gpu": "3",
            "xid": "79",
            "action": "k8s-drain",
            "dry_run": True,
            "result": "dry_run",
        }
        assert len(drain["fingerprint"]) == 16  # Alertmanager's fingerprint, passed through

        # Once the rule's window has passed the alert resolves; the resolution never drains.
        def resolved(r: dict[str, Any]) -> bool:
            return r["action"] == "k8s-drain" and r["result"] == "skipped"

        lines = wait_audit(receiver.audit, resolved, timeout=60)
        assert all(r["fingerprint"] == drain["fingerprint"] for r in lines)
        assert [r["result"] for r in lines if r["action"] == "k8s-drain"] == ["dry_run", "skipped"]
        assert TOKEN not in receiver.log.read_text()  # the bearer token never reaches the log
