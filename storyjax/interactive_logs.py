"""The interactive run's tables: `generated.csv` (one row per story) and `batch_stats.csv` (one per step).

Columns follow the paper's logs (prompt, story, raw answer, scores, reward; batch reward statistics,
KL, KL coefficient) plus ours (entropy, entropy per word, words in/out, unscorable rate, baseline). On resume, rows of
steps after the restored checkpoint are dropped: the resumed run writes them again, identically.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import defaultdict

import numpy as np

from storyjax import run_outputs
from storyjax.grades import CRITERIA

GENERATED = ["step", "index", "prompt", "story", "answer", *CRITERIA, "scored", "words", "reward", "teacher_details"]
BATCH_STATS = ["step", "teacher_reward_mean", "teacher_reward_std", "teacher_sum_mean", *[f"{c}_mean" for c in CRITERIA],
               "length_bonus_mean", "reward_mean", "reward_std", "kl", "kl_coef", "entropy", "baseline",
               "loss", "grad_norm", "mean_length_tokens", "mean_words", "input_words", "generated_words",
               "stories", "unscorable_rate", "entropy_per_word"]


def _grade_text(x: float):
    """An integer grade as written by a text-answering teacher, an expected grade (from logits) as a decimal."""
    if np.isnan(x):
        return ""
    return int(x) if float(x).is_integer() else round(float(x), 6)


def read_batch_stats(path: str) -> list[dict]:
    """Rows of a batch_stats.csv as floats. A column added after an older run's rows were written reads as
    NaN there."""
    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()}
                for r in csv.DictReader(f)]


class PhaseClock:
    """Wall-clock seconds of each phase of a step (sample, grade, update, rest), per step and on average.
    Each lap ends where the host has waited for the phase's result, so device time lands in its phase."""

    def __init__(self):
        self.totals, self.steps, self._last, self._t = defaultdict(float), 0, {}, 0.0

    def start(self) -> None:
        self.steps += 1
        self._last, self._t = {}, time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self._last[phase] = now - self._t
        self.totals[phase] += now - self._t
        self._t = now

    def last(self) -> dict:
        """This step's phases so far, as TensorBoard scalars."""
        return {f"seconds_{phase}": s for phase, s in self._last.items()}

    def means(self) -> dict:
        return {phase: total / self.steps for phase, total in self.totals.items()} if self.steps else {}


class RunLogs:
    TABLES = (("generated.csv", GENERATED), ("batch_stats.csv", BATCH_STATS))

    def __init__(self, writer: run_outputs.RunWriter):
        self.writer = writer

    def truncate_after(self, step: int) -> None:
        for name, columns in self.TABLES:
            path = self.writer.path(name)
            rows = []
            if os.path.exists(path):
                with open(path, newline="") as f:
                    rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
            self.writer.rewrite_csv(name, columns, rows)

    def write_step(self, step: int, prompt: str, record, metrics: dict, ledger) -> dict:
        """One row per story into generated.csv and the batch's row into batch_stats.csv, from the step's
        record (storyjax.step_record) and the update's scalars; returns the batch's row."""
        scores, scored, words = record.grades.scores_Bx3, record.scored_B, record.words_B
        rewards, bonus = record.rewards.reward_B, record.rewards.bonus_B
        details = record.grades.details or [None] * len(record.full)
        self.writer.append_csv("generated.csv", GENERATED, [
            {"step": step, "index": i, "prompt": prompt, "story": story, "answer": record.grades.answers[i],
             **{c: _grade_text(scores[i, j]) for j, c in enumerate(CRITERIA)},
             "scored": int(scored[i]), "words": int(words[i]), "reward": "" if np.isnan(rewards[i]) else rewards[i],
             "teacher_details": json.dumps(details[i]) if details[i] else ""}
            for i, story in enumerate(record.full)])
        ok = scores[scored]
        teacher = record.rewards.teacher_B[scored]
        nan_mean = lambda x: float(np.mean(x)) if len(x) else float("nan")
        row = {
            "step": step, "teacher_reward_mean": nan_mean(teacher),
            "teacher_reward_std": float(np.std(teacher)) if len(ok) else float("nan"),
            "teacher_sum_mean": nan_mean(ok.sum(1)),
            **{f"{c}_mean": nan_mean(ok[:, j]) for j, c in enumerate(CRITERIA)},
            "length_bonus_mean": nan_mean(bonus[scored]),
            "reward_mean": nan_mean(rewards[scored]), "reward_std": float(np.std(rewards[scored])) if len(ok) else 0.0,
            "kl": metrics["kl"], "kl_coef": metrics["kl_coef"], "entropy": metrics["entropy"],
            "baseline": metrics["baseline"], "loss": metrics["loss"], "grad_norm": metrics["grad_norm"],
            "mean_length_tokens": float(np.mean(record.lengths_B)), "mean_words": float(np.mean(words)),
            "input_words": ledger.input_words, "generated_words": ledger.generated_words,
            "stories": ledger.stories, "unscorable_rate": float(1 - scored.mean()),
            "entropy_per_word": float(np.sum(record.surprisal_B) / max(np.sum(words), 1.0)),
        }
        self.writer.append_csv("batch_stats.csv", BATCH_STATS, [row])
        return row

    def tensorboard(self, step: int, row: dict) -> None:
        self.writer.scalars(step, {k: v for k, v in row.items() if k != "step" and np.isfinite(v)})

    def read_batch_stats(self) -> list[dict]:
        return read_batch_stats(self.writer.path("batch_stats.csv"))
