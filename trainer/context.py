"""Who is reporting: rank, local rank, world size, pid and node of this training process.

From `torch.distributed` when a process group is up, else the launcher's `RANK`, `LOCAL_RANK` and
`WORLD_SIZE` (torchrun, Slurm wrappers, DeepSpeed), else a single process; and which attempt (start
or restart) of the job this process is (`restart_attempt`). The environment comes in as a mapping so
tests pass literal values; `None` means this process's environment.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessContext:
    rank: int
    local_rank: int
    world_size: int
    pid: int
    node: str
    train_log: str | None = (
        None  # $GPULENS_TRAIN_LOG: a JSONL file every StepMonitor of the process appends to
    )
    attempt: int = 1  # which (re)start of the job this process belongs to, from 1 (restart_attempt)
    gpu_uuid: str | None = None  # the GPU-/MIG- UUID of the local_rank-th visible device, when known


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(env.get(key, default))
    except ValueError:
        return default


def restart_attempt(env: Mapping[str, str]) -> int:
    """Which attempt of the job this process is, counting from 1, from the launchers' restart counters.

    `$GPULENS_ATTEMPT` (1-based) when set, for launchers that count restarts some other way; else
    1 + torchrun's `TORCHELASTIC_RESTART_COUNT` (worker-group restarts in this launch; also set by
    SageMaker HyperPod's `hyperpodrun`, an extension of torch's elastic agent) + the outer scheduler's
    restarts (`SLURM_RESTART_COUNT`, a requeued Slurm job; `JOBSET_RESTART_ATTEMPT`, a Kubernetes
    JobSet's `jobset.sigs.k8s.io/restart-attempt` annotation through the downward API) times
    (`TORCHELASTIC_MAX_RESTARTS` + 1): a relaunch resets torchrun's counter, so the outer restarts are
    weighted by how many inner ones a launch may have, and the attempt still grows with every restart.
    """
    explicit = _int(env, "GPULENS_ATTEMPT", 0)
    if explicit >= 1:
        return explicit
    inner = max(_int(env, "TORCHELASTIC_RESTART_COUNT", 0), 0)
    outer = max(_int(env, "SLURM_RESTART_COUNT", 0), 0) + max(_int(env, "JOBSET_RESTART_ATTEMPT", 0), 0)
    per_launch = (
        max(_int(env, "TORCHELASTIC_MAX_RESTARTS", 0), 0) + 1 if "TORCHELASTIC_RESTART_COUNT" in env else 1
    )
    return 1 + inner + outer * per_launch


def visible_gpu_uuid(env: Mapping[str, str], device: int) -> str | None:
    """The UUID (`GPU-...`, or `MIG-...` for a MIG instance) of CUDA device `device` of this process.

    From `CUDA_VISIBLE_DEVICES` when it lists UUIDs, else through the NVIDIA container runtime's
    `NVIDIA_VISIBLE_DEVICES` (the kubelet's device plugin sets it to the UUIDs it allocated); None
    when neither names UUIDs. The agent maps the record to that exact device (a container's device 0
    is not the host's GPU 0), and it is how a MIG instance is named at all.
    """
    cuda = [d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    nvidia = [d.strip() for d in env.get("NVIDIA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    entry = cuda[device] if 0 <= device < len(cuda) else (str(device) if not cuda else "")
    if entry.startswith(("GPU-", "MIG-")):
        return entry
    if entry.isdigit() and int(entry) < len(nvidia) and nvidia[int(entry)].startswith(("GPU-", "MIG-")):
        return nvidia[int(entry)]
    return None


def detect(env: Mapping[str, str] | None = None) -> ProcessContext:
    """This process's place in the job; never imports torch (it only asks one that is already loaded)."""
    env = os.environ if env is None else env
    rank, world = _int(env, "RANK", 0), _int(env, "WORLD_SIZE", 1)
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None) if torch is not None else None
    if dist is not None and dist.is_available() and dist.is_initialized():
        rank, world = int(dist.get_rank()), int(dist.get_world_size())
    return ProcessContext(
        rank=rank,
        local_rank=_int(env, "LOCAL_RANK", 0),
        world_size=world,
        pid=os.getpid(),
        node=socket.gethostname(),
        train_log=env.get("GPULENS_TRAIN_LOG") or None,
        attempt=restart_attempt(env),
        gpu_uuid=visible_gpu_uuid(env, _int(env, "LOCAL_RANK", 0)),
    )
