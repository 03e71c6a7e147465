"""GPU -> Kubernetes pod, as NVIDIA's dcgm-exporter does: a process's cgroup names its pod.

`/proc/<pid>/cgroup` of a container process contains the pod UID (cgroupfs:
`/kubepods/burstable/pod<uid>/<container>`; systemd: `kubepods-burstable-pod<uid with _>.slice`).
The pod UID is resolved to (job_id, team) by `pods`, a callable over the kubelet's
pod-resources socket (`/var/lib/kubelet/pod-resources/kubelet.sock`) or any other lookup the
agent is given; a pod the lookup does not know leaves the GPU unmapped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from gpulens.collector.backends.base import GpuReading
from gpulens.collector.mapping.proc import ProcReader

POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")


def pod_uid(cgroup_text: str) -> str | None:
    """The pod UID named in a /proc/<pid>/cgroup file, with dashes, or None."""
    match = POD_UID.search(cgroup_text)
    return match.group(1).replace("_", "-") if match else None


class KubeletMapper:
    """Maps a GPU to the job/team of the pod whose container runs on it."""

    def __init__(self, reader: ProcReader, pods: Callable[[], Mapping[str, tuple[str, str]]]) -> None:
        self.reader = reader
        self.pods = pods

    def annotate(self, readings: Sequence[GpuReading]) -> list[GpuReading]:
        if not any(r.pids for r in readings):
            return list(readings)
        known = self.pods()
        out = []
        for r in readings:
            uids = (pod_uid(self.reader.cgroup(pid) or "") for pid in r.pids)
            job = next((known[u] for u in uids if u and u in known), None)
            out.append(replace(r, job_id=job[0], team=job[1]) if job else r)
        return out
