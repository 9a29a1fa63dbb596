"""The teacher interface: a batch of (prompt, story) in; scores [B,3] (NaN where unscorable) and raw answers out
(the grades contract itself lives in storyjax.grades, which the learner reads without importing a teacher).

Word accounting belongs to the ledger, not to teachers: it charges a fixed number of answer words per
graded story (arXiv 2509.15714).
"""

from __future__ import annotations

import abc

from storyjax.grades import CRITERIA, Grades, GradingCancelled, Preferences, scored

__all__ = ["CRITERIA", "Grades", "GradingCancelled", "Preferences", "Teacher", "scored"]


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
