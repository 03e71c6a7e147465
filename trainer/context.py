"""Who is reporting: rank, local rank, world size, pid and node of this training process.

From `torch.distributed` when a process group is up, else the launcher's `RANK`, `LOCAL_RANK` and
`WORLD_SIZE` (torchrun, Slurm wrappers, DeepSpeed), else a single process. The environment comes in
as a mapping so tests pass literal values; `None` means this process's environment.
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


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(env.get(key, default))
    except ValueError:
        return default


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
    )
