"""Teachers that grade stories on readability, narrative coherence and creativity (0–3 each)."""

from __future__ import annotations

import ml_collections

from storyjax.teachers.base import Grades, Teacher

NAMES = ("rubric",)


def make_teacher(cfg: ml_collections.ConfigDict) -> Teacher:
    """Builds the configured teacher; a teacher that cannot work is refused here, before any other work."""
    if cfg.name == "rubric":
        from storyjax.teachers.rubric import RubricTeacher
        return RubricTeacher()
    raise ValueError(f"teacher.name={cfg.name!r} is not available in this build; choose one of {NAMES}.")


__all__ = ["Grades", "Teacher", "make_teacher", "NAMES"]
