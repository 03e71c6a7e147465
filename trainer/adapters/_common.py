"""What the adapters share: counting the tokens of a batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def count_tokens(batch: Any) -> int | None:
    """Tokens in a batch: `input_ids` of a mapping, else the first tensor of a sequence, else the tensor
    itself."""
    if isinstance(batch, Mapping):
        batch = batch.get("input_ids")
    elif isinstance(batch, (list, tuple)) and batch:
        batch = batch[0]
    numel = getattr(batch, "numel", None)
    return int(numel()) if callable(numel) else None
