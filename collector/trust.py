"""Who may speak for a GPU: trainer datagrams are tied to their sender before they map anything.

The trainer socket sets SO_PASSCRED, so the kernel attaches the sender's credentials (pid, uid, gid,
as the agent's namespaces see them: a pid the agent cannot see is 0) to every datagram; a sender
cannot forge them. `Trust` decides, per datagram, which device the record may map:

- `pid`: the sender must be one of the device's compute processes (NVML's process list), or share
  a job scope with one: the same Kubernetes pod (`.../pod<uid>/...`) or Slurm job (`.../job_<id>/...`)
  in its cgroup path, which the sender cannot change. A record naming no device needs a sender tied
  to some device of this node. Needs host pids (bare metal, Slurm, Kubernetes with hostPID).
- `uid`: a sender running as the agent's own uid may speak for any device (the sim backend; a
  single-tenant container such as a SageMaker training job); any other uid is rejected.
- `off`: nothing can be checked here (no process list, no pid visibility): records are believed as
  sent, and `gpulens_agent_info{trust="off"}` and the log say so.

A record that fails maps nothing and is counted `rejected` (docs/agent.md, trust).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

from gpulens.collector.backends.base import GpuIdentity, GpuReading

MODES = ("auto", "pid", "uid", "off")
_CRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
# The part of a cgroup path that names a pod or a Slurm job (cgroup v1 and v2, systemd and cgroupfs).
_SCOPE = re.compile(r"^(.*?(?:pod[0-9a-fA-F]{8}[-_][0-9a-fA-F_-]{27}|/job_\d+)(?:\.slice)?)(?:/|$)")
_CACHE_LIMIT = 65_536


class Sender(NamedTuple):
    pid: int
    uid: int
    gid: int


def decode_cred(raw: bytes) -> Sender | None:
    """SCM_CREDENTIALS data -> (pid, uid, gid), or None when there is none."""
    if len(raw) < _CRED.size:
        return None
    return Sender(*_CRED.unpack_from(raw))


def job_scope(cgroup: str) -> str | None:
    """The pod or Slurm job a process runs in, from its /proc/<pid>/cgroup text; None outside both."""
    for line in cgroup.splitlines():
        path = line.split(":", 2)[-1]
        m = _SCOPE.match(path)
        if m:
            return m.group(1)
    return None


def no_scope(pid: int) -> str | None:
    return None


class Trust:
    """The verdicts for one agent; also a mapper (`annotate`) that learns each device's processes.

    The sampler thread publishes new process sets by replacing whole dicts; the socket thread reads
    them without a lock and caches verdicts per (credentials, claim) until the sets change.
    """

    def __init__(
        self,
        mode: str,
        devices: Sequence[GpuIdentity],
        agent_uid: int,
        scope: Callable[[int], str | None] = no_scope,
    ) -> None:
        if mode not in ("pid", "uid", "off"):
            raise ValueError(f"unresolved trust mode {mode!r}")
        self.mode = mode
        self.agent_uid = agent_uid
        self._scope = scope
        self._uuids = {d.uuid for d in devices}
        parents: dict[int, int] = {}
        for d in devices:
            parents[d.index] = parents.get(d.index, 0) + 1
        # A bare index names a device only where one device has it (a MIG GPU's instances share it).
        self._by_index = {d.index: d.uuid for d in devices if parents[d.index] == 1}
        self._pids: dict[str, frozenset[int]] = {}
        self._scopes: dict[str, frozenset[str]] = {}
        self._cache: dict[tuple[bytes | None, object, object], str | None] = {}

    # -- the sampler side ----------------------------------------------------------------------
    def annotate(self, readings: Sequence[GpuReading]) -> list[GpuReading]:
        if self.mode == "pid":
            pids = {r.identity.uuid: frozenset(r.pids) for r in readings}
            if pids != self._pids:
                self._scopes = {
                    uuid: frozenset(s for s in map(self._scope, ps) if s is not None)
                    for uuid, ps in pids.items()
                }
                self._pids = pids
                self._cache = {}
        return list(readings)

    # -- the socket side -----------------------------------------------------------------------
    def claim(self, gpu: object, gpu_uuid: object) -> str:
        """The device a record names: its `gpu_uuid` if known, else its `gpu` index; "" for none."""
        if type(gpu_uuid) is str and gpu_uuid in self._uuids:
            return gpu_uuid
        if type(gpu) is int:
            return self._by_index.get(gpu, "")
        return ""

    def pid(self, cred: bytes | None) -> int:
        sender = decode_cred(cred) if cred is not None else None
        return sender.pid if sender is not None else 0

    def device(self, cred: bytes | None, gpu: object, gpu_uuid: object) -> str | None:
        """The UUID the record maps ("" for none), or None when its sender may not speak for it."""
        if type(gpu_uuid) is not str:
            gpu_uuid = None
        cache = self._cache
        key = (cred, gpu, gpu_uuid)
        try:
            return cache[key]
        except KeyError:
            pass
        verdict = self._decide(cred, self.claim(gpu, gpu_uuid))
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = verdict
        return verdict

    def _decide(self, cred: bytes | None, named: str) -> str | None:
        if cred is None or self.mode == "off":  # in-process callers; or nothing to check against
            return named
        sender = decode_cred(cred)
        if sender is None:
            return None
        if self.mode == "uid":
            return named if sender.uid == self.agent_uid else None
        if sender.pid <= 0:  # in a pid namespace the agent cannot see: nothing ties it to a GPU
            return None
        if named:
            return named if self._tied(sender.pid, named) else None
        return "" if any(self._tied(sender.pid, uuid) for uuid in self._pids) else None

    def _tied(self, pid: int, uuid: str) -> bool:
        if pid in self._pids.get(uuid, ()):
            return True
        scopes = self._scopes.get(uuid)
        if not scopes:
            return False
        scope = self._scope(pid)
        return scope is not None and scope in scopes
