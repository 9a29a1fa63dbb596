"""Files written whole or not at all: a temporary file beside the target, renamed over it when complete.

A run killed mid-write (SIGKILL, preemption) leaves the previous version of the file, never half of one.
"""

from __future__ import annotations

import contextlib
import os
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w", suffix: str = ".tmp", **open_kwargs) -> Iterator[IO]:
    """`with atomic_file(path) as f: ...` — `path` gets the content only if the block finishes. `suffix` keeps
    an extension some writers need on the temporary name (numpy's .npy, matplotlib's .png)."""
    tmp = path + suffix
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str, text: str) -> str:
    with atomic_file(path) as f:
        f.write(text)
    return path
