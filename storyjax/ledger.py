"""The word ledger: the single source of truth for what the student has seen.

Pretraining words are estimated as the paper does: tokens ÷ the tokens-per-word
ratio measured on the training corpus. The ledger decides milestones and when
to stop (BabyLM's 10-epoch cap), is saved inside every checkpoint, and appends
one JSON line per event to `ledger.jsonl` for audit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Sequence

# BabyLM intermediate-checkpoint schedule, in words.
BABYLM_MILESTONES = (
    [m * 1_000_000 for m in range(1, 10)]
    + [m * 10_000_000 for m in range(1, 10)]
    + [m * 100_000_000 for m in range(1, 11)])


def milestone_name(words: int) -> str:
    """2_000_000 → 'chck_2M', 500_000 → 'chck_500K', 1_500 → 'chck_1500'."""
    if words <= 0:
        raise ValueError(f"a milestone must be a positive number of words, got {words}.")
    if words % 1_000_000 == 0:
        return f"chck_{words // 1_000_000}M"
    if words % 1_000 == 0:
        return f"chck_{words // 1_000}K"
    return f"chck_{words}"


@dataclasses.dataclass
class Ledger:
    tokens_per_word: float
    tokens_per_epoch: int
    max_epochs: float = 10.0        # 0 lifts the cap
    steps: int = 0
    tokens_seen: int = 0
    milestones_done: list = dataclasses.field(default_factory=list)

    @property
    def words_seen(self) -> float:
        return self.tokens_seen / self.tokens_per_word

    @property
    def epochs(self) -> float:
        return self.tokens_seen / self.tokens_per_epoch

    def max_steps(self, tokens_per_step: int) -> int | None:
        """Steps allowed by the epoch cap, or None when lifted."""
        if not self.max_epochs:
            return None
        return int(self.max_epochs * self.tokens_per_epoch) // tokens_per_step

    def charge(self, tokens: int) -> None:
        if self.max_epochs and self.tokens_seen + tokens > self.max_epochs * self.tokens_per_epoch:
            raise RuntimeError(
                f"this step would exceed the {self.max_epochs}-epoch cap ({self.epochs:.3f} epochs seen); "
                "BabyLM allows at most 10 epochs. Lift it with --config.ledger.max_epochs=0 only for "
                "runs that do not claim compliance.")
        self.steps += 1
        self.tokens_seen += tokens

    def due_milestones(self, schedule: Sequence[int]) -> list[int]:
        """Milestones reached by the words seen so far and not yet checkpointed."""
        return [m for m in schedule if m <= self.words_seen and m not in self.milestones_done]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(words_seen=self.words_seen, epochs=self.epochs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Ledger":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


def append_jsonl(path: str, event: str, ledger: Ledger, **extra) -> None:
    """One audit line; a rerun after a crash appends a 'resume' line, never rewrites history."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    record = {"time": time.time(), "event": event, **ledger.to_dict(), **extra}
    record.pop("milestones_done", None)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
