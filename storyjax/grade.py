"""The grading job: any teacher grades a JSONL of (prompt, story) lines; see configs/grade.py.

Rerunning the same command continues: the lines already in grades.jsonl are kept and grading resumes
after them (the teacher's own cache makes the `openai` teacher's repeats free).
"""

from __future__ import annotations

import json
import os
import time

import ml_collections
import numpy as np
from tqdm import tqdm

from storyjax import run_outputs
from storyjax.atomic import atomic_file
from storyjax.stats import mean_ci
from storyjax.teachers import make_teacher
from storyjax.teachers.base import CRITERIA, scored


def read_stories(path: str) -> tuple[list[str], list[str]]:
    if not path or not os.path.isfile(path):
        raise ValueError(f"stories={path!r} is not a file; give a .jsonl of {{\"prompt\": ..., \"story\": ...}} lines.")
    prompts, stories = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                prompt, story = rec["prompt"], rec["story"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}, line {n}: not a JSON object with \"prompt\" and \"story\".") from None
            if not isinstance(prompt, str) or not isinstance(story, str):
                raise ValueError(f"{path}, line {n}: \"prompt\" and \"story\" must be strings.")
            prompts.append(prompt)
            stories.append(story)
    if not stories:
        raise ValueError(f"{path} holds no stories.")
    return prompts, stories


def validate(config: ml_collections.ConfigDict) -> None:
    if config.batch < 1:
        raise ValueError(f"batch={config.batch}: grade at least 1 story at a time.")
    read_stories(config.stories)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    prompts, stories = read_stories(config.stories)
    os.makedirs(workdir, exist_ok=True)
    out = os.path.join(workdir, "grades.jsonl")
    done = _done(out)
    teacher = make_teacher(config.teacher, workdir)
    seconds, graded = 0.0, 0
    try:
        bar = tqdm(total=len(stories), initial=len(done), unit="story", disable=not config.progress_bar)
        for start in range(len(done), len(stories), config.batch):
            t0 = time.perf_counter()
            grades = teacher.grade_batch(prompts[start:start + config.batch], stories[start:start + config.batch])
            seconds += time.perf_counter() - t0
            graded += len(grades.answers)
            details = grades.details or [{}] * len(grades.answers)
            lines = [{"index": start + i,
                      "scores": None if np.isnan(row).any() else [float(x) for x in row],
                      "answer": grades.answers[i], **details[i]} for i, row in enumerate(grades.scores_Bx3)]
            with open(out, "a") as f:
                f.writelines(json.dumps(line) + "\n" for line in lines)
            done += lines
            bar.update(len(lines))
        bar.close()
    finally:
        teacher.close()
    scores = np.asarray([d["scores"] if d["scores"] is not None else [np.nan] * 3 for d in done], np.float64)
    ok = scored(scores)
    summary = {"job": "grade", "teacher": teacher.name, "stories": len(done), "unscorable": int((~ok).sum()),
               "sum": mean_ci(scores[ok].sum(1)), **{c: mean_ci(scores[ok, j]) for j, c in enumerate(CRITERIA)},
               "stories_per_s": graded / seconds if seconds else None}
    run_outputs.write_summary(workdir, summary)
    return summary


def _done(path: str) -> list[dict]:
    """The lines a killed run already wrote (a torn last line is dropped and regraded)."""
    if not os.path.exists(path):
        return []
    lines = []
    with open(path) as f:
        for line in f:
            try:
                lines.append(json.loads(line))
            except ValueError:
                break
    with atomic_file(path) as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    return lines
