"""The reference trainer's checkpoints: real `torch.save` files of the model, the optimizer and the data
stream, one per saved step, in a directory; and the directory's count of attempts.

`step-00000100.pt` holds the state after 100 steps (steps 0..99): a resume runs step 100 next. A file is
written beside its final name and renamed into place, so a crash while saving leaves the last complete
checkpoint as the latest. Only the newest `KEEP` are kept.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEEP = 2
NAME = re.compile(r"^step-(\d{8})\.pt$")
ATTEMPTS = "attempts.json"


@dataclass(frozen=True)
class Restored:
    step: int  # the next step to run
    lr: float
    path: Path


def path_for(directory: Path, step: int) -> Path:
    return directory / f"step-{step:08d}.pt"


def latest(directory: Path) -> Path | None:
    """The checkpoint with the highest step in `directory`, or None."""
    if not directory.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := NAME.match(p.name)))
    return found[-1][1] if found else None


def save(directory: Path, step: int, work: Any) -> Path:
    """Write the state after `step` steps of `work` (a reference Workload); returns the file."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    final = path_for(directory, step)
    partial = final.with_suffix(".pt.partial")
    state = {
        "step": step,
        "lr": work.optimizer.param_groups[0]["lr"],
        "model": work.model.state_dict(),
        "optimizer": work.optimizer.state_dict(),
        "generator": work.generator.get_state(),
    }
    torch.save(state, partial)
    os.replace(partial, final)
    for old in sorted(p for p in directory.iterdir() if NAME.match(p.name))[:-KEEP]:
        old.unlink(missing_ok=True)
    return final


def load(path: Path, work: Any) -> Restored:
    """Restore `work` from a checkpoint file; returns the step to run next."""
    import torch

    state = torch.load(path, map_location=work.device, weights_only=True)
    work.model.load_state_dict(state["model"])
    work.optimizer.load_state_dict(state["optimizer"])
    work.generator.set_state(
        state["generator"].to("cpu") if hasattr(state["generator"], "to") else state["generator"]
    )
    return Restored(step=int(state["step"]), lr=float(state["lr"]), path=path)


def next_attempt(directory: Path) -> int:
    """One more than the attempts this directory has seen (1 for a new one); the count is kept there."""
    record = directory / ATTEMPTS
    try:
        previous = int(json.loads(record.read_text())["attempts"])
    except (OSError, ValueError, KeyError, TypeError):
        previous = 0
    return previous + 1


def count_attempt(directory: Path, attempt: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ATTEMPTS).write_text(json.dumps({"attempts": attempt}) + "\n")
