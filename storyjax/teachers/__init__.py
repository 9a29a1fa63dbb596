"""Teachers that grade stories on readability, narrative coherence and creativity (0–3 each)."""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Iterator

import ml_collections

from storyjax.teachers.base import Grades, Teacher

NAMES = ("rubric", "openai", "replay", "jax")
ANSWERS_FILE = "answers.jsonl"


def answers_file(process_index: int = 0) -> str:
    """Where a process logs its teacher answers: answers.jsonl, or answers.pN.jsonl for process N of a
    run that shards grading across hosts."""
    return ANSWERS_FILE if process_index == 0 else f"answers.p{process_index}.jsonl"


def answer_logs(path: str) -> list[str]:
    """All answer logs of the run that `path` (its answers.jsonl or answers.pN.jsonl) belongs to: a run that
    sharded grading across hosts has one per process. Any other file name stands alone."""
    folder, name = os.path.split(path)
    if name != ANSWERS_FILE and not re.fullmatch(r"answers\.p\d+\.jsonl", name):
        return [path]
    return [os.path.join(folder, ANSWERS_FILE)] + sorted(glob.glob(os.path.join(folder, "answers.p*.jsonl")))


def answer_records(path: str) -> Iterator[dict]:
    """Every record of every answer log of the run `path` belongs to (see answer_logs), in file order."""
    for log in answer_logs(path) if path else []:
        if os.path.exists(log):
            with open(log) as f:
                yield from map(json.loads, f)


def make_teacher(cfg: ml_collections.ConfigDict, workdir: str = "", process_index: int = 0) -> Teacher:
    """Builds the configured teacher; one that cannot work is refused here, before any other work.

    It logs to `answers_file(process_index)` in `workdir` and remembers the answers of all the run's logs,
    so a resumed run gets every answer it already had, whichever process asked."""
    log_path = os.path.join(workdir, answers_file(process_index)) if workdir else ""
    if cfg.name == "rubric":
        from storyjax.teachers.rubric import RubricTeacher
        return RubricTeacher()
    if cfg.name == "openai":
        from storyjax.teachers.openai_teacher import OpenAITeacher
        teacher = OpenAITeacher(cfg, log_path)
        teacher.check_reachable()
        return teacher
    if cfg.name == "jax":
        from storyjax.teachers.jax_teacher import JaxTeacher
        return JaxTeacher(cfg, log_path)
    if cfg.name == "replay":
        from storyjax.teachers.replay import ReplayTeacher
        return ReplayTeacher(cfg, cfg.replay_from, log_path)
    raise ValueError(f"teacher.name={cfg.name!r} is unknown; choose one of {NAMES}.")


__all__ = ["Grades", "Teacher", "make_teacher", "answers_file", "answer_logs", "answer_records", "NAMES",
           "ANSWERS_FILE"]
