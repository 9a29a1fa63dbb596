"""Grading config: `--config=configs/grade.py --config.stories=FILE.jsonl --workdir=DIR [--config.teacher.KEY=V]`.

Grades a JSONL of {"prompt": ..., "story": ...} lines (e.g. another system's stories, or a run's
generated.csv turned into JSONL) with any teacher, and writes DIR/grades.jsonl (one line per story, in
order: `scores` — the three grades, or null when unscorable — and what the teacher produced: `answer`,
and for the `jax` teacher `expected`, `argmax`, `digit_mass`) and DIR/summary.json (mean per criterion and
of the sum with 95% intervals, unscorable count, stories/s).

`--config.pairs=FILE.jsonl` of {"prompt": ..., "a": ..., "b": ...} (two stories told from one opening, e.g. a
student's before and after learning) asks instead which is the better story: DIR/pairs.jsonl holds, per
pair, `p_a` (the judge's probability that a is the better, averaged over both orders of showing them, null
when unscorable), `p_a_first` and `p_a_second` (each order's); DIR/summary.json the win rate of a with a 95%
interval clustered by opening, and how much the order of showing moved the judge. The `jax` teacher reads
its preference off the logits of "1" and "2"; the `rubric` compares sums of grades.

`--config.mode=likelihood` (a `jax` teacher) uses the teacher's model as a reference language model instead
of a grader: DIR/likelihood.jsonl holds, per story in order, `nll_per_token` (the mean negative
log-likelihood of its continuation given its opening, plain text, no template) and `tokens`, and with
`order_test` (default on) `shuffled_nll_per_token` (the continuation's sentences reordered; null with fewer
than two); DIR/summary.json the means with 95% intervals.

With the in-process teacher on SmolLM2:
  python -m storyjax.main --config=configs/grade.py --config.stories=stories.jsonl --workdir=runs/grades \
      --config.teacher.name=jax --config.teacher.jax.weights=PATH/SmolLM2-135M-Instruct.Q4_1.gguf
"""

import ml_collections

from configs import interactive as interactive_config  # the teacher section


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.job = "grade"
    c.stories = ""               # a .jsonl file of {"prompt": ..., "story": ...}
    c.pairs = ""                 # or a .jsonl file of {"prompt": ..., "a": ..., "b": ...} to judge pairwise
    c.mode = "grades"            # grades (or judge pairs) | likelihood (a jax teacher's model as a reference LM)
    c.order_test = True          # likelihood: also score each continuation with its sentences shuffled
    c.batch = 64                 # stories handed to the teacher at a time (progress, and how much is redone after a kill)
    c.teacher = interactive_config.get_config("default").teacher
    c.progress_bar = True
    return c
