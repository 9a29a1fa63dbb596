"""When to stop an interactive run because its teacher has stopped grading.

A teacher that fails (HTTP 500 on every request, a wrong URL path, a 401, garbage) never crashes a run
and never charges a word, so without a limit the run would go on forever: every batch unscorable, the
budget never spent. The loop asks `TeacherHealth.after_batch` after each graded batch; a reason to stop
comes back after `max_failed_batches` consecutive batches with nothing graded, or once the unscorable
rate over the last `window` batches exceeds `max_unscorable_rate`. The loop then checkpoints and raises
`TeacherUnhealthy`; rerunning against a healthy teacher resumes with the ledger intact.

Only the `scored` flags enter the decision, so every process of a multi-host run (which all see the
same broadcast scores) decides the same way.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Optional

import numpy as np


class TeacherUnhealthy(RuntimeError):
    """The teacher stopped grading; the run checkpointed and stopped."""


@dataclasses.dataclass
class TeacherHealth:
    max_failed_batches: int             # consecutive batches with nothing graded; 0: never stop for this
    max_unscorable_rate: float          # over `window` batches; 1.0: never stop for this
    window: int                         # (defaults: storyjax/teachers/config.py)
    _failed_in_a_row: int = 0
    _recent: collections.deque = dataclasses.field(default_factory=collections.deque)

    @classmethod
    def from_config(cls, teacher_cfg) -> "TeacherHealth":
        """From a teacher section (its ranges checked with the rest of it, teachers.settings.check)."""
        return cls(int(teacher_cfg.max_failed_batches), float(teacher_cfg.max_unscorable_rate),
                   int(teacher_cfg.health_window))

    def after_batch(self, scored_B: np.ndarray) -> Optional[str]:
        """Records one batch's scored flags; returns why the run must stop, or None."""
        scored_B = np.asarray(scored_B, bool)
        self._failed_in_a_row = 0 if scored_B.any() else self._failed_in_a_row + 1
        self._recent.append((int((~scored_B).sum()), scored_B.size))
        while len(self._recent) > self.window:
            self._recent.popleft()
        if self.max_failed_batches and self._failed_in_a_row >= self.max_failed_batches:
            return (f"the teacher graded nothing in {self._failed_in_a_row} batches in a row "
                    f"(teacher.max_failed_batches={self.max_failed_batches})")
        if len(self._recent) == self.window and self.max_unscorable_rate < 1.0:
            bad, total = map(sum, zip(*self._recent))
            if bad > self.max_unscorable_rate * total:
                return (f"{bad} of the last {total} stories ({bad / total:.0%}, over {self.window} batches) were "
                        f"unscorable (teacher.max_unscorable_rate={self.max_unscorable_rate})")
        return None
