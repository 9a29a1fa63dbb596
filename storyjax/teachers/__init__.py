"""Teachers that grade stories on readability, narrative coherence and creativity (0–3 each)."""

from __future__ import annotations

import os

import ml_collections

from storyjax.teachers.base import Grades, Teacher

NAMES = ("rubric", "openai", "replay")
ANSWERS_FILE = "answers.jsonl"


def make_teacher(cfg: ml_collections.ConfigDict, workdir: str = "") -> Teacher:
    """Builds the configured teacher; one that cannot work is refused here, before any other work."""
    log_path = os.path.join(workdir, ANSWERS_FILE) if workdir else ""
    if cfg.name == "rubric":
        from storyjax.teachers.rubric import RubricTeacher
        return RubricTeacher()
    if cfg.name == "openai":
        from storyjax.teachers.openai_teacher import OpenAITeacher
        teacher = OpenAITeacher(cfg, log_path)
        teacher.check_reachable()
        return teacher
    if cfg.name == "replay":
        from storyjax.teachers.replay import ReplayTeacher
        return ReplayTeacher(cfg, cfg.replay_from, log_path)
    raise ValueError(f"teacher.name={cfg.name!r} is unknown; choose one of {NAMES}.")


__all__ = ["Grades", "Teacher", "make_teacher", "NAMES", "ANSWERS_FILE"]
