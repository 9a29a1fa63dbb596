"""What a grader returns, and what the learner and the logs read from it: the contract between the
teachers and the rest of storyjax, kept apart from any teacher so that the REINFORCE core, the reward and
the logs import no teacher.

A teacher grades each story on readability, narrative coherence and creativity, 0-3 each (arXiv
2509.15714); a story it cannot grade gets NaN grades and is left out of the reward's baseline.
"""

from __future__ import annotations

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
