"""Stories: the student writes them (jitted sampler, in chunks), they are decoded to text, and a teacher
grades them (on one process, or each process its share of the batch).

Shared by interactive learning (its batches) and the held-out measurements (storyjax/heldout.py).
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from storyjax import distributed, sampler
from storyjax import model as model_lib
from storyjax.grades import Grades, GradingCancelled


def encode_prompts(tok, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded prompt ids and their validity mask."""
    ids = tok.encode(prompts)
    P = max(map(len, ids))
    toks, valid = np.full((len(ids), P), tok.pad_id, np.int32), np.zeros((len(ids), P), bool)
    for b, row in enumerate(ids):
        toks[b, P - len(row):], valid[b, P - len(row):] = row, True
    return toks, valid


def decode(tok, prompts: list[str], prompt_BxP, valid_BxP, samples: sampler.Samples):
    """(full stories, continuations) as text. Prompt and continuation are decoded together so the space
    between them survives (SentencePiece drops a leading space when a piece list is decoded alone)."""
    tokens, mask = np.asarray(samples.tokens_BxN), np.asarray(samples.mask_BxN)
    rows = [[int(t) for t, v in zip(p, pv) if v] + [int(t) for t, m in zip(r, k) if m and t != tok.eos_id]
            for p, pv, r, k in zip(np.asarray(prompt_BxP), np.asarray(valid_BxP), tokens, mask)]
    stories = tok.decode(rows)
    return stories, [s[len(p):] for s, p in zip(stories, prompts)]


def make_sample_fn(sampling, model_cfg: model_lib.ModelConfig, tok) -> Callable:
    """sample(params, prompt_BxP, valid_BxP, rng) → sampler.Samples at these `sampling` settings (a run's
    parsed `sampling` section: temperature, top_k, top_p, max_new_tokens)."""
    def sample(params, prompt_BxP, valid_BxP, rng):
        return sampler.sample(model_cfg, params, jnp.asarray(prompt_BxP), jnp.asarray(valid_BxP), rng,
                              jnp.float32(sampling.temperature), jnp.int32(sampling.top_k),
                              jnp.float32(sampling.top_p), max_new_tokens=sampling.max_new_tokens,
                              eos_id=tok.eos_id, pad_id=tok.pad_id)
    return sample


def sample_stories(sample, params, tok, prompts: list[str], rng_for_chunk, batch: int):
    """Stories for `prompts` in chunks of `batch`: (full stories, continuations, surprisal_B, new tokens_B).

    `rng_for_chunk(start)` gives the key of the chunk starting at prompt `start`.
    """
    full, texts, surprisal, n_tokens = [], [], [], []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        toks, valid = encode_prompts(tok, chunk)
        out = sample(params, toks, valid, rng_for_chunk(start))
        s, t = decode(tok, chunk, toks, valid, out)
        full += s
        texts += t
        surprisal += list(-np.asarray(out.logprobs_BxN).sum(1))
        n_tokens += list(np.asarray(out.mask_BxN).sum(1))
    return full, texts, np.asarray(surprisal), np.asarray(n_tokens, np.float64)


def grade(teacher, prompts: list[str], stories: list[str], shard: bool = False) -> Optional[Grades]:
    """The teacher's grades on every process, or None on every process when grading was cancelled
    (SIGTERM) on any of them. With several processes (each has sampled the same stories from the same
    parameters and key), every story is graded once: by process 0, which broadcasts the scores (the raw
    answers stay with process 0, which logs them), or, with `shard`, each process grades its contiguous
    share with its own teacher (e.g. a teacher server per host) and all scores and answers are gathered
    everywhere."""
    if jax.process_count() == 1:
        return _grade_or_none(teacher, prompts, stories)
    if shard:
        return _grade_sharded(teacher, prompts, stories)
    grades = _grade_or_none(teacher, prompts, stories) if teacher is not None else None
    cancelled = distributed.is_primary() and grades is None
    if bool(np.asarray(distributed.broadcast(np.float32([cancelled])))[0]):
        return None
    mine = grades.scores_Bx3 if grades is not None else np.zeros((len(stories), 3), np.float32)
    scores = np.asarray(distributed.broadcast(np.asarray(mine, np.float32)))
    return grades if grades is not None else Grades(scores, [""] * len(stories))


def _grade_or_none(teacher, prompts: list[str], stories: list[str]) -> Optional[Grades]:
    try:
        return teacher.grade_batch(prompts, stories)
    except GradingCancelled:
        return None


def _grade_sharded(teacher, prompts: list[str], stories: list[str]) -> Optional[Grades]:
    n, P = len(stories), jax.process_count()
    per = -(-n // P)
    lo = min(n, jax.process_index() * per)
    hi = min(n, lo + per)
    mine = _grade_or_none(teacher, prompts[lo:hi], stories[lo:hi]) if hi > lo else Grades(np.zeros((0, 3)), [])
    if distributed.allgather(np.float32([mine is None])).any():
        return None
    # Every process contributes `per` rows (NaN/"" past the end) so the gathered arrays have one shape.
    scores_Px3 = np.full((per, 3), np.nan, np.float32)
    scores_Px3[:hi - lo] = mine.scores_Bx3
    answers = list(mine.answers) + [""] * (per - (hi - lo))
    scores_Bx3 = distributed.allgather(scores_Px3).reshape(P * per, 3)[:n]
    all_answers = [a for shard in distributed.allgather_strings(answers) for a in shard][:n]
    return Grades(scores_Bx3, all_answers)
