"""Gate 0 of the experiment: an instrument (storyjax.instruments: the judge, the tales grammar, a reference
LM) is believed only once it ranks known contrasts the right way, before any interactive-learning compute.

Two contrasts whose answer is known: the last pretraining milestone's stories against the first's (paired,
same openings and keys: more pretraining writes better stories), and real held-out text against the same
text with its sentences shuffled (paired). An instrument passes when both paired intervals lie above 0 and,
for a judge comparing pairs with an LLM, when the two orders of showing agree on at least `MIN_CONSISTENCY`
of the pairs. Instruments that fail are reported and not used; when none passes the experiment stops before
RL (`experiment.gate0`), since nothing it could measure would mean anything.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Optional

import numpy as np
from absl import logging

from storyjax import adversarial, instruments, preemption, run_outputs, stats
from storyjax.checkpoint import milestone_words
from storyjax.grades import GradingCancelled

MIN_CONSISTENCY = 0.6
HELD_OUT_SEED = 7_777_777  # the tales shown to the judge: a seed no pretraining run draws


def known_texts(config, n: int) -> Optional[tuple[list, list, list]]:
    """(prompts, real stories, the same with their sentences shuffled) from the pretraining corpus's world:
    held-out generated tales after the training prompt, or passages of a text-file corpus after their first
    sentence; None for a corpus with no held-out text at hand here."""
    data = config.pretrain.data
    if data.name == "tales":
        real = adversarial.tale_continuations(HELD_OUT_SEED, n, config.interactive.prompt)
        prompts = [config.interactive.prompt] * n
        return prompts, real, adversarial.tale_families(real, config.interactive.prompt)["shuffled"]
    if data.name == "text_files" and data.path:
        files = sorted(glob.glob(os.path.join(data.path, "*.txt"))) if os.path.isdir(data.path) else [data.path]
        chosen = adversarial.passages([open(f, errors="replace").read() for f in files], n, seed=HELD_OUT_SEED)
        prompts, real = adversarial.stories("real", chosen)
        return prompts, real, adversarial.stories("shuffled_sentences", chosen)[1]
    return None


def verdict(curve: dict, shuffle: Optional[dict], consistency: Optional[float]) -> dict:
    """Each contrast's outcome (True, False, or None where it could not be measured) and whether the
    instrument passes: both contrasts measured and above 0, and a pairwise judge's orders consistent enough."""
    above = lambda x, ci: None if x is None or ci is None or not np.isfinite(ci) else bool(x - ci > 0)
    checks = {"curve": above(curve.get("mean"), curve.get("ci95")),
              "real_over_shuffled": above(*(shuffle["mean"], shuffle["ci95"]) if shuffle else (None, None)),
              "consistency": None if consistency is None else bool(consistency >= MIN_CONSISTENCY)}
    passes = checks["curve"] is True and checks["real_over_shuffled"] is True and checks["consistency"] is not False
    return {**checks, "passes": passes}


def measure(config, before: dict, texts, judge_fn, lm_fn) -> dict:
    """Gate 0 for each of `experiment.instruments`: its paired difference between the last and the first
    pretraining milestones' stories (the students of `before`, in pretraining order), and real text against
    its shuffles."""
    names = sorted(before, key=milestone_words)
    first, last = before[names[0]], before[names[-1]]
    cap = config.experiment.reference_lm.cap
    out = {}
    for name in config.experiment.instruments:
        curve = stats.clustered_mean(instruments.paired_deltas(name, last, first, cap), first.clusters_N)
        shuffle = instruments.real_over_shuffled(name, texts, judge_fn, lm_fn) if texts else None
        pairwise = last.pairwise if name == "judge" and config.judge.kind == "jax" else None
        consistency = pairwise["position"]["consistency"] if pairwise else None
        out[name] = {"curve_delta": curve["mean"], "curve_ci95": curve["ci95"],
                     "real_minus_shuffled": None if shuffle is None else shuffle["mean"],
                     "real_minus_shuffled_ci95": None if shuffle is None else shuffle["ci95"],
                     "pairwise_consistency": consistency, **verdict(curve, shuffle, consistency)}
    return {"instruments": out, "valid": [n for n, r in out.items() if r["passes"]],
            "passes": any(r["passes"] for r in out.values()), "first": names[0], "last": names[-1]}


def for_experiment(config, workdir: str, before: dict, judge_fn, lm_fn) -> dict:
    """Gate 0 of the experiment (`measure`), written once to WORKDIR/gate0.json, read back on a rerun, logged."""
    path = os.path.join(workdir, "gate0.json")
    if not os.path.exists(path):
        try:
            result = measure(config, before, known_texts(config, config.experiment.gate0_stories), judge_fn, lm_fn)
        except GradingCancelled:
            raise preemption.Preempted("SIGTERM while gate 0 was being measured; rerun to resume.") from None
        run_outputs.write_json(path, result)
    with open(path) as f:
        result = json.load(f)
    logging.info("%s", words(result))
    return result


def words(result: dict) -> str:
    """Gate 0's outcome, an instrument a clause."""
    pm = lambda x, ci: "not measured" if x is None else f"{x:+.2f} ± {ci:.2f}" if ci is not None else f"{x:+.2f}"
    parts = [f"{name} {'passed' if r['passes'] else 'FAILED'} ({result['last']} − {result['first']} "
             f"{pm(r['curve_delta'], r['curve_ci95'])}, real − shuffled "
             f"{pm(r['real_minus_shuffled'], r['real_minus_shuffled_ci95'])}"
             + ("" if r["pairwise_consistency"] is None else
                f", orders agreeing on {r['pairwise_consistency']:.2f} of pairs, needs {MIN_CONSISTENCY}") + ")"
             for name, r in result["instruments"].items()]
    return ("Gate 0: " + "; ".join(parts) + ". " + (f"Instruments used: {', '.join(result['valid'])}." if
                                                     result["passes"] else "No instrument passed."))
