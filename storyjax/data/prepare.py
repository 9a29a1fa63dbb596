"""A run's data: the corpus, its tokenizer (trained once, kept in the workdir), token streams."""

from __future__ import annotations

import dataclasses
import os

from absl import logging

from storyjax import export
from storyjax import tokenizer as tokenizer_lib
from storyjax.data import iter_documents, load_corpus, packing


@dataclasses.dataclass(frozen=True)
class RunData:
    tokenizer: tokenizer_lib.Tokenizer
    train: packing.TokenStream
    validation: packing.TokenStream
    tokens_per_word: float


def prepare(config, workdir: str, source_key: str, imported=None) -> RunData:
    """`config`: a pretraining run's parsed settings (storyjax.pretrain_settings); `source_key`: names the
    corpus in the token cache (`data.source_identity(...)["config"]`); `imported`: (HFTokenizer, its
    tokenizer.json bytes, source) of an `init_from_hf` checkpoint, used instead of training one."""
    sources = load_corpus(config.data)
    tok_dir = os.path.join(workdir, "tokenizer")
    if imported is not None and not tokenizer_lib.exists(tok_dir):
        export.install_tokenizer(tok_dir, *imported)
    if tokenizer_lib.exists(tok_dir):
        tok = tokenizer_lib.load(tok_dir)
        if imported is None and tok.vocab_size != config.tokenizer.vocab_size:
            raise ValueError(
                f"workdir {workdir} has a tokenizer of vocab {tok.vocab_size}, the config asks for "
                f"{config.tokenizer.vocab_size}. Use a new --workdir or --config.tokenizer.vocab_size="
                f"{tok.vocab_size}. Nothing in the workdir was changed.")
        logging.info("Reusing the tokenizer in %s (sha256 %s).", tok_dir, tok.sha256[:12])
    else:
        logging.info("Training a %d-piece BPE tokenizer on the training split...", config.tokenizer.vocab_size)
        docs = ("\n".join(p) for p in iter_documents(sources["train"]))
        model_bytes = tokenizer_lib.train(docs, config.tokenizer.vocab_size, config.tokenizer.max_lines,
                                          seed=config.seed)
        tok = tokenizer_lib.from_bytes(model_bytes)
        tokenizer_lib.save(tok_dir, model_bytes, {"vocab_size": tok.vocab_size, "sha256": tok.sha256,
                                                  "bos_id": tok.bos_id, "pad_id": tok.pad_id,
                                                  "eos_id": tok.eos_id, "unk_id": tok.unk_id,
                                                  "data": config.data.name})
    cache = os.path.join(workdir, "tokens")
    train = packing.tokenize_split(sources["train"], tok, cache, "train", source_key=source_key)
    validation = packing.tokenize_split(sources["validation"], tok, cache, "validation", source_key=source_key)
    meta = tokenizer_lib.load_meta(tok_dir)
    if "tokens_per_word" not in meta:
        # Measured on the whole training split, end-of-text tokens included, as the ledger counts them.
        meta["tokens_per_word"] = train.tokens_per_word
        meta["train_tokens"], meta["train_words"] = int(len(train.tokens)), int(train.words)
        tokenizer_lib.save_meta(tok_dir, meta)
    return RunData(tok, train, validation, float(meta["tokens_per_word"]))
