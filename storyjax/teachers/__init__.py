"""Teachers that grade stories on readability, narrative coherence and creativity (0–3 each)."""

from __future__ import annotations

import os

import ml_collections

from storyjax.teachers import config as teacher_config
from storyjax.teachers.answer_log import ANSWERS_FILE, answer_logs, answer_records, answers_file
from storyjax.teachers.base import Grades, Teacher
from storyjax.teachers.jax_teacher import JaxTeacher
from storyjax.teachers.openai_teacher import OpenAITeacher
from storyjax.teachers.replay import ReplayTeacher
from storyjax.teachers.rubric import RubricTeacher
from storyjax.teachers.settings import NAMES, check as check_settings
from storyjax.teachers.tales_grammar import TalesTeacher
PAIRWISE = ("rubric", "tales", "jax")  # the teachers that can say which of two stories is the better (Teacher.prefer)


def make_teacher(cfg: ml_collections.ConfigDict, workdir: str = "", process_index: int = 0) -> Teacher:
    """Builds the configured teacher; one that cannot work is refused here, before any other work.

    It logs to `answers_file(process_index)` in `workdir` and remembers the answers of all the run's logs,
    so a resumed run gets every answer it already had, whichever process asked. `cfg` is a teacher section
    (storyjax/teachers/config.py); each kind reads its shared and own settings."""
    log_path = os.path.join(workdir, answers_file(process_index)) if workdir else ""
    if cfg.name not in NAMES:
        raise ValueError(f"teacher.name={cfg.name!r} is unknown; choose one of {NAMES}.")
    cfg = teacher_config.flat(cfg)
    if cfg.name == "rubric":
        return RubricTeacher()
    if cfg.name == "tales":
        return TalesTeacher()
    if cfg.name == "openai":
        teacher = OpenAITeacher(cfg, log_path)
        teacher.check_reachable()
        return teacher
    if cfg.name == "jax":
        return JaxTeacher(cfg, log_path)
    if cfg.name == "replay":
        return ReplayTeacher(cfg, cfg.answers, log_path)


__all__ = ["Grades", "Teacher", "make_teacher", "check_settings", "answers_file", "answer_logs", "answer_records", "NAMES",
           "PAIRWISE", "ANSWERS_FILE"]
