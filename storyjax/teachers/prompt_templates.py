"""The teachers' prompt templates: the rubric (what every LLM teacher is asked about one story) and the
pairwise question (which of two stories is the better), as text files beside this module, or your own.

A template holds `{prompt}` (the opening) and `{story}` (what the student wrote), and may hold `{answer}`
once, near its end: what follows it opens the teacher's answer. The in-process teacher writes that as the
start of the model's own turn, so a small model answers in the format without being shown an example
grade to copy; a chat API gets it as the question's last line.
"""

from __future__ import annotations

import os

ANSWER = "{answer}"
RUBRIC_TEMPLATE = os.path.join(os.path.dirname(__file__), "templates", "rubric_prompt.txt")
PAIRWISE_TEMPLATE = os.path.join(os.path.dirname(__file__), "templates", "pairwise_prompt.txt")


def load_template(path: str, key: str = "teacher.template") -> str:
    """The prompt template at `path` ("" = the rubric's), refused in one line naming `key` when unusable."""
    path = path or RUBRIC_TEMPLATE
    if not os.path.isfile(path):
        raise ValueError(f"{key}={path!r} does not exist; give a text file with {{prompt}} and {{story}}.")
    with open(path) as f:
        template = f.read()
    missing = [p for p in ("{story}", "{prompt}") if p not in template]
    if missing:
        raise ValueError(f"{key} {path} lacks the placeholder(s) {missing}; the teacher would never "
                         "see the story. Add them where the opening line and the story belong.")
    if template.count(ANSWER) > 1 or (ANSWER in template and template.split(ANSWER)[1].strip().count("\n")):
        raise ValueError(f"{key} {path}: {ANSWER} may appear once, followed by one line of plain text "
                         "at most (the start of the teacher's answer).")
    return template
