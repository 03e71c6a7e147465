"""Issue 15: the receiver tried as an attacker and under a storm, over HTTP against a real
`gpulens remediate serve` (the fake Kubernetes API of tests/support for drains, real hook scripts).

Each test names the numbered failure it reproduces. Nothing here asserts a duration: where order in
time matters (a slow drain must not hold an unrelated one) the test polls the audit log for states.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpulens.remediation.policy import default_policy_text
from tests.remediation.scripts import recording_hook
from tests.support.remediation_servers import KubeApi, Remediate, run_remediate

TOKEN = "hardening-token"


def post(
    receiver: Remediate, body: bytes | dict[str, Any], token: str | None = TOKEN
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{receiver.url}/alerts", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def alert(name: str, fingerprint: str, **labels: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": "s"},
        "startsAt": "2026-11-30T00:00:00Z",
        "fingerprint": fingerprint,
    }


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "receiver": "gpulens", "alerts": list(alerts)}


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    """Poll until `condition()` is truthy (generous deadline: a slow machine only waits longer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def last_results(receiver: Remediate) -> dict[tuple[str, str], str]:
    """The latest result of each (fingerprint, action): an action's outcome follows its `pending`."""
    return {(r["fingerprint"], r["action"]): r["result"] for r in receiver.audit()}


def settled(receiver: Remediate) -> bool:
    return "pending" not in last_results(receiver).values()


def final(receiver: Remediate, action: str) -> dict[str, str]:
    """fingerprint -> final result of `action`, once no action is still running."""
    wait_for(lambda: settled(receiver), "every action's outcome")
    return {fp: result for (fp, kind), result in last_results(receiver).items() if kind == action}


def results(receiver: Remediate, action: str) -> list[tuple[str | None, str]]:
    return [(r["node"], r["result"]) for r in receiver.audit() if r["action"] == action]


@pytest.fixture
def serve(tmp_path: Path) -> Callable[..., Any]:
    """`run_remediate` with the test token; every start in a test shares one audit log (restarts)."""

    def start(*args: str) -> Any:
        return run_remediate(tmp_path, *args, token=TOKEN)

    return start


# -- 2. hooks: a rate limit of their own, deduplication on identity ----------------------------------


def default_policy_with_hooks(tmp_path: Path, record: Path) -> Path:
    """The shipped policy, with its hooks pointed at a recording script (they are not installed here)."""
    hook = recording_hook(tmp_path / "hooks" / "checkpoint-and-stop", record)
    text = default_policy_text().replace("/etc/gpulens/hooks/checkpoint-and-stop", str(hook))
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def hook_runs(record: Path) -> list[str]:
    return (
        [line for line in record.read_text().splitlines() if line.startswith("args:")]
        if record.exists()
        else []
    )


def test_a_storm_of_training_alerts_runs_the_default_policys_hook_within_its_limits(
    tmp_path: Path, serve: Any
) -> None:
    # Ledger (default policy: 1 hook run per job and 5 in all per hour):
    # POST 1: 60 TrainingLossNaN alerts for job j-same, 60 distinct fingerprints -> one identity
    #   (alert name + job_id, the one label the hook uses): 1 run, 59 deduplicated.
    # POST 2: 60 alerts for jobs j0..j59 -> 4 more runs (5 in all), 56 rate_limited.
    # POST 3: TrainingLossDiverged for j-same (a new identity, the same job) -> rate_limited.
    record = tmp_path / "hook.out"
    policy = default_policy_with_hooks(tmp_path, record)
    with serve("--execute", "--policy", str(policy)) as receiver:
        same = [alert("TrainingLossNaN", f"fp-{i}", job_id="j-same", team="nlp") for i in range(60)]
        assert post(receiver, webhook(*same))[0] == 200
        final(receiver, "command")
        assert hook_runs(record) == ["args:-- j-same"]
        jobs = [alert("TrainingLossNaN", f"fq-{i}", job_id=f"j{i}", team="nlp") for i in range(60)]
        assert post(receiver, webhook(*jobs))[0] == 200
        assert post(receiver, webhook(alert("TrainingLossDiverged", "fd", job_id="j-same")))[0] == 200
        commands = list(final(receiver, "command").values())
    # The first four jobs of POST 2 get the four runs left; they run in parallel, in any order.
    assert sorted(hook_runs(record)) == [
        "args:-- j-same",
        "args:-- j0",
        "args:-- j1",
        "args:-- j2",
        "args:-- j3",
    ]
    assert (commands.count("done"), commands.count("deduplicated"), commands.count("rate_limited")) == (
        5,
        59,
        56 + 1,
    )


# -- 3. invalid alerts are refused before they take a blast-radius slot ------------------------------


def test_alerts_with_invalid_node_names_take_no_blast_radius_slot(serve: Any) -> None:
    # The default policy drains 2 nodes an hour. Two forged node names come first; they must fail
    # without a slot, and both real nodes after them are drained (dry run).
    with serve() as receiver:
        forged = [alert("GpuLost", "f1", node="node-a\n"), alert("GpuLost", "f2", node="node-b State=RESUME")]
        real = [alert("GpuLost", "r1", node="node-c"), alert("GpuLost", "r2", node="node-d")]
        status, reply = post(receiver, webhook(*forged, *real))
        drains = results(receiver, "k8s-drain")
    assert status == 200 and reply["alerts"] == 4
    assert drains == [
        ("node-a\n", "failed"),
        ("node-b State=RESUME", "failed"),
        ("node-c", "dry_run"),
        ("node-d", "dry_run"),
    ]


# -- 4. one slow action stalls nothing else; a payload cap --------------------------------------------

DRAIN_POLICY = """
version: 1
rules:
  - match: {{alertname: GpuLost}}
    actions:
      - action: k8s-drain
        api_url: {url}
        timeout_seconds: 600
        retries: 0
"""


def test_a_drain_blocked_by_a_budget_does_not_hold_an_unrelated_drain(tmp_path: Path, serve: Any) -> None:
    api = KubeApi()
    for node in ("gpu-node-1", "gpu-node-2"):
        api.add_node(node)
        api.add_pod("ml", f"trainer-on-{node}", node)
    api.pdb_blocks[("ml", "trainer-on-gpu-node-1")] = -1  # a PodDisruptionBudget that never allows it
    with api.running() as url:
        policy = tmp_path / "drain.yaml"
        policy.write_text(DRAIN_POLICY.format(url=url))
        with serve("--execute", "--policy", str(policy)) as receiver:
            first = threading.Thread(
                target=post, args=(receiver, webhook(alert("GpuLost", "g1", node="gpu-node-1"))), daemon=True
            )
            first.start()
            wait_for(
                lambda: ("POST", "/api/v1/namespaces/ml/pods/trainer-on-gpu-node-1/eviction") in api.requests,
                "the blocked eviction",
            )
            status, _ = post(receiver, webhook(alert("GpuLost", "g2", node="gpu-node-2")))
            wait_for(lambda: ("gpu-node-2", "done") in results(receiver, "k8s-drain"), "gpu-node-2 drained")
            # gpu-node-1's drain is still waiting on its budget, not finished or given up.
            assert results(receiver, "k8s-drain") == [
                ("gpu-node-1", "pending"),
                ("gpu-node-2", "pending"),
                ("gpu-node-2", "done"),
            ]
            assert ("ml", "trainer-on-gpu-node-2") in api.evicted
            api.pdb_blocks[("ml", "trainer-on-gpu-node-1")] = 0  # the budget allows it now
            wait_for(lambda: ("gpu-node-1", "done") in results(receiver, "k8s-drain"), "gpu-node-1 drained")
            first.join(timeout=60)
    assert status == 200


def test_a_payload_over_the_alert_cap_is_413_naming_the_cap(serve: Any) -> None:
    with serve() as receiver:
        many = [alert("GpuUnderutilized", f"u{i}", node=f"n{i % 40}", gpu=str(i % 8)) for i in range(1001)]
        status, reply = post(receiver, webhook(*many))
        assert (status, "at most 1000" in reply["error"]) == (413, True)
        assert receiver.audit() == []
        status, reply = post(receiver, webhook(*many[:1000]))
    assert status == 200 and reply["alerts"] == 1000


# -- 5. the HTTP server: timeouts, backlog, quiet hang-ups ---------------------------------------------


def test_clients_that_hang_up_leave_no_traceback_in_the_log(serve: Any) -> None:
    body = json.dumps(webhook(alert("GpuUnderutilized", "u", node="n1", gpu="0"))).encode()
    request = (
        f"POST /alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with serve() as receiver:
        host, port = receiver.url.removeprefix("http://").split(":")
        for _ in range(30):
            with socket.create_connection((host, int(port)), timeout=10) as conn:
                conn.sendall(request)
                # Close with a reset (SO_LINGER 0) before the reply: the server's write meets a dead peer.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with urllib.request.urlopen(f"{receiver.url}/healthz", timeout=30) as reply:
            assert reply.read() == b"ok\n"
        log = receiver.log.read_text()
    assert "Traceback" not in log and "BrokenPipe" not in log and "ConnectionReset" not in log


# -- 6. poison pills ------------------------------------------------------------------------------------


def test_a_huge_xid_does_not_drop_its_batch(serve: Any) -> None:
    poison = alert("GpuXidNonRecoverable", "x", node="gpu-node-1", gpu="0", xid="9" * 4400)
    lost = alert("GpuLost", "l", node="gpu-node-2", gpu="1")
    with serve() as receiver:
        status, reply = post(receiver, webhook(poison, lost))
        lines = receiver.audit()
    assert status == 200 and reply["alerts"] == 2
    assert ("gpu-node-2", "k8s-drain", "dry_run") in [(r["node"], r["action"], r["result"]) for r in lines]
    # The poisoned alert has no XID class: no rule matches it, and it is audited as such.
    assert [(r["node"], r["action"], r["result"]) for r in lines if r["alert"] == "GpuXidNonRecoverable"] == [
        ("gpu-node-1", "none", "skipped")
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"version": "4", "alerts": [{"labels": {"alertname": "X", "deep": '
        + b'{"a":' * 50_000
        + b"1"
        + b"}" * 50_000
        + b"}}]}",
    ],
    ids=["nested-array", "nested-label"],
)
def test_deeply_nested_json_is_400_and_the_server_keeps_serving(serve: Any, body: bytes) -> None:
    with serve() as receiver:
        status, reply = post(receiver, body)
        assert status == 400 and "JSON" in reply["error"]
        assert post(receiver, webhook(alert("GpuLost", "l", node="n2")))[0] == 200


# -- 7. audit log, restore, hook arguments, log lines ---------------------------------------------------

DRAIN_ONLY = """
version: 1
rules:
  - match: {alertname: GpuLost}
    actions:
      - action: k8s-drain
        node_label: instance
"""


def test_a_torn_last_line_in_the_audit_log_does_not_swallow_the_next_record(
    tmp_path: Path, serve: Any
) -> None:
    policy = tmp_path / "drain.yaml"
    policy.write_text(DRAIN_ONLY)
    audit = tmp_path / "audit.jsonl"
    audit.write_text('{"ts":"2026-11-30T00:00:00.000Z","alert":"GpuLo')  # a crash mid-write
    with serve("--policy", str(policy)) as receiver:
        assert post(receiver, webhook(alert("GpuLost", "l1", instance="node-a")))[1]["decisions"] == [
            "dry_run"
        ]
    # The restarted receiver must know node-a was drained: the record after the torn line survived.
    with serve("--policy", str(policy)) as receiver:
        status, reply = post(receiver, webhook(alert("GpuLost", "l2", instance="node-a")))
    assert (status, reply["decisions"]) == (200, ["deduplicated"])


def test_a_restart_restores_the_blast_radius_from_the_drains_node_label(tmp_path: Path, serve: Any) -> None:
    # Ledger (2 nodes an hour): node-a and node-b drained; restart; node-c must be refused.
    policy = tmp_path / "drain.yaml"
    policy.write_text(DRAIN_ONLY)
    with serve("--policy", str(policy)) as receiver:
        a, b = alert("GpuLost", "a", instance="node-a"), alert("GpuLost", "b", instance="node-b")
        assert post(receiver, webhook(a, b))[1]["decisions"] == ["dry_run", "dry_run"]
    with serve("--policy", str(policy)) as receiver:
        reply = post(receiver, webhook(alert("GpuLost", "c", instance="node-c")))[1]
        drains = results(receiver, "k8s-drain")
    assert reply["decisions"] == ["rate_limited"]
    assert drains == [("node-a", "dry_run"), ("node-b", "dry_run"), ("node-c", "rate_limited")]


def test_a_label_that_looks_like_an_option_never_reaches_a_hook_as_one(tmp_path: Path, serve: Any) -> None:
    record = tmp_path / "hook.out"
    hook = recording_hook(tmp_path / "restart-job", record)
    policy = tmp_path / "hooks.yaml"
    policy.write_text(
        "version: 1\nrules:\n"
        "  - match: {alertname: Plain}\n"
        f"    actions: [{{action: command, argv: ['{hook}', '{{job_id}}'], retries: 0}}]\n"
        "  - match: {alertname: Dashed}\n"
        f"    actions: [{{action: command, argv: ['{hook}', '--', '{{job_id}}'], retries: 0}}]\n"
        "  - match: {alertname: KeyValue}\n"
        f"    actions: [{{action: command, argv: ['{hook}', 'job={{job_id}}'], retries: 0}}]\n"
    )
    with serve("--execute", "--policy", str(policy)) as receiver:
        forged = [
            alert("Plain", "p", job_id="--all"),
            alert("Dashed", "d", job_id="--kill"),
            alert("KeyValue", "k", job_id="--force"),
        ]
        assert post(receiver, webhook(*forged))[0] == 200
        assert final(receiver, "command") == {"p": "failed", "d": "done", "k": "done"}
    assert sorted(hook_runs(record)) == ["args:-- --kill", "args:job=--force"]


def test_newlines_in_labels_cannot_forge_log_lines(tmp_path: Path, serve: Any) -> None:
    policy = tmp_path / "log.yaml"
    policy.write_text("version: 1\nrules:\n  - actions: [{action: log, message: 'job {job_id} on {node}'}]\n")
    forged_line = "FORGED gpulens.remediation: done k8s-drain for GpuLost node=gpu-node-9"
    with serve("--execute", "--policy", str(policy)) as receiver:
        hostile = alert("Training\nFORGED x", "h", node=f"n1\n{forged_line}", job_id=f"j\r\n{forged_line}")
        assert post(receiver, webhook(hostile))[0] == 200
        assert final(receiver, "log") == {"h": "done"}
        log = receiver.log.read_text()
    assert [line for line in log.splitlines() if line.startswith("FORGED")] == []
    assert "job j\\r\\nFORGED" in log  # the text is kept, escaped
