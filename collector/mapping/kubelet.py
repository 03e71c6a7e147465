"""GPU -> Kubernetes pod through the kubelet's pod-resources API, as NVIDIA's dcgm-exporter does.

The kubelet serves `v1.PodResourcesLister/List` (gRPC) on the Unix socket
`/var/lib/kubelet/pod-resources/kubelet.sock`: for every pod and container, the device ids the device
plugin allocated to it. NVIDIA's device plugin names GPUs by UUID (`GPU-...`, the default
DEVICE_ID_STRATEGY) or by index, so each GPU maps to the pod holding it: `job_id` = the pod's name,
`team` = its namespace. The response is decoded here by hand (three nested messages, see
k8s.io/kubelet/pkg/apis/podresources/v1/api.proto), so only `grpcio` is needed, not protobuf stubs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from gpulens.collector.backends.base import GpuReading
from gpulens.errors import GpulensError

log = logging.getLogger(__name__)

KUBELET_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
LIST_METHOD = "/v1.PodResourcesLister/List"
GPU_RESOURCES = ("nvidia.com/gpu",)  # MIG slices (nvidia.com/mig-*) are matched by prefix below


@dataclass(frozen=True)
class PodDevice:
    """One device allocated to one container of one pod."""

    namespace: str
    pod: str
    container: str
    resource: str
    device_id: str


def _fields(data: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of one protobuf message; varints as int, the rest as bytes."""
    i, n = 0, len(data)

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            if i >= n:
                raise ValueError("truncated varint")
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < n:
        tag = varint()
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            yield number, wire, varint()
        elif wire == 2:
            size = varint()
            if i + size > n:
                raise ValueError("truncated field")
            yield number, wire, data[i : i + size]
            i += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, wire, data[i : i + size]
            i += size
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _strings(data: bytes) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    for number, wire, value in _fields(data):
        if wire == 2 and isinstance(value, bytes):
            out.setdefault(number, []).append(value)
    return out


def decode_list_response(data: bytes) -> list[PodDevice]:
    """Every (pod, container, device) of a ListPodResourcesResponse."""
    devices = []
    for pod_raw in _strings(data).get(1, []):  # repeated PodResources pod_resources = 1
        pod = _strings(pod_raw)
        name = pod.get(1, [b""])[0].decode()
        namespace = pod.get(2, [b""])[0].decode()
        for container_raw in pod.get(3, []):  # repeated ContainerResources containers = 3
            container = _strings(container_raw)
            cname = container.get(1, [b""])[0].decode()
            for dev_raw in container.get(2, []):  # repeated ContainerDevices devices = 2
                dev = _strings(dev_raw)
                resource = dev.get(1, [b""])[0].decode()
                for device_id in dev.get(2, []):  # repeated string device_ids = 2
                    devices.append(PodDevice(namespace, name, cname, resource, device_id.decode()))
    return devices


class PodResourcesClient:
    """Calls List on the kubelet's pod-resources socket (grpcio, import-guarded)."""

    def __init__(self, socket: Path = KUBELET_SOCKET, timeout: float = 2.0) -> None:
        try:
            import grpc
        except ImportError:
            raise GpulensError(
                "grpcio is not installed: pod-resources mapping is off (pip install 'gpulens[kubelet]')"
            ) from None
        self._channel = grpc.insecure_channel(f"unix://{socket}")
        self._call = self._channel.unary_unary(
            LIST_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        self._timeout = timeout

    def list(self) -> bytes:
        return bytes(self._call(b"", timeout=self._timeout))

    def close(self) -> None:
        self._channel.close()


def is_gpu(resource: str) -> bool:
    return resource in GPU_RESOURCES or resource.startswith("nvidia.com/mig-")


class KubeletMapper:
    """Maps a GPU (by UUID or index) to the pod the kubelet allocated it to; refreshed every `every` s."""

    def __init__(
        self, list_pods: Callable[[], bytes], every: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._list = list_pods
        self._every = every
        self._clock = clock
        self._at = -float("inf")
        self._by_device: dict[str, tuple[str, str]] = {}
        self._failed = False

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._at < self._every:
            return
        self._at = now
        try:
            devices = decode_list_response(self._list())
        except Exception as exc:  # noqa: BLE001 - grpc raises its own types; a failed lookup keeps the last map
            if not self._failed:
                log.warning("kubelet pod-resources List failed: %s (GPU -> pod mapping kept as it was)", exc)
            self._failed = True
            return
        self._failed = False
        self._by_device = {d.device_id: (d.pod, d.namespace) for d in devices if is_gpu(d.resource)}

    def annotate(self, readings: Sequence[GpuReading]) -> list[GpuReading]:
        self._refresh()
        out = []
        for r in readings:
            d = r.identity  # a MIG instance is named by its MIG-... UUID only
            job = self._by_device.get(d.uuid) or (None if d.mig else self._by_device.get(str(d.index)))
            out.append(replace(r, job_id=job[0], team=job[1]) if job else r)
        return out
