"""Pieces shared by the corpus builders: features, configs, text chunking.

Every builder writes records `{'text', 'doc'}`: consecutive records with the
same `doc` are pieces of one document (packing joins them without an
end-of-text), so a 40 MB corpus file does not become one 40 MB record.
Records keep generation order (`disable_shuffling`); shuffling happens later,
over packed blocks, with the run's seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterator, Optional

import numpy as np
import tensorflow_datasets as tfds

RECORD_CHARS = 1 << 20  # ~1 MB of text per record


def features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({"text": tfds.features.Text(), "doc": np.int64})


@dataclasses.dataclass
class SourceConfig(tfds.core.BuilderConfig):
    """Where a corpus comes from: the public URL (path empty) or a local copy."""
    path: str = ""
    validation_files: tuple = ()
    validation_fraction: float = 0.0
    unwrap_lines: bool = True
    on_bad_file: str = "error"
    num_docs: int = 0
    seed: int = 0


def source_config(path: str = "", **kwargs) -> SourceConfig:
    """A config named by a hash of its fields, so a changed source rebuilds."""
    fields = dict(path=os.path.abspath(path) if path else "", **kwargs)
    key = repr(sorted(fields.items()))
    if path and os.path.isdir(path):
        # Changed files under the same path must not reuse a stale build.
        for root, _, files in sorted(os.walk(path)):
            for f in sorted(files):
                st = os.stat(os.path.join(root, f))
                key += f"|{f}:{st.st_size}:{int(st.st_mtime)}"
    elif path and os.path.isfile(path):
        st = os.stat(path)
        key += f"|{st.st_size}:{int(st.st_mtime)}"
    name = ("local_" if path else "download_") + hashlib.sha256(key.encode()).hexdigest()[:12]
    return SourceConfig(name=name, **fields)


def paragraphs(text: str, unwrap_lines: bool) -> list[str]:
    """Splits at blank lines; with `unwrap_lines`, hard-wrapped lines are rejoined."""
    paras = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        block = block.strip("\n")
        if not block.strip():
            continue
        paras.append(" ".join(block.split()) if unwrap_lines else block)
    return paras


def chunk_records(paras: list[str], doc: int, key_prefix: str) -> Iterator[tuple[str, dict]]:
    """Yields `(key, record)` pieces of one document of about RECORD_CHARS each."""
    buf, size, part = [], 0, 0
    for p in paras:
        buf.append(p)
        size += len(p) + 1
        if size >= RECORD_CHARS:
            yield f"{key_prefix}/{part:06d}", {"text": "\n".join(buf), "doc": doc}
            buf, size, part = [], 0, part + 1
    if buf:
        yield f"{key_prefix}/{part:06d}", {"text": "\n".join(buf), "doc": doc}


def read_text_file(path: str, on_bad_file: str) -> Optional[str]:
    """Reads UTF-8 text; a binary or undecodable file is refused or skipped, loudly."""
    with open(path, "rb") as f:
        raw = f.read()
    problem = None
    if b"\x00" in raw[:1 << 16]:
        problem = "looks binary (contains NUL bytes)"
    else:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problem = f"is not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})"
    message = f"corpus file {path} {problem}"
    if on_bad_file == "skip":
        from absl import logging
        logging.warning("%s: SKIPPED (data.on_bad_file='skip').", message)
        return None
    raise ValueError(f"{message}. Remove or convert it (e.g. `iconv -f latin1 -t utf-8`), or pass "
                     f"--config.data.on_bad_file=skip to leave such files out.")
