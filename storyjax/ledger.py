"""Word accounting, the single source of truth for what the student has seen, in three parts named apart:

- `PretrainCount`: pretraining's tokens seen and the words they stand for, estimated as the paper does
  (tokens ÷ the tokens-per-word ratio measured on the training corpus); it decides milestones and when to
  stop (BabyLM's 10-epoch cap);
- `WordBudget`: the interactive phase's counted input words against its budget (arXiv 2509.15714);
- the audit log: one JSON line per event (`append_event`) to the run's `ledger.jsonl`.

Both counts are saved inside every checkpoint.
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
class PretrainCount:
    """Pretraining's tokens seen, the words they stand for, the steps and milestones done."""
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
    def from_dict(cls, d: dict) -> "PretrainCount":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


def append_event(path: str, event: str, ledger: "PretrainCount | WordBudget", **extra) -> None:
    """One JSON line: the event, the count at that moment, `extra` (an audit line of ledger.jsonl, or a
    milestone evaluation's; `run_outputs.RunWriter` decides which process writes it)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    record = {"time": time.time(), "event": event, **ledger.to_dict(), **extra}
    record.pop("milestones_done", None)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


@dataclasses.dataclass
class WordBudget:
    """Words of the interactive phase, counted as the paper (arXiv 2509.15714) counts them. Input words
    are what the student *takes in*: the prompt
    (charged for every story of the first batch only, as the paper did — 16 × 360 — or for every story of
    every batch) and the teacher's three score words for
    each story it could grade; an unscorable story teaches nothing and is charged nothing. The student's own
    words count against a separate cap. Budgets are checked before a batch goes to the teacher.
    """
    budget_words: int
    prompt_words: int
    charge_prompt: str = "once"       # "once" | "per_story"
    answer_words_per_story: int = 3
    generated_cap: int = 100_000_000
    milestone_every: int = 100_000
    steps: int = 0
    stories: int = 0
    unscorable: int = 0
    input_words: int = 0
    prompt_charged: bool = False
    generated_words: int = 0
    milestones_done: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.charge_prompt not in ("once", "per_story"):
            raise ValueError(f"charge_prompt={self.charge_prompt!r}: use 'once' (the paper) or 'per_story'.")

    def batch_cost(self, batch: int) -> int:
        """The most input words the next batch can charge (every story scored)."""
        charged = self.charge_prompt == "per_story" or not self.prompt_charged
        return self.prompt_words * batch * charged + self.answer_words_per_story * batch

    def can_afford(self, batch: int) -> bool:
        return self.input_words + self.batch_cost(batch) <= self.budget_words

    def check_first_batch(self, batch: int) -> None:
        if self.steps == 0 and not self.can_afford(batch):
            raise ValueError(
                f"budget_words={self.budget_words:,} is smaller than one batch of {batch} stories "
                f"({self.batch_cost(batch):,} input words); raise --config.budget_words or lower "
                "--config.batch_size.")

    def charge(self, batch: int, scored: int, generated_words: int) -> None:
        if self.generated_words + generated_words > self.generated_cap:
            raise RuntimeError(f"the student's own words would exceed their cap of {self.generated_cap:,} "
                               "(BabyLM: at most 100M generated words).")
        if self.charge_prompt == "per_story" or not self.prompt_charged:
            self.input_words += self.prompt_words * batch
            self.prompt_charged = True
        self.input_words += self.answer_words_per_story * scored
        self.steps += 1
        self.stories += batch
        self.unscorable += batch - scored
        self.generated_words += generated_words

    def due_milestones(self) -> list[int]:
        step = self.milestone_every
        reached = [m for m in range(step, self.input_words + 1, step)] if step > 0 else []
        return [m for m in reached if m not in self.milestones_done]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "WordBudget":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


def dry_run(ledger: WordBudget, batch: int) -> WordBudget:
    """Plays the budget out with every story scored: how many steps, stories and words a run gets."""
    ledger.check_first_batch(batch)
    while ledger.can_afford(batch):
        ledger.charge(batch, batch, 0)
    return ledger
