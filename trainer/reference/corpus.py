"""The reference trainer's corpus: English-like sentences from a small seeded grammar, generated on the fly.

Generated rather than shipped so that the package carries no third-party text; the grammar has enough
structure (agreement, fixed phrases, punctuation) that a character-level model's loss falls steadily
from ln(vocabulary) toward ~1 nat within a few hundred steps.
"""

from __future__ import annotations

import random

SUBJECTS = (
    "the engineer",
    "a small model",
    "the cluster",
    "our team",
    "the scheduler",
    "every node",
    "the finance report",
    "a training run",
    "the agent",
    "this GPU",
)
VERBS = ("measures", "reports", "trains", "spends", "wastes", "saves", "watches", "counts", "splits", "keeps")
OBJECTS = (
    "the loss",
    "many tokens",
    "idle hours",
    "the budget",
    "each step",
    "its memory",
    "the gradient",
    "a fair share",
    "the power draw",
    "every dollar",
)
ENDINGS = (
    "every hour",
    "without waiting",
    "on the night shift",
    "for the research team",
    "in the dashboard",
    "before the deadline",
    "at full speed",
    "since monday",
)
ADVERBS = ("quietly", "carefully", "rarely", "always", "never", "slowly")


def sentence(rng: random.Random) -> str:
    words = [rng.choice(SUBJECTS)]
    if rng.random() < 0.3:
        words.append(rng.choice(ADVERBS))
    words += [rng.choice(VERBS), rng.choice(OBJECTS)]
    if rng.random() < 0.6:
        words.append(rng.choice(ENDINGS))
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice((".", ".", ".", "!", "?"))


def generate(n_chars: int = 200_000, seed: int = 0) -> str:
    """About `n_chars` characters of text, the same for the same seed."""
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    while size < n_chars:
        parts.append(sentence(rng))
        size += len(parts[-1]) + 1
    return " ".join(parts)


def vocabulary(text: str) -> str:
    """The sorted characters of `text`: token i is vocabulary[i]."""
    return "".join(sorted(set(text)))
