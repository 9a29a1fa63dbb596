"""BLiMP minimal pairs: the share of pairs where the student gives the grammatical sentence more probability.

Each sentence is scored after an end-of-text (the document boundary the student saw in pretraining), in
fixed-shape batches padded to a few length buckets, so a whole suite compiles a handful of programs.
"""

from __future__ import annotations

import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from storyjax import likelihood, run_outputs
from storyjax import model as model_lib

SCORE_BATCH = 128          # fixed batch shape: one compilation per length bucket


def score_texts(cfg: model_lib.ModelConfig, params, tok, texts: list[str]) -> np.ndarray:
    """Total log-probability of each text after an end-of-text."""
    ids = [[tok.eos_id] + row for row in tok.encode(texts)]
    return likelihood.sequence_scores(cfg, params, ids, SCORE_BATCH, tok.pad_id)


def read_minimal_pairs(path: str) -> tuple[list[str], list[str]]:
    good, bad = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            if "sentence_good" not in rec or "sentence_bad" not in rec:
                raise ValueError(f"{path}:{n} lacks sentence_good/sentence_bad (BLiMP jsonl fields).")
            good.append(rec["sentence_good"])
            bad.append(rec["sentence_bad"])
    return good, bad


def check_dir(directory: str, key: str = "milestone_eval.blimp_dir") -> None:
    """Refuses a BLiMP directory up front, not at the first milestone an hour in."""
    if directory and not glob.glob(os.path.join(directory, "*.jsonl")):
        raise ValueError(f"{key}={directory!r} holds no .jsonl files of minimal pairs "
                         "(sentence_good / sentence_bad); fix the path or set it to ''.")


def accuracy(cfg: model_lib.ModelConfig, params, tok, directory: str) -> dict:
    """Accuracy per paradigm file (good sentence more probable than bad) and overall."""
    files = sorted(glob.glob(os.path.join(directory, "*.jsonl")))
    if not files:
        raise ValueError(f"blimp_dir={directory!r} holds no .jsonl files of minimal pairs.")
    result, right, total = {}, 0, 0
    for path in files:
        good, bad = read_minimal_pairs(path)
        scores = score_texts(cfg, params, tok, good + bad)
        correct = scores[:len(good)] > scores[len(good):]
        result[os.path.splitext(os.path.basename(path))[0]] = float(correct.mean())
        right, total = right + int(correct.sum()), total + len(good)
    result["overall"] = right / total
    return result


def milestone_record(cfg: model_lib.ModelConfig, params, tok, directory: str) -> dict:
    """BLiMP fields of a milestone evaluation (none without a directory). Process 0 alone scores: the
    others would only repeat it, and only process 0 writes the record."""
    if not directory or not run_outputs.is_writer():
        return {}
    result = accuracy(cfg, jax.tree.map(jnp.asarray, params), tok, directory)
    return {"blimp": result, "blimp_overall": result["overall"]}
