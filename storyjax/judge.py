"""The judge: the grader of held-out stories, which should not be the teacher the student trains on.

A score that rises under the grader the student learned from can be reward hacking: the student learns
that grader's blind spots, not storytelling. Held-out stories are therefore graded twice, by the
training teacher and by the judge (`config.judge`, the same settings as `config.teacher`), and both are
reported side by side; the gap between them is the hacking made visible.

`judge.name="auto"` (the default): the in-process `jax` teacher when `judge.weights` names an instruct
model, else the offline `rubric`. When the judge would be the training teacher itself (same name and
settings), it is not asked twice and the report says the judge is not independent.
"""

from __future__ import annotations

import os

import ml_collections

from storyjax.teachers import make_teacher


def resolved(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The judge's teacher settings with `name` decided."""
    judge = ml_collections.ConfigDict(config.judge.to_dict())
    if judge.name == "auto":
        judge.name = "jax" if judge.get("weights") else "rubric"
    return judge


def is_teacher(config: ml_collections.ConfigDict) -> bool:
    """Whether the judge grades exactly as the training teacher does (then it is not independent). The
    teacher is `config.teacher` (an interactive run) or `config.interactive.teacher` (an experiment)."""
    judge = resolved(config)
    teacher = config.teacher if "teacher" in config else config.interactive.teacher
    if judge.name != teacher.name:
        return False
    if judge.name == "rubric":  # no settings: one rubric
        return True
    keys = {"openai": ("base_url", "model", "template", "temperature", "constrain"),
            "jax": ("weights", "template", "grading", "min_digit_mass"),
            "replay": ("replay_from",)}.get(judge.name, tuple(judge.keys()))
    return all(judge.get(k) == teacher.get(k) for k in keys)


def make(config: ml_collections.ConfigDict, workdir: str, teacher, primary: bool = True):
    """The judge for a run whose training teacher is `teacher`: that teacher itself when the judge is the
    same, else (on the primary process only; the others receive its grades) a teacher of its own logging
    under WORKDIR/judge, whose answers never mix with, or answer for, the training teacher's."""
    if is_teacher(config):
        return teacher
    if not primary:
        return None
    judge_dir = os.path.join(workdir, "judge")
    os.makedirs(judge_dir, exist_ok=True)
    return make_teacher(resolved(config), judge_dir)


def describe(config: ml_collections.ConfigDict) -> str:
    judge = resolved(config)
    what = {"jax": judge.get("weights"), "openai": judge.get("model"), "replay": judge.get("replay_from")}.get(
        judge.name, "")
    name = f"{judge.name} ({os.path.basename(str(what).rstrip('/'))})" if what else judge.name
    return name + (" — the training teacher itself, not an independent judge" if is_teacher(config) else "")
