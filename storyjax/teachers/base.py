"""The teacher interface: a batch of (prompt, story) in; scores [B,3] (NaN where unscorable) and raw answers out.

Word accounting belongs to the ledger, not to teachers: it charges a fixed number of answer words per
graded story (arXiv 2509.15714).
"""

from __future__ import annotations

import abc
from typing import NamedTuple, Optional

import numpy as np

CRITERIA = ("readability", "coherence", "creativity")


class Grades(NamedTuple):
    scores_Bx3: np.ndarray  # float32 in 0..3 (integers, or expected grades from a teacher's logits), NaN where unscorable
    answers: list            # the raw answer text per story ("" when no answer came back)
    details: Optional[list] = None  # per story, what a logit-reading teacher saw (expected, argmax, digit_mass)


class Preferences(NamedTuple):
    """A judge's preference between two stories told from the same opening, asked in both orders."""
    p_a_B: np.ndarray         # probability that story a is the better one, averaged over both orders; NaN: unscorable
    p_a_first_B: np.ndarray   # ... as judged with a shown first
    p_a_second_B: np.ndarray  # ... as judged with a shown second (1 - the judge's preference for the first slot)
    details: Optional[list] = None


def scored(scores_Bx3):
    """Which stories the teacher graded: all three grades finite. The one definition every part of storyjax
    uses, on host (numpy) and traced (jax) arrays alike."""
    xp = scores_Bx3.__array_namespace__()
    return xp.isfinite(scores_Bx3).all(-1)


class GradingCancelled(Exception):
    """A batch's grading was abandoned (SIGTERM): the batch is neither charged nor applied."""


class Teacher(abc.ABC):
    name = "teacher"

    @abc.abstractmethod
    def grade_batch(self, prompts: list, stories: list) -> Grades:
        """Grades every story; must not raise for a story it cannot grade (NaN instead)."""

    def prefer(self, prompts: list, stories_a: list, stories_b: list) -> Preferences:
        """Which of two stories from the same opening is the better, in both orders (judge.mode=pairwise)."""
        raise ValueError(f"the {self.name!r} teacher cannot judge pairs of stories: use the jax teacher (an "
                         "instruct model, its preference read from its logits) or the rubric (the larger sum).")

    def cancel(self) -> None:
        """Abandons a grade_batch in progress (SIGTERM); teachers that answer at once ignore it."""

    def close(self) -> None:
        """Releases connections; the default teacher holds none."""
