"""`k8s-cordon` and `k8s-drain`: take a Kubernetes node out of service with the official Python client.

Cordon = `spec.unschedulable: true` plus a `NoSchedule` taint that names the fault (so the reason is
on the node, not only in our log). Drain = cordon, then evict every pod on the node through the
Eviction API, which honours PodDisruptionBudgets: a 429 answer means a budget blocks that pod now,
and it is retried until the attempt's timeout, never deleted around the budget. DaemonSet and mirror
(static) pods are left alone, as `kubectl drain --ignore-daemonsets` does.

`kubernetes` is imported lazily: it is an optional dependency (`gpulens[remediation]`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from gpulens.remediation.actions.base import ActionFailed, node_of
from gpulens.remediation.model import Alert

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
PDB_RETRY_SECONDS = 1.0  # how often a PDB-blocked eviction is retried within one attempt


@dataclass(frozen=True)
class Cluster:
    """Where the API server is: an explicit `api_url`, a kubeconfig file, or in-cluster, else
    ~/.kube/config."""

    api_url: str | None = None
    kubeconfig: str | None = None
    context: str | None = None

    def core_api(self) -> Any:
        try:
            from kubernetes import client, config
        except ImportError as exc:
            raise ActionFailed(
                "the kubernetes client is not installed (pip install 'gpulens[remediation]')"
            ) from exc
        configuration = client.Configuration()
        try:
            if self.api_url:
                configuration.host = self.api_url
            elif self.kubeconfig:
                config.load_kube_config(self.kubeconfig, self.context, client_configuration=configuration)
            else:
                try:
                    config.load_incluster_config(client_configuration=configuration)
                except config.ConfigException:
                    config.load_kube_config(context=self.context, client_configuration=configuration)
        except (config.ConfigException, OSError) as exc:
            raise ActionFailed(f"no Kubernetes configuration: {exc}") from exc
        return client.CoreV1Api(client.ApiClient(configuration))


def _api_errors() -> tuple[type[BaseException], ...]:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    return (ApiException, HTTPError)


def cordon(api: Any, node: str, taint_key: str, reason: str, timeout: float) -> None:
    """Mark `node` unschedulable and add the `taint_key=reason:NoSchedule` taint (once)."""
    current = api.read_node(node, _request_timeout=timeout)
    # sanitize_for_serialization gives the API's camelCase JSON (timeAdded), which a patch needs.
    serialize = api.api_client.sanitize_for_serialization
    taints = [serialize(t) for t in (current.spec.taints or []) if t.key != taint_key]
    taints.append({"key": taint_key, "value": reason, "effect": "NoSchedule"})
    patch = {"spec": {"unschedulable": True, "taints": taints}}
    api.patch_node(
        node, patch, _content_type="application/strategic-merge-patch+json", _request_timeout=timeout
    )


def evictable_pods(api: Any, node: str, timeout: float) -> list[Any]:
    """Pods on `node` a drain must evict: not DaemonSet-owned, not mirror pods, not already finished."""
    pods = api.list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName={node}", _request_timeout=timeout
    ).items
    return [pod for pod in pods if _evictable(pod)]


def _evictable(pod: Any) -> bool:
    meta = pod.metadata
    if MIRROR_ANNOTATION in (meta.annotations or {}):
        return False
    if any(ref.kind == "DaemonSet" for ref in meta.owner_references or []):
        return False
    return (pod.status.phase if pod.status else None) not in ("Succeeded", "Failed")


def evict(api: Any, pod: Any, grace_seconds: int | None, deadline: float, timeout: float) -> None:
    """Evict one pod; while a PodDisruptionBudget blocks it (HTTP 429), wait and ask again until
    `deadline`."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    meta = pod.metadata
    body = client.V1Eviction(
        metadata=client.V1ObjectMeta(name=meta.name, namespace=meta.namespace),
        delete_options=client.V1DeleteOptions(grace_period_seconds=grace_seconds),
    )
    while True:
        try:
            api.create_namespaced_pod_eviction(meta.name, meta.namespace, body, _request_timeout=timeout)
            return
        except ApiException as exc:
            if exc.status == 404:  # gone already: that is what we wanted
                return
            if exc.status != 429:
                raise
            if time.monotonic() + PDB_RETRY_SECONDS > deadline:
                raise ActionFailed(
                    f"eviction of {meta.namespace}/{meta.name} is blocked by a PodDisruptionBudget"
                ) from None
            time.sleep(PDB_RETRY_SECONDS)


@dataclass(frozen=True)
class CordonAction:
    taint_key: str = "gpulens.io/gpu-fault"
    node_label: str = "node"
    api_url: str | None = None
    kubeconfig: str | None = None
    context: str | None = None

    kind: ClassVar[str] = "k8s-cordon"
    destructive: ClassVar[bool] = True
    drains: ClassVar[bool] = True  # an unschedulable node is out of service for new work

    def cluster(self) -> Cluster:
        return Cluster(self.api_url, self.kubeconfig, self.context)

    def check(self, alert: Alert) -> None:
        node_of(alert, self.node_label)

    def run(self, alert: Alert, timeout: float) -> None:
        node = node_of(alert, self.node_label)
        api = self.cluster().core_api()
        try:
            cordon(api, node, self.taint_key, _taint_value(alert), timeout)
        except _api_errors() as exc:
            raise ActionFailed(f"cordon of {node} failed: {_why(exc)}") from None


@dataclass(frozen=True)
class DrainAction(CordonAction):
    """Cordon, then evict; the cordon's parameters plus the pods' grace period."""

    grace_period_seconds: int | None = None  # None: each pod's own terminationGracePeriodSeconds

    kind: ClassVar[str] = "k8s-drain"

    def run(self, alert: Alert, timeout: float) -> None:
        node = node_of(alert, self.node_label)
        deadline = time.monotonic() + timeout
        api = self.cluster().core_api()
        try:
            cordon(api, node, self.taint_key, _taint_value(alert), timeout)
            for pod in evictable_pods(api, node, timeout):
                evict(api, pod, self.grace_period_seconds, deadline, timeout)
        except _api_errors() as exc:
            raise ActionFailed(f"drain of {node} failed: {_why(exc)}") from None


def _taint_value(alert: Alert) -> str:
    """A taint value (<= 63 chars of [A-Za-z0-9._-]) naming the fault, e.g. ``xid-79`` or ``GpuLost``."""
    xid = alert.labels.get("xid")
    value = f"xid-{xid}" if xid else alert.name or "fault"
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in value)[:63]


def _why(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or exc.__class__.__name__
    return f"HTTP {status} {reason}" if status else str(reason)
