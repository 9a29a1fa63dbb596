"""Teachers that grade stories on readability, narrative coherence and creativity (0–3 each)."""

from __future__ import annotations

from storyjax.teachers.answer_log import ANSWERS_FILE, answer_logs, answer_records, answers_file
from storyjax.teachers.base import Grades, Teacher
from storyjax.teachers.kinds import make_teacher

# the settings check: storyjax.teachers.settings.check; the kinds and what each is: storyjax.teachers.kinds

__all__ = ["Grades", "Teacher", "make_teacher", "answers_file", "answer_logs", "answer_records", "ANSWERS_FILE"]
