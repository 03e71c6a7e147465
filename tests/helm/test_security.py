"""What a reviewer checks by eye in the rendered chart: where the agent lands, who runs as root, what
touches the host, where secrets and IAM roles come from, and how the CronJobs are scheduled."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helm.chart import (
    VALUES_SETS,
    Manifest,
    containers,
    of_kind,
    one,
    pod_spec,
    render_with,
    rendered,
    workloads,
)

# Node labels that mean "this node has an NVIDIA GPU" (GPU Feature Discovery, Karpenter on AWS).
GPU_NODE_LABELS = {
    "nvidia.com/gpu.present",
    "karpenter.k8s.aws/instance-gpu-manufacturer",
    "nvidia.com/gpu.deploy.dcgm-exporter",
    "k8s.amazonaws.com/accelerator",
}
ALL_SETS = sorted(VALUES_SETS)


def agent_spec(values_set: str) -> dict[str, Any]:
    return pod_spec(one(rendered(values_set), "DaemonSet", "agent"))


@pytest.mark.parametrize("values_set", ALL_SETS)
def test_agent_lands_only_on_gpu_nodes(values_set: str) -> None:
    spec = agent_spec(values_set)
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms, "no required node affinity: the agent would run on every node"
    for term in terms:  # terms are ORed, so every one of them must demand a GPU label
        assert any(e["key"] in GPU_NODE_LABELS and e["operator"] == "In" for e in term["matchExpressions"]), (
            term
        )
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


@pytest.mark.parametrize("values_set", ALL_SETS)
def test_agent_sees_gpus_without_taking_one(values_set: str) -> None:
    """NVML through the NVIDIA runtime (all GPUs, NVML only), never a nvidia.com/gpu request."""
    spec = agent_spec(values_set)
    (agent,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all" and env["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    assert spec["runtimeClassName"] == "nvidia"
    for section in ("requests", "limits"):
        assert not any("nvidia.com" in k for k in agent["resources"].get(section, {}))


@pytest.mark.parametrize("values_set", ALL_SETS)
def test_agent_probes_healthz_and_mounts_only_what_mapping_needs(values_set: str) -> None:
    spec = agent_spec(values_set)
    (agent,) = spec["containers"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert agent[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    assert host_paths["trainer-socket"] == "/run/gpulens"
    assert "--socket=/run/gpulens/agent.sock" in agent["args"]
    if "pod-resources" in host_paths:
        assert host_paths["pod-resources"] == "/var/lib/kubelet/pod-resources"
        assert mounts["pod-resources"]["readOnly"] is True
    assert set(host_paths) <= {"trainer-socket", "pod-resources"}
    assert not spec.get("hostNetwork") and not spec.get("hostIPC")


def test_host_pid_and_ptrace_are_off_unless_asked_for() -> None:
    defaults, full = agent_spec("defaults"), agent_spec("all-features")
    assert (
        defaults["hostPID"] is False
        and "add" not in defaults["containers"][0]["securityContext"]["capabilities"]
    )
    assert full["hostPID"] is True
    assert full["containers"][0]["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["SYS_PTRACE"],
    }


@pytest.mark.parametrize("values_set", ALL_SETS)
def test_no_container_is_privileged_or_keeps_a_capability(values_set: str) -> None:
    for workload in workloads(rendered(values_set)):
        spec = pod_spec(workload)
        for container in containers(spec):
            ctx = container["securityContext"]
            where = f"{workload.kind}/{workload.name}/{container['name']}"
            assert ctx.get("privileged", False) is False, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            added = ctx["capabilities"].get("add", [])
            # The one exception: reading other users' /proc/<pid>/environ when asked to (agent.hostPID).
            ptrace = spec.get("hostPID") and container["name"] == "agent"
            assert added == (["SYS_PTRACE"] if ptrace else []), where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def runs_as_root(spec: dict[str, Any], container: dict[str, Any]) -> bool:
    uid = container.get("securityContext", {}).get(
        "runAsUser", spec.get("securityContext", {}).get("runAsUser")
    )
    return uid is None or uid == 0


@pytest.mark.parametrize("values_set", ALL_SETS)
def test_nothing_but_the_agent_runs_as_root(values_set: str) -> None:
    for workload in workloads(rendered(values_set)):
        spec = pod_spec(workload)
        component = workload.doc["metadata"]["labels"]["app.kubernetes.io/component"]
        for container in containers(spec):
            if component != "agent":  # Pod Security "restricted": non-root, no host namespaces or paths
                assert not runs_as_root(spec, container), f"{workload.name}/{container['name']}"
                assert spec["securityContext"]["runAsNonRoot"] is True
                assert not any("hostPath" in v for v in spec.get("volumes", []))
                assert not (spec.get("hostPID") or spec.get("hostNetwork") or spec.get("hostIPC"))


def test_the_agent_is_root_only_for_the_host_socket_directory() -> None:
    """By default uid 0 without a single capability (the kubelet makes the hostPath directory root-owned);
    with the directory prepared for uid 65532 on the node, nothing in the release is root."""
    defaults = agent_spec("defaults")
    assert defaults["securityContext"]["runAsUser"] == 0
    assert "pod-resources" not in {v["name"] for v in defaults["volumes"]}
    assert defaults["automountServiceAccountToken"] is False
    minimal = agent_spec("agent-only")
    assert (
        minimal["securityContext"]["runAsNonRoot"] is True
        and minimal["securityContext"]["runAsUser"] == 65532
    )


@pytest.mark.parametrize("values_set", ALL_SETS)
def test_secrets_come_only_from_secret_references(values_set: str) -> None:
    manifests = rendered(values_set)
    assert of_kind(manifests, "Secret") == []
    for workload in workloads(manifests):
        for container in containers(pod_spec(workload)):
            for env in container.get("env", []):
                if any(word in env["name"] for word in ("PASSWORD", "TOKEN", "AUTH", "SECRET")):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], env


def test_secret_references_land_where_the_components_read_them() -> None:
    manifests = rendered("all-features")

    def env_of(kind: str, component: str) -> dict[str, Any]:
        (container,) = pod_spec(one(manifests, kind, component))["containers"]
        return {e["name"]: e for e in container["env"]}

    report = env_of("CronJob", "weekly-report")
    assert report["GPULENS_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "gpulens-smtp",
        "key": "password",
    }
    assert report["GPULENS_SMTP_HOST"]["value"] == "email-smtp.us-east-1.amazonaws.com"
    assert report["GPULENS_SMTP_PORT"]["value"] == "587"
    assert report["GPULENS_SMTP_TO"]["value"] == "finance@corp.example,ml-platform@corp.example"
    assert env_of("Deployment", "explorer")["GPULENS_EXPLORER_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == (
        "gpulens-explorer-auth"
    )
    assert env_of("Deployment", "remediation")["GPULENS_REMEDIATE_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "gpulens-remediate",
        "key": "token",
    }


def service_account(m: Manifest) -> str:
    return str(pod_spec(m)["serviceAccountName"])


def test_one_service_account_per_component_with_irsa_roles() -> None:
    manifests = rendered("all-features")
    accounts = {m.name: m.doc for m in of_kind(manifests, "ServiceAccount")}
    assert set(accounts) == {
        f"gl-gpulens-{c}" for c in ("agent", "explorer", "ingest", "report", "dashboards", "remediation")
    }
    uses = {
        m.doc["metadata"]["labels"]["app.kubernetes.io/component"]: service_account(m)
        for m in workloads(manifests)
    }
    assert uses == {
        "agent": "gl-gpulens-agent",
        "explorer": "gl-gpulens-explorer",
        "ingest-cur": "gl-gpulens-ingest",
        "ingest-usage": "gl-gpulens-ingest",
        "weekly-report": "gl-gpulens-report",
        "remediation": "gl-gpulens-remediation",
        "dashboards": "gl-gpulens-dashboards",
    }
    role = "eks.amazonaws.com/role-arn"
    assert (
        accounts["gl-gpulens-ingest"]["metadata"]["annotations"][role]
        == "arn:aws:iam::123456789012:role/gpulens-cur-read"
    )
    assert accounts["gl-gpulens-report"]["metadata"]["annotations"][role] == (
        "arn:aws:iam::123456789012:role/gpulens-report-write"
    )
    assert "annotations" not in accounts["gl-gpulens-agent"]["metadata"]


def test_only_components_that_call_the_api_server_get_a_token_and_a_role() -> None:
    manifests = rendered("all-features")
    tokens = {m.name: pod_spec(m)["automountServiceAccountToken"] for m in workloads(manifests)}
    assert {n for n, mounted in tokens.items() if mounted} == {"gl-gpulens-agent", "gl-gpulens-remediation"}
    agent_role = next(m.doc for m in of_kind(manifests, "ClusterRole") if m.name == "gl-gpulens-agent")
    assert agent_role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    ]
    receiver_role = next(
        m.doc for m in of_kind(manifests, "ClusterRole") if m.name == "gl-gpulens-remediation"
    )
    assert {r["resources"][0]: r["verbs"] for r in receiver_role["rules"]} == {
        "nodes": ["get", "patch"],
        "pods": ["list"],
        "pods/eviction": ["create"],
    }
    # A dry-run receiver gets neither a token nor a role; a default agent reads only its own Node, and
    # only from the init container.
    dry_run = render_with({"remediation": {"enabled": True}})
    assert [m.doc["rules"] for m in of_kind(dry_run, "ClusterRole")] == [
        [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    ]
    assert not any(pod_spec(m)["automountServiceAccountToken"] for m in workloads(dry_run))


def test_only_the_node_identity_init_container_holds_an_api_token() -> None:
    spec = agent_spec("defaults")
    token_path = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert spec["automountServiceAccountToken"] is False
    (init,) = spec["initContainers"]
    assert {m["mountPath"]: m["name"] for m in init["volumeMounts"]}[token_path] == "api-token"
    assert init["securityContext"]["runAsUser"] == 65532 and init["securityContext"]["runAsNonRoot"] is True
    (agent,) = spec["containers"]
    assert token_path not in {m["mountPath"] for m in agent["volumeMounts"]}
    token = next(v for v in spec["volumes"] if v["name"] == "api-token")["projected"]["sources"][0]
    assert token == {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}}


def test_cron_jobs_are_scheduled_once_at_a_time_with_history_limits() -> None:
    jobs = {
        m.doc["metadata"]["labels"]["app.kubernetes.io/component"]: m.doc["spec"]
        for m in of_kind(rendered("all-features"), "CronJob")
    }
    assert set(jobs) == {"ingest-cur", "ingest-usage", "weekly-report"}
    for spec in jobs.values():
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
        assert spec["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    minute, hour, _, _, weekday = jobs["ingest-cur"]["schedule"].split()
    assert hour.isdigit() and weekday == "*"  # daily
    assert jobs["ingest-usage"]["schedule"].split()[1:] == ["*", "*", "*", "*"]  # hourly
    assert jobs["weekly-report"]["schedule"].split()[4] == "1"  # Monday


def test_prometheus_wiring_follows_values_not_capabilities() -> None:
    defaults = rendered("defaults")
    assert of_kind(defaults, "ServiceMonitor") == [] and of_kind(defaults, "PrometheusRule") == []
    annotations = pod_spec_annotations(one(defaults, "DaemonSet", "agent"))
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "9400"
    full = rendered("all-features")
    monitor = one(full, "ServiceMonitor", "agent").doc
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = one(full, "Service", "agent").doc
    assert service["spec"]["clusterIP"] == "None"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    # With a ServiceMonitor, annotations would make an annotation-discovering Prometheus scrape twice.
    assert "prometheus.io/scrape" not in pod_spec_annotations(one(full, "DaemonSet", "agent"))


def pod_spec_annotations(m: Manifest) -> dict[str, str]:
    return dict(m.doc["spec"]["template"]["metadata"].get("annotations") or {})


def test_network_policies_admit_only_prometheus_to_the_agent() -> None:
    manifests = rendered("all-features")
    policy = one(manifests, "NetworkPolicy", "agent").doc["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": 9400, "protocol": "TCP"}]
    assert rule["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert of_kind(rendered("defaults"), "NetworkPolicy") == []


def test_the_warehouse_volume_follows_the_mode() -> None:
    pvc_mode = rendered("all-features")
    claim = one(pvc_mode, "PersistentVolumeClaim", "warehouse")
    assert claim.doc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim.doc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    s3_mode = rendered("s3-warehouse")
    assert of_kind(s3_mode, "PersistentVolumeClaim") == []
    explorer = pod_spec(one(s3_mode, "Deployment", "explorer"))
    (fetch,) = explorer["initContainers"]
    assert fetch["command"][-2:] == [
        "s3://corp-gpulens/warehouse/gpulens.duckdb",
        "/var/lib/gpulens/gpulens.duckdb",
    ]
    cur = pod_spec(one(s3_mode, "CronJob", "ingest-cur"))
    assert cur["initContainers"][0]["command"][-1] == "--missing-ok"
    assert "warehouse_sync.py publish" in cur["containers"][0]["args"][0]
    report = pod_spec(one(s3_mode, "CronJob", "weekly-report"))
    assert "publish" not in report["containers"][0]["args"][0]  # the report only reads


# -- issue 15: an executing receiver needs a token, and only Alertmanager's side may reach it ----------


def test_an_executing_receiver_without_a_token_secret_does_not_render() -> None:
    import helm_python as helm

    with pytest.raises(
        helm.HelmRenderError, match="remediation.execute: true needs remediation.tokenSecret.name"
    ):
        render_with({"remediation": {"enabled": True, "execute": True}})
    executing = render_with(
        {"remediation": {"enabled": True, "execute": True, "tokenSecret": {"name": "gpulens-remediate"}}}
    )
    assert one(executing, "Deployment", "remediation")


def test_the_receiver_gets_its_network_policy_by_default() -> None:
    # networkPolicy.enabled is false by default; the receiver's own policy is on with the receiver.
    manifests = render_with({"remediation": {"enabled": True}})
    (policy,) = [m.doc for m in of_kind(manifests, "NetworkPolicy")]
    assert policy["metadata"]["name"] == "gl-gpulens-remediation"
    assert policy["spec"]["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"port": 9095, "protocol": "TCP"}],
        }
    ]
    assert (
        of_kind(render_with({"remediation": {"enabled": True, "networkPolicy": False}}), "NetworkPolicy")
        == []
    )
    assert of_kind(rendered("defaults"), "NetworkPolicy") == []  # no receiver, no policy
