"""The teacher interface: a batch of (prompt, story) in; scores [B,3] (NaN where unscorable) and raw answers out.

Word accounting belongs to the ledger, not to teachers: the words of each raw answer are what the
student takes in (DESIGN §1), so `answer_words` is the one place that counts them.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import numpy as np

CRITERIA = ("readability", "coherence", "creativity")


class Grades(NamedTuple):
    scores_Bx3: np.ndarray  # float32, integers 0..3, NaN where the answer could not be parsed
    answers: list            # the raw answer text per story ("" when no answer came back)


def answer_words(answers: list) -> int:
    return sum(len(a.split()) for a in answers)


class Teacher(abc.ABC):
    name = "teacher"

    @abc.abstractmethod
    def grade_batch(self, prompts: list, stories: list) -> Grades:
        """Grades every story; must not raise for a story it cannot grade (NaN instead)."""

    def close(self) -> None:
        """Releases connections; the default teacher holds none."""
