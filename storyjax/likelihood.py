"""The student's log-likelihood of whole token sequences: the one way validation perplexity (`evaluate`)
and BLiMP's minimal pairs are scored. Sequences are right-padded into batches of a fixed number of rows,
their length rounded up to a bucket, so a job compiles one program per bucket."""

from __future__ import annotations

import numpy as np

from storyjax import model as model_lib

BUCKETS = (16, 32, 64, 128, 256, 512)


def bucket(longest: int, max_len: int) -> int:
    """The padded length of a batch whose longest sequence has `longest` tokens: the smallest bucket that
    holds it, at most the model's context."""
    if longest > max_len:
        raise ValueError(f"a text of {longest} tokens does not fit the model context {max_len}.")
    return min(next((b for b in BUCKETS if b >= longest), max_len), max_len)


def sequence_scores(cfg: model_lib.ModelConfig, params, rows: list, batch: int, pad_id: int = 0) -> np.ndarray:
    """Σ_t log p(token_t | tokens_<t) of each sequence in `rows` (token ids; its first token is given, not
    scored), float64, scored `batch` rows at a time."""
    out = np.zeros(len(rows), np.float64)
    if not len(rows):
        return out
    L = bucket(max(map(len, rows)), cfg.max_len)
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        toks = np.full((batch, L), pad_id, np.int32)
        valid = np.zeros((batch, L), bool)
        for i, row in enumerate(chunk):
            toks[i, :len(row)], valid[i, :len(row)] = row, True
        out[start:start + len(chunk)] = np.asarray(model_lib.sequence_logprob(cfg, params, toks, valid))[:len(chunk)]
    return out
