"""What the experiment measures stories with, besides its judge: the tales grammar and a reference language
model. Each instrument turns two students' stories from the same openings and keys into one paired difference
per story (positive: the first student's story is the better), so every instrument goes through the same
intervals, gates and table.

  judge         the judge's sum of grades (storyjax.judge), as the experiment always measured;
  tales         the tales grammar's sum of grades (storyjax.teachers.tales_grammar): exact for the tales
                corpus's world, blind outside it;
  reference_lm  a language model that is not the training teacher (experiment.reference_lm.weights, any
                model the jax teacher loads): the drop in negative log-likelihood per token of the
                continuation, over the first m = min(both lengths, cap) tokens of each pair (a shorter or more
                repetitive story gains nothing from its length alone); pairs with fewer than 4 tokens in either
                story are counted apart and left out.
"""

from __future__ import annotations

import json
import os
import time
from typing import Optional

import numpy as np

from storyjax import run_outputs, stats
from storyjax.teachers import config as teacher_config
from storyjax.teachers import make_teacher, reference_lm, rubric, tales_grammar

NAMES = ("judge", "tales", "reference_lm")
VERSIONS = {"rubric": rubric.VERSION, "tales": tales_grammar.VERSION}  # hashes of the offline graders


def label(config, which: str = "judge") -> str:
    """What a row's paired Δ was measured with: the judge (its kind, its mode and, for the rubric and the tales
    grammar, the version of their code and weights), the tales grammar, or the reference LM (its weights and
    the matched-length cap)."""
    if which == "tales":
        return f"tales:{tales_grammar.VERSION}"
    if which == "reference_lm":
        lm = config.experiment.reference_lm
        return f"reference_lm:{os.path.basename(str(lm.weights).rstrip('/'))}:matched{lm.cap}"
    name = config.judge.kind
    return f"{name}:{config.judge.mode}" + (f":{VERSIONS[name]}" if name in VERSIONS else "")


def teacher_label(teacher) -> str:
    """A teacher section's kind, with the version hash of the offline graders' code and weights: a figure
    that names it can be told from one graded by another version."""
    return teacher.name + (f":{VERSIONS[teacher.name]}" if teacher.name in VERSIONS else "")


def tales_sums(records: list[dict]) -> np.ndarray:
    return np.asarray([sum(tales_grammar.grade_story(r["prompt"], r["story"])) for r in records], np.float64)


def paired_deltas(name: str, after, before, cap: int) -> np.ndarray:
    """Per story, how much better `after`'s story is than `before`'s under instrument `name` (NaN where it
    cannot say: unscorable, or a pair too short to compare)."""
    if name == "judge":
        return after.sums_N - before.sums_N
    if name == "tales":
        return tales_sums(after.records) - tales_sums(before.records)
    if name == "reference_lm":
        matched = reference_lm.matched_nll(before.lm_logprobs, after.lm_logprobs, cap)
        return matched.before_N - matched.after_N
    raise ValueError(f"experiment.instruments: {name!r} is unknown; choose from {NAMES}.")


def too_short(after, before, cap: int) -> int:
    """The reference LM's pairs too short to compare (counted apart, not dropped silently)."""
    return reference_lm.matched_nll(before.lm_logprobs, after.lm_logprobs, cap).too_short


def real_over_shuffled(name: str, texts, judge_fn, lm_fn) -> dict:
    """Instrument `name` on real held-out text against the same text with its sentences shuffled (paired,
    each story its own cluster): the mean advantage of the real story and its 95% interval."""
    prompts, real, shuffled = texts
    if name == "judge":
        def sums(stories):
            scores_Bx3 = judge_fn().grade_batch(prompts, stories).scores_Bx3
            return np.where(np.isfinite(scores_Bx3).all(1), np.nan_to_num(scores_Bx3).sum(1), np.nan)
        return stats.paired_delta(sums(real), sums(shuffled), np.arange(len(real)))
    if name == "tales":
        records = lambda stories: [{"prompt": p, "story": s} for p, s in zip(prompts, stories)]
        return stats.paired_delta(tales_sums(records(real)), tales_sums(records(shuffled)), np.arange(len(real)))
    cont = lambda stories: [reference_lm.continuation(p, s) for p, s in zip(prompts, stories)]
    nll = lambda stories: np.asarray([reference_lm.nll_per_token(lp) for lp in
                                      reference_lm.token_logprobs(lm_fn(), prompts, cont(stories))])
    return stats.paired_delta(nll(shuffled), nll(real), np.arange(len(real)))


class ReferenceLM:
    """The reference LM, loaded on first use; each student's per-token log-probabilities written once beside
    its evaluation (reference_lm.json) and read back on a rerun."""

    def __init__(self, config, workdir: str):
        self.config, self.workdir, self.model = config, workdir, None
        self.on = "reference_lm" in config.experiment.instruments
        self.seconds = 0.0  # spent in its passes over students' stories (loading aside)

    def load(self):
        if self.model is None:
            settings = self.config.experiment.reference_lm
            self.model = make_teacher(teacher_config.configured(
                "jax", weights=settings.weights, grading="expected", batch_size=settings.batch_size))
        return self.model

    def logprobs(self, student, out: str) -> Optional[list]:
        if not self.on:
            return None
        path = os.path.join(out, "reference_lm.json")
        if not os.path.exists(path):
            # pairs are compared over at most `cap` tokens: the rest would be read for nothing
            model, t0 = self.load(), time.perf_counter()
            logps = reference_lm.token_logprobs(model, student.openings_N, [r["continuation"] for r in student.records],
                                                self.config.experiment.reference_lm.cap)
            self.seconds += time.perf_counter() - t0
            run_outputs.write_json(path, {"weights": self.config.experiment.reference_lm.weights,
                                          "logprobs": [[round(float(x), 6) for x in lp] for lp in logps]})
        with open(path) as f:
            return [np.asarray(lp, np.float64) for lp in json.load(f)["logprobs"]]

    def close(self):
        if self.model is not None:
            self.model.close()
