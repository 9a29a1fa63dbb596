"""Grading config: `--config=configs/grade.py --config.stories=FILE.jsonl --workdir=DIR [--config.teacher.KEY=V]`.

Grades a JSONL of {"prompt": ..., "story": ...} lines (e.g. another system's stories, or a run's
generated.csv turned into JSONL) with any teacher, and writes DIR/grades.jsonl (one line per story, in
order: `scores` — the three grades, or null when unscorable — and what the teacher produced: `answer`,
and for the `jax` teacher `expected`, `argmax`, `digit_mass`) and DIR/summary.json (mean per criterion and
of the sum with 95% intervals, unscorable count, stories/s). With the in-process teacher on SmolLM2:
  python -m storyjax.main --config=configs/grade.py --config.stories=stories.jsonl --workdir=runs/grades \
      --config.teacher.name=jax --config.teacher.weights=PATH/SmolLM2-135M-Instruct.Q4_1.gguf
"""

import ml_collections

from configs import interactive as interactive_config  # the teacher section


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.job = "grade"
    c.stories = ""               # a .jsonl file of {"prompt": ..., "story": ...}
    c.batch = 64                 # stories handed to the teacher at a time (progress, and how much is redone after a kill)
    c.teacher = interactive_config.get_config("default").teacher
    c.progress_bar = True
    return c
