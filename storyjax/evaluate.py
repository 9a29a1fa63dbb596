"""Evaluation of a student checkpoint: BLiMP minimal pairs, validation perplexity, held-out stories.

`python -m storyjax.main --config=configs/evaluate.py --config.checkpoint=PATH --workdir=DIR` where PATH is
a pretraining or interactive workdir (its latest checkpoint) or a milestone inside one
(`.../milestones/chck_2M`). Writes DIR/eval/{blimp,perplexity,stories}.json and DIR/summary.json.
"""

from __future__ import annotations

import functools
import glob
import json
import math
import os
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from storyjax import checkpoint as ckpt_lib
from storyjax import model as model_lib
from storyjax import reinforce, run_outputs, sampler
from storyjax.stats import mean_ci

SCORE_BATCH = 128          # fixed batch shape: one compilation per length bucket
BUCKETS = (16, 32, 64, 128, 256, 512)


@functools.partial(jax.jit, static_argnames=("cfg",))
def sequence_logprob(cfg: model_lib.ModelConfig, params, tokens_BxL, valid_BxL):
    """Σ_t log p(token_t | tokens_<t) over valid tokens t ≥ 1 (right-padded rows): [B]."""
    logp_BxT, _ = reinforce.sequence_logprobs(cfg, params, tokens_BxL, valid_BxL)  # entropy: dead, dropped by XLA
    return jnp.where(valid_BxL[:, 1:], logp_BxT, 0.0).sum(-1)


def score_texts(cfg, params, tok, texts: list[str]) -> np.ndarray:
    """Total log-probability of each text after an end-of-text (the document boundary the student saw)."""
    ids = [[tok.eos_id] + row for row in tok.encode(texts)]
    longest = max(map(len, ids))
    L = next((b for b in BUCKETS if b >= longest and b <= cfg.max_len), None)
    if L is None:
        raise ValueError(f"a text of {longest} tokens does not fit the model context {cfg.max_len}.")
    out = np.zeros(len(ids), np.float64)
    for start in range(0, len(ids), SCORE_BATCH):
        chunk = ids[start:start + SCORE_BATCH]
        toks = np.full((SCORE_BATCH, L), tok.pad_id, np.int32)
        valid = np.zeros((SCORE_BATCH, L), bool)
        for i, row in enumerate(chunk):
            toks[i, :len(row)], valid[i, :len(row)] = row, True
        out[start:start + len(chunk)] = np.asarray(sequence_logprob(cfg, params, toks, valid))[:len(chunk)]
    return out


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


def check_blimp_dir(directory: str) -> None:
    """Refuses a BLiMP directory up front, not at the first milestone an hour in."""
    if directory and not glob.glob(os.path.join(directory, "*.jsonl")):
        raise ValueError(f"milestone_eval.blimp_dir={directory!r} holds no .jsonl files of minimal pairs "
                         "(sentence_good / sentence_bad); fix the path or set it to ''.")


def blimp_record(cfg, params, tok, directory: str) -> dict:
    """BLiMP fields of a milestone evaluation (none without a directory). Process 0 alone scores: the
    others would only repeat it, and only process 0 writes the record."""
    if not directory or jax.process_index() != 0:
        return {}
    result = blimp(cfg, jax.tree.map(jnp.asarray, params), tok, directory)
    return {"blimp": result, "blimp_overall": result["overall"]}


def log_milestone_eval(workdir: str, writer, ledger, step: int, name: str, words: float, record: dict) -> None:
    """One line of WORKDIR/milestone_eval.jsonl (read by `storyjax.report`) and its scalars in TensorBoard."""
    from storyjax import ledger as ledger_lib
    ledger_lib.append_jsonl(os.path.join(workdir, "milestone_eval.jsonl"), "milestone_eval", ledger,
                            step=step, name=name, words=words, **record)
    run_outputs.log_scalars(writer, step, {f"milestone/{k}": v for k, v in record.items()
                                           if isinstance(v, (int, float))})


def blimp(cfg, params, tok, directory: str) -> dict:
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


def perplexity(cfg, params, tok, data_cfg: ml_collections.ConfigDict, max_blocks: int) -> dict:
    """Validation perplexity per token and per whitespace word on the configured corpus."""
    from storyjax.data import load_corpus, packing  # tfds only when perplexity is asked for
    source = load_corpus(data_cfg)["validation"]
    with tempfile.TemporaryDirectory() as cache:
        stream = packing.tokenize_split(source, tok, cache, "validation")
        L = cfg.max_len
        n = min(packing.num_blocks(stream, L), max_blocks)
        if n == 0:
            raise ValueError(f"the validation split has fewer than {L} tokens.")
        blocks = np.asarray(stream.tokens[:n * L]).reshape(n, L)
        nll = -score_blocks(cfg, params, blocks)
        tokens_scored = n * (L - 1)
        words = tokens_scored / stream.tokens_per_word
    return {"tokens": tokens_scored, "nll_per_token": nll / tokens_scored,
            "ppl_per_token": math.exp(nll / tokens_scored), "ppl_per_word": math.exp(nll / words),
            "words": words, "blocks": n}


def score_blocks(cfg, params, blocks: np.ndarray) -> float:
    total = 0.0
    for start in range(0, len(blocks), 16):
        chunk = blocks[start:start + 16]
        pad = 16 - len(chunk)
        toks = np.concatenate([chunk, np.zeros((pad, chunk.shape[1]), np.int32)]) if pad else chunk
        valid = np.ones_like(toks, bool)
        total += float(np.asarray(sequence_logprob(cfg, params, toks, valid))[:len(chunk)].sum())
    return total


def distinct_n(texts: list[str], n: int) -> float:
    grams = [tuple(w[i:i + n]) for w in (t.split() for t in texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of a story's word n-grams that already occurred earlier in the same story."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def stories(config, cfg, params, tok, workdir: str) -> dict:
    """Held-out openings (ours plus the paper's prompt), k stories each, graded by the configured teacher."""
    from storyjax.interactive import make_sample_fn, sample_stories
    from storyjax.prompts import HELDOUT_OPENINGS, PAPER_PROMPT
    from storyjax.teachers import make_teacher
    from storyjax.teachers.base import CRITERIA

    openings = [o for o in (*HELDOUT_OPENINGS, PAPER_PROMPT)][:config.stories.num_openings]
    prompts = [o for o in openings for _ in range(config.stories.per_opening)]
    longest = max(len(ids) for ids in tok.encode(openings))
    sampler.check_lengths(cfg, longest, config.sampling.max_new_tokens)
    sample = make_sample_fn(config, cfg, tok)
    teacher = make_teacher(config.teacher, workdir)
    try:
        full, texts, surprisal, n_tokens = sample_stories(
            sample, params, tok, prompts, lambda start: jax.random.fold_in(jax.random.key(config.seed), start),
            config.stories.batch)
        grades = teacher.grade_batch(prompts, full)
    finally:
        teacher.close()
    scores = grades.scores_Bx3
    ok = ~np.isnan(scores).any(1)
    words = np.asarray([len(t.split()) for t in texts], np.float64)
    has_words = words > 0
    return {
        "teacher": teacher.name, "stories": len(prompts), "openings": len(openings),
        "sum": mean_ci(scores[ok].sum(1)), **{c: mean_ci(scores[ok, i]) for i, c in enumerate(CRITERIA)},
        "unscorable_rate": float(1 - ok.mean()), "mean_words": float(words.mean()),
        "mean_tokens": float(n_tokens.mean()), "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
        "repetition_rate": float(np.mean([repetition_rate(t) for t in texts])),
        # The paper's "entropy per word": the student's surprisal of its own stories per whitespace word.
        "entropy_per_word": float(surprisal[has_words].sum() / words[has_words].sum()) if has_words.any() else None,
        "entropy_per_token": float(surprisal.sum() / max(n_tokens.sum(), 1)),
        "examples": [{"prompt": p, "story": f, "answer": a} for p, f, a in list(zip(prompts, full, grades.answers))[:8]],
    }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    if bool(config.checkpoint) == bool(config.init_from_hf):
        raise ValueError("give one student to evaluate: --config.checkpoint=RUN_WORKDIR (or "
                         "RUN_WORKDIR/milestones/chck_N), or --config.init_from_hf=HF_MODEL_DIR.")
    out_dir = os.path.join(os.path.abspath(workdir), "eval")
    os.makedirs(out_dir, exist_ok=True)
    if config.init_from_hf:
        from storyjax import export
        cfg, params, tok, _ = export.load_hf(config.init_from_hf)
        summary = {"job": "evaluate", "init_from_hf": os.path.abspath(config.init_from_hf)}
    else:
        cfg, params, tok, _ = ckpt_lib.resolve_student(config.checkpoint)
        summary = {"job": "evaluate", "checkpoint": os.path.abspath(config.checkpoint)}
    if config.blimp_dir:
        summary["blimp"] = blimp(cfg, params, tok, config.blimp_dir)
        _write(out_dir, "blimp.json", summary["blimp"])
        logging.info("BLiMP overall accuracy %.3f", summary["blimp"]["overall"])
    if config.stories.num_openings:
        summary["stories"] = stories(config, cfg, params, tok, workdir)
        _write(out_dir, "stories.json", summary["stories"])
        summary["stories_sum"] = summary["stories"]["sum"]
        logging.info("Held-out stories: teacher sum %.2f ± %.2f of 9", summary["stories"]["sum"]["mean"],
                     summary["stories"]["sum"]["ci95"])
    if config.perplexity:
        summary["perplexity"] = perplexity(cfg, params, tok, config.data, config.max_val_blocks)
        _write(out_dir, "perplexity.json", summary["perplexity"])
    summary["param_checksum"] = run_outputs.param_checksum(jax.device_get(params))
    run_outputs.write_summary(workdir, summary)
    return summary


def _write(directory: str, name: str, payload: dict) -> None:
    path = os.path.join(directory, name)
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(path + ".tmp", path)
