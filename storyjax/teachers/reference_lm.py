"""A language model that is not the training teacher, as an instrument: how likely it finds each story's
continuation given its opening.

Mean negative log-likelihood per token under a reference LM separates fluent, coherent text from
incoherent text and word salad even for small models, with no rubric to game. It also rewards repetition
and shortness, so it is read beside length and diversity, and two students' stories from the same opening
are compared over the same number of reference tokens (`matched_nll`). The order test (`shuffled`) scores
the continuation with its sentences reordered: what a reference LM loses on the shuffle is what it knows of
order.

The model is any the in-process `jax` teacher loads (Llama / SmolLM2, Qwen2.5, Gemma-3; a Hugging Face
folder or a GGUF file), reading the plain text: no chat template, no rubric.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import jax
import numpy as np

from storyjax.teachers.base import GradingCancelled
from storyjax.teachers.lm_batching import BUCKET, padded_shape
from storyjax.teachers.rubric import sentences


def continuation(prompt: str, story: str) -> str:
    """What the student wrote: the story less its opening (a story that does not start with it is all its own)."""
    return story[len(prompt):] if story.startswith(prompt) else story


def _ids(model, prompt: str, text: str, max_tokens: int = 0) -> tuple[list, int]:
    """(token ids of opening + continuation, where the continuation starts), within the model's context (an
    opening too long for it loses its start, a continuation its end) and the continuation's first
    `max_tokens` (all with 0)."""
    tok = model.tok
    head = tok.encode(prompt, add_special_tokens=False) if prompt else []
    bos = tok.bos_token_id
    if bos is not None and (tok.encode("a")[:1] == [bos] or not head):
        head = [bos] + head  # a model that reads every text from BOS, or a continuation with no opening
    tail = tok.encode(text, add_special_tokens=False)[:max_tokens or None][:model.lm_cfg.max_len - 1]
    head = head[max(0, len(head) + len(tail) - model.lm_cfg.max_len):]
    return head + tail, len(head)


def token_logprobs(model, prompts: list, texts: list, max_tokens: int = 0) -> list[np.ndarray]:
    """`model`: an in-process teacher (storyjax.teachers.jax_teacher.JaxTeacher: its tokenizer, passes and
    weights). Per text, log p of each of its tokens (its first `max_tokens`, all with 0) given the opening and the
    tokens before it (float64). Texts run
    in micro-batches of `teacher.jax.batch_size`, sorted by length and padded to a bucket of rows and tokens,
    so a job compiles a handful of shapes."""
    encoded = [_ids(model, p, t, max_tokens) for p, t in zip(prompts, texts)]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i][0]))
    out: list = [None] * len(texts)
    for start in range(0, len(order), model.micro):
        if model._cancelled:
            raise GradingCancelled("the reference-LM pass was cancelled (SIGTERM).")
        idx = order[start:start + model.micro]
        rows = [encoded[i][0] for i in idx]
        B_pad, S = padded_shape(len(rows), max(map(len, rows)), model._row_step(), BUCKET, model.lm_cfg.max_len,
                                model.mesh.shape["data"])
        toks, valid = np.zeros((B_pad, S), np.int32), np.zeros((B_pad, S), bool)
        for b, row in enumerate(rows):
            toks[b, :len(row)], valid[b, :len(row)] = row, True
        toks, valid = jax.device_put((toks, valid), model._sharding("data"))
        logp_BxS = np.asarray(model.passes.token_logprobs(model.lm_cfg, model.params, toks, valid), np.float64)
        for b, i in enumerate(idx):
            ids, start_at = encoded[i]
            out[i] = logp_BxS[b, start_at - 1:len(ids) - 1] if start_at else logp_BxS[b, :len(ids) - 1]
    return out


def nll_per_token(logp: np.ndarray, cap: int = 0) -> float:
    """Mean negative log-likelihood per token of the first `cap` tokens (all with cap 0); NaN for none."""
    part = logp[:cap] if cap else logp
    return float(-part.mean()) if len(part) else float("nan")


def shuffled(text: str, seed: int) -> str | None:
    """The text with its sentences in another order (drawn from `seed`), None when it has fewer than two
    different sentences (nothing to reorder)."""
    told = sentences(text.strip())
    if len(set(told)) < 2:
        return None
    order = list(told)
    rng = random.Random(seed)
    while order == told:
        rng.shuffle(order)
    return (" " if text[:1].isspace() else "") + " ".join(order)


class Matched(NamedTuple):
    """Before/after NLL per token over the same number of reference tokens; NaN where a pair was too short."""
    before_N: np.ndarray
    after_N: np.ndarray
    tokens_N: np.ndarray  # m, the tokens compared per pair
    too_short: int        # pairs with fewer than `least` tokens in either story: counted, not compared


def matched_nll(before: list, after: list, cap: int, least: int = 4) -> Matched:
    """Each pair's NLL per token over its first m = min(len_before, len_after, cap) tokens, so a student that
    wrote shorter (or more repetitive and so likelier) stories gains nothing from the length alone."""
    m_N = np.asarray([min(len(b), len(a), cap) for b, a in zip(before, after)], np.int64)
    short_N = m_N < least
    pick = lambda logps: np.asarray([np.nan if s else nll_per_token(lp, m) for lp, m, s in zip(logps, m_N, short_N)])
    return Matched(pick(before), pick(after), m_N, int(short_N.sum()))
