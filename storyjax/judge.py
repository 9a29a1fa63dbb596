"""The judge: the grader of held-out stories, which should not be the teacher the student trains on.

A score that rises under the grader the student learned from can be reward hacking: the student learns
that grader's blind spots, not storytelling. Held-out stories are therefore graded twice, by the
training teacher and by the judge (`config.judge`, the same shape as `config.teacher`, both parsed into
`GraderSettings`), and both are
reported side by side; the gap between them is the hacking made visible.

`judge.name="auto"` (the default): the in-process `jax` teacher when `judge.jax.weights` names an instruct
model, else the offline `rubric`. A judge that is the training teacher's own model (both the rubric; the
same weights file by content fingerprint; the same Hugging Face folder; the same server and model name;
or, across kinds, the same model name) is refused, before any work, unless `judge.allow_same=True` or the
judge was left unchosen (`auto` with no judge weights: the offline quickstart, whose rubric both teaches and
judges); either way every summary, table and report says "judge = teacher" where its figures stand. A judge grading with exactly the
teacher's settings is not asked twice: the teacher's grades are reused. Both questions are answered here
and nowhere else: `same_model` (is it the teacher's model?) and `is_teacher` (does it grade as the teacher?).
"""

from __future__ import annotations

import dataclasses
import os

from storyjax.teachers import kinds, make_teacher
from storyjax.teachers.grader_settings import GraderSettings


def resolved(judge: GraderSettings) -> GraderSettings:
    """The judge's settings with `name` decided."""
    return dataclasses.replace(judge, name=judge.kind)


def is_teacher(judge: GraderSettings, teacher: GraderSettings) -> bool:
    """Whether the judge grades exactly as the training teacher does (then the teacher's grades are reused):
    the same kind, equal in the settings that kind grades by (Kind.grades_alike; none: one of each)."""
    if judge.kind != teacher.kind:
        return False
    alike = kinds.get(judge.kind, "judge").grades_alike
    return all(kinds.setting(judge, k) == kinds.setting(teacher, k) for k in alike)


def _identity(cfg: GraderSettings) -> set[str]:
    """What names the model behind a grader (its kind says)."""
    return kinds.KINDS[cfg.kind].identity(cfg) if cfg.kind in kinds.KINDS else set()


def same_model(judge: GraderSettings, teacher: GraderSettings) -> str:
    """Why the judge is the training teacher's own model ("" when it is not)."""
    shared = _identity(judge) & _identity(teacher)
    return f"both are {sorted(shared)[0]}" if shared else ""


def chosen(judge: GraderSettings) -> bool:
    """Whether the user chose the judge (a kind, or weights for `auto`), rather than leaving it to fall back
    on the offline rubric."""
    return judge.name != "auto" or bool(judge.jax.weights)


def check(judge: GraderSettings, teacher: GraderSettings) -> None:
    """Refuses a judge the user chose that is the training teacher's model, unless `judge.allow_same` says to
    run it anyway. A judge left at `auto` with no weights falls back on the rubric, and is let through (and
    labelled judge = teacher) when the rubric is also the teacher: there is nothing else offline."""
    why = same_model(judge, teacher)
    if why and chosen(judge) and not judge.allow_same:
        raise ValueError(f"the judge is the training teacher ({why}), so its scores cannot tell learning from "
                         "reward hacking: give a judge of another model (--config.judge.jax.weights=..., another "
                         "family is best), or set --config.judge.allow_same=True to report it as judge = teacher.")


def make(judge: GraderSettings, teacher_settings: GraderSettings, workdir: str, teacher, primary: bool = True):
    """The judge for a run whose training teacher is `teacher` (built from `teacher_settings`): that teacher
    itself when the judge is the same, else (on the primary process only; the others receive its grades) a
    teacher of its own logging under WORKDIR/judge, whose answers never mix with, or answer for, the training
    teacher's."""
    if is_teacher(judge, teacher_settings):
        return teacher
    if not primary:
        return None
    judge_dir = os.path.join(workdir, "judge")
    os.makedirs(judge_dir, exist_ok=True)
    return make_teacher(resolved(judge), judge_dir)


def describe(judge: GraderSettings, teacher: GraderSettings) -> str:
    what = kinds.KINDS[judge.kind].model(judge) if judge.kind in kinds.KINDS else ""
    name = f"{judge.kind} ({os.path.basename(str(what).rstrip('/'))})" if what else judge.kind
    return name + (" — judge = teacher: the training teacher's own model, not an independent judge"
                   if same_model(judge, teacher) else "")
