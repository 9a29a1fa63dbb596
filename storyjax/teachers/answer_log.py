"""Where teachers log what they answered: one JSONL per grading process, read back whole on resume."""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Iterator

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
