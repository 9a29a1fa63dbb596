"""Tokenizers of a run: SentencePiece BPE trained on the training split, or a Hugging Face one imported.

SentencePiece (the default): ids follow the paper's tokenizer order: <s>=0, <pad>=1, </s>=2, <unk>=3.
Identity normalization and kept whitespace make decode(encode(text)) == text for any UTF-8 text (unseen
characters fall back to byte pieces). The model file lives in the run's workdir and is reused on resume.

Hugging Face (`init_from_hf`): the imported checkpoint's `tokenizer.json` (for instance the paper's
byte-level BPE), run by the `tokenizers` library exactly as transformers runs it, with the special ids the
checkpoint declares. Both expose the same small interface: encode, decode, vocab_size, the four special
ids and a sha256 naming the tokenizer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from typing import Any, Iterable, Sequence

import numpy as np
import sentencepiece as spm

from storyjax.atomic import atomic_file

BOS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
MODEL_FILE, META_FILE = "spm.model", "tokenizer.json"
HF_FILE = "hf_tokenizer.json"  # an imported tokenizers file (META_FILE already holds our metadata)


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    processor: spm.SentencePieceProcessor
    sha256: str

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    bos_id, pad_id, eos_id, unk_id = BOS_ID, PAD_ID, EOS_ID, UNK_ID

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.processor.encode(list(texts), num_threads=os.cpu_count() or 1)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return self.processor.decode([list(map(int, x)) for x in ids])


@dataclasses.dataclass(frozen=True)
class HFTokenizer:
    """A `tokenizers` tokenizer with the special ids of the checkpoint it came with."""
    backend: Any  # a tokenizers.Tokenizer (imported lazily: only imported students need it)
    sha256: str
    bos_id: int
    pad_id: int
    eos_id: int
    unk_id: int

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        # No special tokens added: documents are joined with end-of-text by the packer, as for SentencePiece.
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return self.backend.decode_batch([list(map(int, x)) for x in ids], skip_special_tokens=True)


def hf_from_bytes(json_bytes: bytes, special_ids: dict) -> HFTokenizer:
    """`special_ids`: bos_id, pad_id, eos_id, unk_id and optionally split_special_tokens (transformers'
    tokenizer_config flag: special-token strings in text are read as plain text)."""
    import tokenizers
    backend = tokenizers.Tokenizer.from_str(json_bytes.decode("utf-8"))
    backend.encode_special_tokens = bool(special_ids.get("split_special_tokens", False))
    return HFTokenizer(backend, hashlib.sha256(json_bytes).hexdigest(),
                       **{k: int(special_ids[k]) for k in ("bos_id", "pad_id", "eos_id", "unk_id")})


MAX_LINE_BYTES = 1 << 16  # SentencePiece's max_sentence_length: it silently drops longer training lines


def _lines(documents: Iterable[str], max_lines: int) -> Iterable[str]:
    n = 0
    for doc in documents:
        for line in doc.split("\n"):
            for piece in _within(line, MAX_LINE_BYTES):
                if piece.strip():
                    yield piece
                    n += 1
                    if n >= max_lines:
                        return


def _within(line: str, limit: int) -> Iterable[str]:
    """`line` cut into pieces of at most `limit` UTF-8 bytes, at the last space before the limit where there
    is one (a minified or unwrapped text would otherwise be left out of the tokenizer's training)."""
    while len(line.encode("utf-8")) > limit:
        head = line.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
        cut = head.rfind(" ")
        cut = cut if cut > 0 else len(head)
        yield line[:cut]
        line = line[cut:]
    yield line


def train(documents: Iterable[str], vocab_size: int, max_lines: int = 2_000_000, seed: int = 0) -> bytes:
    """Returns the serialized model trained on (at most `max_lines` lines of) `documents`."""
    spm.set_random_generator_seed(seed)  # sampling of input lines is the only randomness
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(_lines(documents, max_lines)), model_writer=model,
            model_type="bpe", vocab_size=vocab_size, byte_fallback=True,
            bos_id=BOS_ID, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID,
            bos_piece="<s>", pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
            user_defined_symbols=["<mask>"],
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            split_digits=True, max_sentence_length=MAX_LINE_BYTES, character_coverage=0.9995,
            shuffle_input_sentence=True, num_threads=os.cpu_count() or 1,
            minloglevel=2)
    except RuntimeError as e:
        limit = re.search(r"<= (\d+)", str(e))
        if limit is None:
            raise
        raise ValueError(f"tokenizer.vocab_size={vocab_size} is more pieces than this training text supports "
                         f"(at most {limit.group(1)}); set --config.tokenizer.vocab_size={limit.group(1)} "
                         "or lower.") from None
    return model.getvalue()


def from_bytes(model_bytes: bytes) -> Tokenizer:
    proc = spm.SentencePieceProcessor(model_proto=model_bytes)
    return Tokenizer(proc, hashlib.sha256(model_bytes).hexdigest())


def load(directory: str) -> "Tokenizer | HFTokenizer":
    """The run's tokenizer: SentencePiece if `spm.model` is there, else an imported Hugging Face one."""
    spm_path, hf_path = os.path.join(directory, MODEL_FILE), os.path.join(directory, HF_FILE)
    if os.path.exists(spm_path):
        with open(spm_path, "rb") as f:
            return from_bytes(f.read())
    if os.path.exists(hf_path):
        with open(hf_path, "rb") as f:
            return hf_from_bytes(f.read(), load_meta(directory))
    raise ValueError(f"{directory} holds no tokenizer ({MODEL_FILE} or {HF_FILE}).")


def exists(directory: str) -> bool:
    return any(os.path.exists(os.path.join(directory, f)) for f in (MODEL_FILE, HF_FILE))


def save_hf(directory: str, json_bytes: bytes, meta: dict) -> None:
    _write_atomic(os.path.join(directory, HF_FILE), json_bytes)
    save_meta(directory, meta)


def _write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_file(path, "wb") as f:
        f.write(data)


def save(directory: str, model_bytes: bytes, meta: dict) -> None:
    _write_atomic(os.path.join(directory, MODEL_FILE), model_bytes)
    save_meta(directory, meta)


def save_meta(directory: str, meta: dict) -> None:
    _write_atomic(os.path.join(directory, META_FILE), json.dumps(meta, indent=2).encode())


def load_meta(directory: str) -> dict:
    with open(os.path.join(directory, META_FILE)) as f:
        return json.load(f)


def count_words(text: str) -> int:
    """Whitespace words, the unit of BabyLM budgets."""
    return len(text.split())


def as_array(ids: list[int]) -> np.ndarray:
    return np.asarray(ids, dtype=np.int32)
