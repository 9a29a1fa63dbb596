"""What a run leaves in its workdir besides checkpoints: TensorBoard events, summary, checksum."""

from __future__ import annotations

import hashlib
import json
import math
import os

import jax
import numpy as np
from tensorboardX import SummaryWriter


class _NoWriter:
    """What processes other than 0 log to: nothing (process 0 writes the run's events)."""

    def add_scalar(self, *args, **kwargs):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def tensorboard(workdir: str):
    if jax.process_index() != 0:
        return _NoWriter()
    return SummaryWriter(os.path.join(workdir, "tensorboard"))


def log_scalars(writer: SummaryWriter, step: int, scalars: dict) -> None:
    for k, v in scalars.items():
        writer.add_scalar(k, float(v), step)
    writer.flush()


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
    """Writes a run's output file whole or not at all (a temporary file, then a rename); every process holds
    the same content, so process 0 alone writes it."""
    if jax.process_index() != 0:
        return path
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    return path


def write_json(path: str, value) -> str:
    return write_text(path, json.dumps(strict_json(value), indent=2, allow_nan=False))


def write_csv(path: str, rows: list[dict]) -> str:
    import csv
    import io
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(strict_json(rows))
    return write_text(path, buf.getvalue())
