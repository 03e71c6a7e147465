"""k8s-cordon and k8s-drain through the official client against a small local Kubernetes API.

No API server can run here; `KubeApi` (tests/support/remediation_servers.py) serves the five
calls the actions make with the API's JSON, including the Eviction API's 429 for a PDB.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gpulens.remediation.actions import ActionFailed
from gpulens.remediation.actions import k8s as k8s_actions
from gpulens.remediation.actions.k8s import CordonAction, DrainAction
from tests.remediation.conftest import xid_alert
from tests.support.remediation_servers import KubeApi


def cluster() -> KubeApi:
    api = KubeApi()
    for node in ("gpu-node-1", "gpu-node-2"):
        api.add_node(node)
    api.add_pod("ml", "trainer-0", "gpu-node-1")
    api.add_pod("ml", "trainer-1", "gpu-node-1")
    api.add_pod("kube-system", "gpulens-agent-x7", "gpu-node-1", owner_kind="DaemonSet")
    api.add_pod(
        "kube-system",
        "kube-proxy-gpu-node-1",
        "gpu-node-1",
        annotations={"kubernetes.io/config.mirror": "abc"},
    )
    api.add_pod("ml", "trainer-9", "gpu-node-2")
    return api


def kubeconfig(tmp_path: Path, url: str) -> str:
    """A real kubeconfig file pointing at the local API."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "local", "cluster": {"server": url}}],
                "users": [{"name": "gpulens", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "test", "context": {"cluster": "local", "user": "gpulens"}}],
            }
        )
    )
    return str(path)


def test_cordon_marks_the_node_unschedulable_with_a_fault_taint(tmp_path: Path) -> None:
    api = cluster()
    api.nodes["gpu-node-1"]["spec"]["taints"] = [
        {"key": "nvidia.com/gpu", "effect": "NoSchedule", "timeAdded": "2026-11-01T00:00:00Z"}
    ]
    with api.running() as url:
        CordonAction(kubeconfig=kubeconfig(tmp_path, url)).run(xid_alert("gpu-node-1"), timeout=10)
    spec = api.nodes["gpu-node-1"]["spec"]
    assert spec["unschedulable"] is True
    assert spec["taints"] == [  # the existing taint survives (the client writes its time as +00:00)
        {"key": "nvidia.com/gpu", "effect": "NoSchedule", "timeAdded": "2026-11-01T00:00:00+00:00"},
        {"key": "gpulens.io/gpu-fault", "value": "xid-79", "effect": "NoSchedule"},
    ]
    assert api.evicted == [] and "unschedulable" not in api.nodes["gpu-node-2"]["spec"]


def test_drain_evicts_workload_pods_and_leaves_daemonsets_and_mirror_pods(tmp_path: Path) -> None:
    api = cluster()
    with api.running() as url:
        DrainAction(kubeconfig=kubeconfig(tmp_path, url)).run(xid_alert("gpu-node-1"), timeout=10)
    assert api.evicted == [("ml", "trainer-0"), ("ml", "trainer-1")]
    assert {p["metadata"]["name"] for p in api.pods} == {
        "gpulens-agent-x7",
        "kube-proxy-gpu-node-1",
        "trainer-9",
    }
    assert api.nodes["gpu-node-1"]["spec"]["unschedulable"] is True


def test_drain_waits_while_a_pod_disruption_budget_blocks_then_evicts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(k8s_actions, "PDB_RETRY_SECONDS", 0.05)
    api = cluster()
    api.pdb_blocks[("ml", "trainer-1")] = 3  # three 429s, then the budget allows it
    with api.running() as url:
        DrainAction(api_url=url).run(xid_alert("gpu-node-1"), timeout=10)
    assert api.evicted == [("ml", "trainer-0"), ("ml", "trainer-1")]
    assert api.requests.count(("POST", "/api/v1/namespaces/ml/pods/trainer-1/eviction")) == 4


def test_drain_never_goes_around_a_budget_that_keeps_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(k8s_actions, "PDB_RETRY_SECONDS", 0.05)
    api = cluster()
    api.pdb_blocks[("ml", "trainer-0")] = -1
    with (
        api.running() as url,
        pytest.raises(ActionFailed, match="ml/trainer-0 is blocked by a PodDisruptionBudget"),
    ):
        DrainAction(api_url=url).run(xid_alert("gpu-node-1"), timeout=0.5)
    assert ("ml", "trainer-0") not in api.evicted
    assert any(p["metadata"]["name"] == "trainer-0" for p in api.pods)


def test_an_unknown_node_fails_with_the_api_status() -> None:
    api = cluster()
    with api.running() as url, pytest.raises(ActionFailed, match="cordon of gpu-node-9 failed: HTTP 404"):
        CordonAction(api_url=url).run(xid_alert("gpu-node-9"), timeout=5)
