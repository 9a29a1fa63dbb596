"""Packing: documents → one token stream (joined by end-of-text) → fixed blocks.

The order of blocks is a pure function of (seed, epoch), and global example i
of the run is block `perm(epoch)[i mod n]` with `epoch = i div n`; so the data
position of step k is k itself, nothing needs saving to resume, and every
process can take its own rows of the global batch (multi-host ready).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import numpy as np

from storyjax import tokenizer as tokenizer_lib
from storyjax.atomic import atomic_file
from storyjax.data import iter_documents


@dataclasses.dataclass(frozen=True)
class TokenStream:
    tokens: np.ndarray  # int32 [N], documents separated by EOS
    words: int          # whitespace words of the text behind `tokens`

    @property
    def tokens_per_word(self) -> float:
        return len(self.tokens) / max(self.words, 1)


def tokenize_split(source, tok: tokenizer_lib.Tokenizer, cache_dir: str, split: str,
                   batch_docs: int = 256, source_key: str = "") -> TokenStream:
    """Tokenizes a split once per tokenizer and corpus (`source_key`, e.g. the tfds config name that hashes
    the source); cached as .npy in `cache_dir`."""
    stem = os.path.join(cache_dir, f"{split}-{tok.sha256[:16]}" + (f"-{source_key}" if source_key else ""))
    if os.path.exists(stem + ".json"):
        with open(stem + ".json") as f:
            meta = json.load(f)
        return TokenStream(np.load(stem + ".npy", mmap_mode="r"), meta["words"])
    chunks, words, batch = [], 0, []

    def flush():
        for ids in tok.encode(batch):
            chunks.append(tokenizer_lib.as_array(ids + [tok.eos_id]))
        batch.clear()

    for pieces in iter_documents(source):
        doc = "\n".join(pieces)
        words += tokenizer_lib.count_words(doc)
        batch.append(doc)
        if len(batch) >= batch_docs:
            flush()
    flush()
    tokens = np.concatenate(chunks) if chunks else np.zeros((0,), np.int32)
    os.makedirs(cache_dir, exist_ok=True)
    with atomic_file(stem + ".npy", "wb", suffix=".tmp.npy") as f:
        np.save(f, tokens)
    with atomic_file(stem + ".json") as f:
        json.dump({"tokens": int(len(tokens)), "words": int(words)}, f)
    return TokenStream(tokens, words)


def num_blocks(stream: TokenStream, block_len: int) -> int:
    return len(stream.tokens) // block_len


@functools.lru_cache(maxsize=4)
def epoch_permutation(n_blocks: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n_blocks)


def global_batch(stream: TokenStream, block_len: int, seed: int, step: int, batch_size: int,
                 process_index: int = 0, process_count: int = 1) -> np.ndarray:
    """This process's rows of global batch `step`: int32 [batch_size / process_count, block_len]."""
    n = num_blocks(stream, block_len)
    if n == 0:
        raise ValueError(f"the corpus has {len(stream.tokens)} tokens, fewer than one block of {block_len}.")
    per_process = batch_size // process_count
    first = step * batch_size + process_index * per_process
    rows = []
    perm, perm_epoch = None, -1
    for i in range(first, first + per_process):
        epoch, j = divmod(i, n)
        if epoch != perm_epoch:
            perm, perm_epoch = epoch_permutation(n, seed, epoch), epoch
        b = int(perm[j])
        rows.append(np.asarray(stream.tokens[b * block_len:(b + 1) * block_len]))
    return np.stack(rows)
