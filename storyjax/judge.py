"""The judge: the grader of held-out stories, which should not be the teacher the student trains on.

A score that rises under the grader the student learned from can be reward hacking: the student learns
that grader's blind spots, not storytelling. Held-out stories are therefore graded twice, by the
training teacher and by the judge (`config.judge`, the same shape as `config.teacher`), and both are
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

import os

import ml_collections

from storyjax.teachers import config as teacher_config
from storyjax.teachers import kinds, make_teacher


def resolved(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The judge's teacher settings with `name` decided."""
    judge = ml_collections.ConfigDict(config.judge.to_dict())
    judge.name = teacher_config.kind(judge)
    return judge


def _teacher(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The training teacher: `config.teacher` (an interactive run) or `config.interactive.teacher` (an experiment)."""
    return config.teacher if "teacher" in config else config.interactive.teacher


def is_teacher(config: ml_collections.ConfigDict) -> bool:
    """Whether the judge grades exactly as the training teacher does (then the teacher's grades are reused):
    the same kind, equal in the settings that kind grades by (Kind.grades_alike; none: one of each)."""
    judge, teacher = teacher_config.flat(resolved(config)), teacher_config.flat(_teacher(config))
    if judge.name != teacher.name:
        return False
    return all(judge.get(k) == teacher.get(k) for k in kinds.get(judge.name, "judge").grades_alike)


def _identity(cfg: ml_collections.ConfigDict) -> set[str]:
    """What names the model behind a grader (its kind says)."""
    return kinds.KINDS[cfg.name].identity(cfg) if cfg.name in kinds.KINDS else set()


def same_model(config: ml_collections.ConfigDict) -> str:
    """Why the judge is the training teacher's own model ("" when it is not)."""
    shared = _identity(resolved(config)) & _identity(_teacher(config))
    return f"both are {sorted(shared)[0]}" if shared else ""


def chosen(config: ml_collections.ConfigDict) -> bool:
    """Whether the user chose the judge (a kind, or weights for `auto`), rather than leaving it to fall back
    on the offline rubric."""
    return config.judge.name != "auto" or bool(config.judge.jax.weights)


def check(config: ml_collections.ConfigDict) -> None:
    """Refuses a judge the user chose that is the training teacher's model, unless `judge.allow_same` says to
    run it anyway. A judge left at `auto` with no weights falls back on the rubric, and is let through (and
    labelled judge = teacher) when the rubric is also the teacher: there is nothing else offline."""
    why = same_model(config)
    if why and chosen(config) and not config.judge.allow_same:
        raise ValueError(f"the judge is the training teacher ({why}), so its scores cannot tell learning from "
                         "reward hacking: give a judge of another model (--config.judge.jax.weights=..., another "
                         "family is best), or set --config.judge.allow_same=True to report it as judge = teacher.")


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
    what = kinds.KINDS[judge.name].model(judge) if judge.name in kinds.KINDS else ""
    name = f"{judge.name} ({os.path.basename(str(what).rstrip('/'))})" if what else judge.name
    return name + (" — judge = teacher: the training teacher's own model, not an independent judge"
                   if same_model(config) else "")
