"""GPU -> pod through a real gRPC server speaking the kubelet's pod-resources List on a Unix socket."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import pytest

from gpulens.collector.backends.base import GpuIdentity, GpuReading
from gpulens.collector.mapping.kubelet import KubeletMapper, PodResourcesClient, decode_list_response

grpc = pytest.importorskip("grpc")


def _len(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, encoded independently of the decoder under test."""
    size, out = len(payload), b""
    while True:
        byte = size & 0x7F
        size >>= 7
        out += bytes([byte | (0x80 if size else 0)])
        if not size:
            break
    return bytes([(field << 3) | 2]) + out + payload


def _pod(name: str, namespace: str, *containers: bytes) -> bytes:
    return _len(
        1, _len(1, name.encode()) + _len(2, namespace.encode()) + b"".join(_len(3, c) for c in containers)
    )


def _container(name: str, resource: str, *ids: str, cpu_ids: bytes = b"") -> bytes:
    return (
        _len(1, name.encode())
        + _len(2, _len(1, resource.encode()) + b"".join(_len(2, i.encode()) for i in ids))
        + cpu_ids
    )


# Ledger: llama-ft (ns nlp) holds GPU-aaa and GPU-bbb; embed (ns search) holds GPU index "3";
# a CPU-only pod and a NIC device must not map anything.
RESPONSE = (
    _pod(
        "llama-ft-0",
        "nlp",
        _container("trainer", "nvidia.com/gpu", "GPU-aaa", "GPU-bbb", cpu_ids=b"\x18\x05\x18\x06"),
    )
    + _pod(
        "embed-7",
        "search",
        _container("main", "nvidia.com/gpu", "3"),
        _container("side", "rdma/hca", "GPU-ccc"),
    )
    + _pod("web", "default", _container("nginx", "cpu"))
)


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[Path]:
    sock = tmp_path / "kubelet.sock"
    calls = []

    def list_pods(request: bytes, context: object) -> bytes:
        calls.append(request)
        return RESPONSE

    handler = grpc.method_handlers_generic_handler(
        "v1.PodResourcesLister",
        {
            "List": grpc.unary_unary_rpc_method_handler(
                list_pods, request_deserializer=lambda b: b, response_serializer=lambda b: b
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    try:
        yield sock
    finally:
        server.stop(grace=None)


def test_decode_list_response() -> None:
    devices = decode_list_response(RESPONSE)
    assert [(d.namespace, d.pod, d.container, d.resource, d.device_id) for d in devices] == [
        ("nlp", "llama-ft-0", "trainer", "nvidia.com/gpu", "GPU-aaa"),
        ("nlp", "llama-ft-0", "trainer", "nvidia.com/gpu", "GPU-bbb"),
        ("search", "embed-7", "main", "nvidia.com/gpu", "3"),
        ("search", "embed-7", "side", "rdma/hca", "GPU-ccc"),
    ]
    with pytest.raises(ValueError):
        decode_list_response(b"\x0a\x05ab")


def test_gpus_map_to_pods_through_the_socket(kubelet: Path) -> None:
    client = PodResourcesClient(kubelet)
    now = [0.0]
    mapper = KubeletMapper(client.list, every=10.0, clock=lambda: now[0])
    readings = [
        GpuReading(GpuIdentity(i, uuid, "NVIDIA H100 80GB HBM3"))
        for i, uuid in enumerate(["GPU-aaa", "GPU-bbb", "GPU-ccc", "GPU-ddd"])
    ]
    out = mapper.annotate(readings)
    assert [(r.job_id, r.team) for r in out] == [
        ("llama-ft-0", "nlp"),
        ("llama-ft-0", "nlp"),
        (None, None),
        ("embed-7", "search"),
    ]  # index 3 by the index strategy
    client.close()


def test_a_kubelet_that_stops_answering_keeps_the_last_map(tmp_path: Path) -> None:
    answers = [RESPONSE]

    def flaky() -> bytes:
        if not answers:
            raise OSError("connection refused")
        return answers.pop()

    now = [0.0]
    mapper = KubeletMapper(flaky, every=10.0, clock=lambda: now[0])
    reading = [GpuReading(GpuIdentity(0, "GPU-aaa", "m"))]
    assert mapper.annotate(reading)[0].job_id == "llama-ft-0"
    now[0] = 20.0
    assert mapper.annotate(reading)[0].job_id == "llama-ft-0"


def test_mig_instances_map_by_their_mig_uuid_only() -> None:
    """MIG: the device plugin's mixed strategy allocates `nvidia.com/mig-3g.40gb` by MIG UUID; an
    instance is never matched by its parent's bare index (the pod holding index "0" is not its pod)."""
    response = _pod("mig-job", "inference", _container("main", "nvidia.com/mig-3g.40gb", "MIG-aaa")) + _pod(
        "whole-gpu", "nlp", _container("main", "nvidia.com/gpu", "0")
    )
    mapper = KubeletMapper(lambda: response)
    devices = [
        GpuIdentity(0, "MIG-aaa", "NVIDIA A100-SXM4-80GB", "3g.40gb/1", 3 / 7),
        GpuIdentity(0, "MIG-bbb", "NVIDIA A100-SXM4-80GB", "4g.40gb/2", 4 / 7),
    ]
    out = mapper.annotate([GpuReading(d) for d in devices])
    assert [(r.job_id, r.team) for r in out] == [("mig-job", "inference"), (None, None)]
