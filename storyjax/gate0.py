"""Gate 0 of the experiment: the judge is believed only once it ranks known contrasts the right way, before
any interactive-learning compute is spent.

Two contrasts whose answer is known: the last pretraining milestone's held-out stories against the first's
(paired, same openings and keys: more pretraining writes better stories), and real held-out text against
the same text with its sentences shuffled (paired). The judge passes when both paired intervals lie above 0
and, judging pairs with an LLM, when the two orders of showing agree on at least `MIN_CONSISTENCY` of the
pairs. A judge that fails is reported and the experiment stops before RL (`experiment.gate0`), since no
result it could give would mean anything.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Optional

import numpy as np
from absl import logging

from storyjax import adversarial, preemption, run_outputs, stats
from storyjax import judge as judge_lib
from storyjax.experiment_analysis import instrument
from storyjax.teachers.base import GradingCancelled

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


def shuffle_check(judge, texts) -> dict:
    """The judge's sum on each real story minus on its shuffle, paired, each story its own cluster."""
    prompts, real, shuffled = texts
    sums = lambda stories: np.asarray([row.sum() if np.isfinite(row).all() else np.nan
                                       for row in judge.grade_batch(prompts, stories).scores_Bx3], np.float64)
    return stats.paired_delta(sums(real), sums(shuffled), np.arange(len(real)))


def verdict(curve: dict, shuffle: Optional[dict], consistency: Optional[float]) -> dict:
    """Each contrast's outcome (True, False, or None where it could not be measured) and whether the judge
    passes: both contrasts measured and above 0, and a pairwise judge's orders consistent enough."""
    above = lambda x, ci: None if x is None or ci is None or not np.isfinite(ci) else bool(x - ci > 0)
    checks = {"curve": above(curve.get("paired_delta"), curve.get("paired_ci95")),
              "real_over_shuffled": above(*(shuffle["mean"], shuffle["ci95"]) if shuffle else (None, None)),
              "consistency": None if consistency is None else bool(consistency >= MIN_CONSISTENCY)}
    passes = checks["curve"] is True and checks["real_over_shuffled"] is True and checks["consistency"] is not False
    return {**checks, "passes": passes}


def check(config, workdir: str, curve: dict, consistency: Optional[float], judge_fn, instrument: str) -> dict:
    """Gate 0 for the experiment's judge (`judge_fn()` loads it): written once to WORKDIR/gate0.json and read
    back on a rerun."""
    path = os.path.join(workdir, "gate0.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    texts = known_texts(config, config.experiment.gate0_stories)
    try:
        shuffle = shuffle_check(judge_fn(), texts) if texts else None
    except GradingCancelled:
        raise preemption.Preempted("SIGTERM while gate 0 was being measured; rerun to resume.") from None
    result = {"instrument": instrument, "curve_paired_delta": curve.get("paired_delta"),
              "curve_paired_ci95": curve.get("paired_ci95"), "pairwise_consistency": consistency,
              "real_minus_shuffled": None if shuffle is None else shuffle["mean"],
              "real_minus_shuffled_ci95": None if shuffle is None else shuffle["ci95"],
              **verdict(curve, shuffle, consistency)}
    run_outputs.write_json(path, result)
    return result


def for_experiment(config, workdir: str, curve: dict, before: dict, judge_fn) -> dict:
    """Gate 0 on the experiment's judge, from its pretraining curve (`curve`, storyjax.experiment_analysis's
    curve_check of the milestones `before`) and real text against its shuffles; logged, and written once."""
    last = before[curve["last"]].pairwise
    consistency = last["position"]["consistency"] if last and judge_lib.resolved(config).name == "jax" else None
    result = check(config, workdir, curve, consistency, judge_fn, instrument(config))
    logging.info("%s", words(result))
    return result


def words(result: dict) -> str:
    """Gate 0's outcome in a line."""
    pm = lambda x, ci: "not measured" if x is None else f"{x:+.2f} ± {ci:.2f}" if ci is not None else f"{x:+.2f}"
    state = "passed" if result["passes"] else "FAILED"
    return (f"Gate 0 ({result['instrument']}): {state}: last − first pretraining milestone "
            f"{pm(result['curve_paired_delta'], result['curve_paired_ci95'])}, real − shuffled "
            f"{pm(result['real_minus_shuffled'], result['real_minus_shuffled_ci95'])}"
            + ("" if result["pairwise_consistency"] is None else
               f", orders agreeing on {result['pairwise_consistency']:.2f} of pairs (needs {MIN_CONSISTENCY})")
            + ".")
