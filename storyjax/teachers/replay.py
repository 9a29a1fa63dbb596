"""`replay`: re-grades a run from its `answers.jsonl` with no teacher present.

Answers of the `openai` teacher are matched by the same content hash it uses (model, template, story and
sampling settings), so a replayed run with the same config reproduces the original grades exactly. Logs
of the in-process `jax` teacher carry their grades (`scores`: expected or integer grades, null when
unscorable) and what was read off the logits; those are matched by opening and story. A story missing
from the log is unscorable, as it would be had the teacher failed.
"""

from __future__ import annotations

import os

import numpy as np

from storyjax.teachers.answer_log import answer_records
from storyjax.teachers.base import Grades
from storyjax.teachers.openai_teacher import OpenAITeacher


class ReplayTeacher(OpenAITeacher):
    name = "replay"

    def __init__(self, cfg, source: str, log_path: str = ""):
        if not os.path.isfile(source):
            raise ValueError(f"teacher.replay.answers={source!r} is not a file; point it at a run's answers.jsonl.")
        super().__init__(cfg, log_path)
        self.cache.update(self._load_cache(source))
        self.graded = _graded_by_text(source)  # (prompt, story) → (scores, answer, details) of `jax` logs

    def check_reachable(self) -> None:
        """Replay needs no server."""

    async def _request(self, client, prompt: str, story: str) -> tuple[str, str, str]:
        return "", "not in the replay log", ""

    def grade_batch(self, prompts: list, stories: list) -> Grades:
        if not self.graded:
            return super().grade_batch(prompts, stories)
        rows = [self.graded.get((p, s)) for p, s in zip(prompts, stories)]
        scores = np.asarray([r[0] if r else [np.nan] * 3 for r in rows], np.float32).reshape(len(rows), 3)
        return Grades(scores, [r[1] if r else "" for r in rows], [r[2] if r else None for r in rows])


def _graded_by_text(source: str) -> dict:
    graded = {}
    for rec in answer_records(source):
        if "scores" in rec and "prompt" in rec and "story" in rec:
            scores = [np.nan if x is None else x for x in rec["scores"]]
            details = {k: rec[k] for k in ("expected", "argmax", "digit_mass") if k in rec}
            graded[(rec["prompt"], rec["story"])] = (scores, rec.get("answer", ""), details)
    return graded


def from_section(cfg, log_path: str = "") -> ReplayTeacher:
    """The teacher of a `replay` section (its `answers` log, parsed as the openai section says)."""
    return ReplayTeacher(cfg, cfg.replay.answers, log_path)
