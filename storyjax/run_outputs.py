"""What a run leaves in its workdir besides checkpoints, and who writes it.

Every process of a multi-host run keeps the same tables, ledger and summary; process 0 alone writes them
(`is_writer`, the one place that decides it). `RunWriter` is a run's handle on its outputs: TensorBoard
scalars, the audit ledger (`ledger.jsonl`), milestone evaluations (`milestone_eval.jsonl`) and whole-file
writes, each a no-op on the other processes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os

import jax
import numpy as np
from tensorboardX import SummaryWriter

from storyjax import atomic
from storyjax import ledger as ledger_lib


def is_writer() -> bool:
    """Whether this process writes the run's files (process 0; the others hold the same content)."""
    return jax.process_index() == 0


class RunWriter:
    def __init__(self, workdir: str):
        self.workdir = workdir
        self.active = is_writer()
        self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard")) if self.active else None

    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    def scalars(self, step: int, scalars: dict) -> None:
        if not self.active:
            return
        for k, v in scalars.items():
            self._tensorboard.add_scalar(k, float(v), step)
        self._tensorboard.flush()

    def audit(self, event: str, ledger, **extra) -> None:
        """One line of ledger.jsonl; a rerun after a crash appends a 'resume' line, never rewrites history."""
        if self.active:
            ledger_lib.append_event(self.path("ledger.jsonl"), event, ledger, **extra)

    def milestone_eval(self, ledger, step: int, name: str, words: float, record: dict) -> None:
        """One line of milestone_eval.jsonl (read by `storyjax.report`) and its scalars in TensorBoard."""
        if self.active:
            ledger_lib.append_event(self.path("milestone_eval.jsonl"), "milestone_eval", ledger,
                                    step=step, name=name, words=words, **record)
        self.scalars(step, {f"milestone/{k}": v for k, v in record.items() if isinstance(v, (int, float))})

    def append_csv(self, name: str, columns: list, rows: list) -> None:
        if self.active:
            with open(self.path(name), "a", newline="") as f:
                csv.DictWriter(f, columns).writerows(rows)

    def rewrite_csv(self, name: str, columns: list, rows: list) -> None:
        if self.active:
            write_csv(self.path(name), rows, columns)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def param_checksum(params) -> str:
    """sha256 over every parameter's path, dtype, shape and bytes, in a fixed order."""
    h = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def strict_json(value):
    """`value` with every NaN/inf float (and numpy scalar) made JSON-safe: NaN and inf become null, which
    strict parsers accept (Python's json would write the non-standard NaN / Infinity)."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_summary(workdir: str, summary: dict) -> str:
    return write_json(os.path.join(workdir, "summary.json"), summary)


def write_text(path: str, text: str) -> str:
    """A run's output file, whole or not at all, written by process 0 (see `is_writer`)."""
    return atomic.write_text(path, text) if is_writer() else path


def write_json(path: str, value) -> str:
    return write_text(path, json.dumps(strict_json(value), indent=2, allow_nan=False))


def write_csv(path: str, rows: list[dict], columns: list | None = None) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns if columns is not None else list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(strict_json(rows))
    return write_text(path, buf.getvalue())
