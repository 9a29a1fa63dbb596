"""Trains the sentence-order weights (`storyjax.teachers.sentence_order`) on paragraphs of plain text.

`python -m storyjax.teachers.sentence_order_training --text_dir=DIR [--exclude=STEMS] [--out=FILE]`
reads DIR/*.txt, splits them into blank-line-separated paragraphs, and fits a ranking model: for each
paragraph of three or more sentences and each of five seeded shuffles of it, the told order should
outscore the shuffle. Deterministic for a given text (seeded shuffles, full-batch optimisation).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random

import jax
import jax.numpy as jnp
import numpy as np
import optax

from storyjax.data import common
from storyjax.teachers.rubric import sentences
from storyjax.teachers.sentence_order import WEIGHTS, feature_counts, profile


def training_pairs(paragraphs: list[list[str]], seed: int = 0, reorderings: int = 5) -> list[dict[str, int]]:
    """For each paragraph of 3+ sentences, `reorderings` seeded shuffles of it: per shuffle, the feature
    counts of the told order minus the shuffle's (the features both share cancel)."""
    rng, out = random.Random(seed), []
    for sents in paragraphs:
        if len(sents) < 3:
            continue
        profiles = [profile(s) for s in sents]
        told = feature_counts(profiles)
        for _ in range(reorderings):
            order = list(range(len(sents)))
            rng.shuffle(order)
            other = feature_counts([profiles[i] for i in order])
            diff = {f: told.get(f, 0) - other.get(f, 0) for f in told.keys() | other.keys()}
            diff = {f: d for f, d in diff.items() if d}
            if diff:
                out.append(diff)
    return out


def fit(pairs: list[dict[str, int]], min_count: int = 5, l2: float = 1e-4, steps: int = 400) -> dict[str, float]:
    """Weights under which the told order outscores each shuffle: logistic loss on the score difference
    (a ranking model, as entity-grid coherence models are trained), Adam on the full batch, over the
    features that differ in at least `min_count` pairs."""
    counts: dict[str, int] = {}
    for d in pairs:
        for f in d:
            counts[f] = counts.get(f, 0) + 1
    vocab = {f: i for i, f in enumerate(sorted(f for f, n in counts.items() if n >= min_count))}
    entries = [(vocab[f], r, v) for r, d in enumerate(pairs) for f, v in d.items() if f in vocab]
    feature_N, pair_N, diff_N = (jnp.asarray(np.asarray(col, dtype)) for col, dtype in
                                 zip(zip(*entries), (np.int32, np.int32, np.float32)))

    def loss(w_F):
        margin_P = jax.ops.segment_sum(w_F[feature_N] * diff_N, pair_N, len(pairs))
        return -jax.nn.log_sigmoid(margin_P).mean() + l2 * jnp.sum(w_F ** 2) / 2

    opt = optax.adam(0.05)
    w_F = jnp.zeros(len(vocab))
    state = opt.init(w_F)

    @jax.jit
    def step(w_F, state):
        updates, state = opt.update(jax.grad(loss)(w_F), state)
        return optax.apply_updates(w_F, updates), state

    for _ in range(steps):
        w_F, state = step(w_F, state)
    w = np.asarray(w_F)
    return {f: round(float(w[i]), 4) for f, i in vocab.items()}


def paragraphs_of(texts: list[str]) -> list[list[str]]:
    """The sentences of each blank-line-separated paragraph of 2–30 sentences (hard-wrapped lines rejoined)."""
    paras = (sentences(p) for text in texts for p in common.paragraphs(text, unwrap_lines=True))
    return [sents for sents in paras if 2 <= len(sents) <= 30]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Trains the sentence-order weights on paragraphs of plain text.")
    parser.add_argument("--text_dir", required=True, help="a folder of plain-text files (*.txt), e.g. novels")
    parser.add_argument("--exclude", default="", help="comma-separated file stems to leave out (held-out text)")
    parser.add_argument("--out", default=WEIGHTS, help="where to write the weights (JSON)")
    args = parser.parse_args(argv)
    excluded = {x for x in args.exclude.split(",") if x}
    files = [p for p in sorted(pathlib.Path(args.text_dir).glob("*.txt")) if p.stem not in excluded]
    if not files:
        raise SystemExit(f"--text_dir={args.text_dir}: no *.txt files to train on (after --exclude={args.exclude}).")
    paragraphs = paragraphs_of([p.read_text(errors="replace") for p in files])
    pairs = training_pairs(paragraphs)
    if not pairs:
        raise SystemExit(f"--text_dir={args.text_dir}: no paragraph of three or more sentences to learn order from "
                         "(paragraphs are separated by blank lines); give it prose.")
    w = fit(pairs)
    with open(args.out, "w") as f:
        json.dump({"trained_on": [p.name for p in files], "paragraphs": len(paragraphs), "pairs": len(pairs),
                   "weights": w}, f, indent=0, sort_keys=True)
    print(f"{len(w)} feature weights from {len(paragraphs)} paragraphs of {', '.join(p.name for p in files)} "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
