"""Multi-host runs: `jax.distributed` from the config or the platform, and who writes what.

Every process runs the same loop on its own devices; the data-parallel step spans the devices of all
processes, so the gradient mean is global. Each process reads its own rows of the global batch (`packing.global_batch`).
Process 0 alone writes logs, summaries, exports and the tokenizer; orbax checkpoints are written by all
processes together (orbax coordinates them). The workdir must be one folder every process sees (a shared
file system or a gs:// bucket).

`distributed.coordinator` ("host:port"), `num_processes` and `process_id` start it explicitly (SLURM
without auto-detection, the CPU test on 127.0.0.1); `distributed.auto=True` lets JAX read the platform
(TPU pod metadata, SLURM variables); neither: one process.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import logging

_INITIALIZED = False


def check(cfg) -> None:
    """Refuses a `distributed` section no launch can use, before any work (initialize checks again)."""
    problems = []
    if cfg.coordinator and (":" not in cfg.coordinator or not cfg.num_processes
                            or not 0 <= cfg.process_id < cfg.num_processes):
        problems.append(f"distributed.coordinator={cfg.coordinator!r} is host:port and needs distributed.num_processes "
                        f"(got {cfg.num_processes}) and a distributed.process_id in [0, num_processes) (got "
                        f"{cfg.process_id})")
    if cfg.num_processes < 0 or cfg.process_id < 0 or cfg.local_devices < 0:
        problems.append("distributed.num_processes, process_id and local_devices must not be negative")
    if not (isinstance(cfg.timeout_s, (int, float)) and cfg.timeout_s > 0):
        problems.append(f"distributed.timeout_s={cfg.timeout_s}: give the seconds to wait for the other processes")
    if problems:
        raise ValueError("; ".join(problems) + ".")


def initialize(cfg) -> None:
    """Starts jax.distributed once, before any computation, when the config asks for several processes."""
    global _INITIALIZED
    if _INITIALIZED or cfg is None:
        return
    if cfg.coordinator:
        if not (cfg.num_processes and 0 <= cfg.process_id < cfg.num_processes):
            raise ValueError(
                f"distributed.coordinator={cfg.coordinator!r} needs distributed.num_processes (got "
                f"{cfg.num_processes}) and a distributed.process_id in [0, num_processes) (got {cfg.process_id}).")
        jax.distributed.initialize(cfg.coordinator, cfg.num_processes, cfg.process_id,
                                   initialization_timeout=cfg.timeout_s)
    elif cfg.auto:
        jax.distributed.initialize(initialization_timeout=cfg.timeout_s)
    else:
        return
    _INITIALIZED = True
    logging.info("Process %d of %d: %d local devices of %d.", jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count())


def is_primary() -> bool:
    return jax.process_index() == 0


def train_devices(per_process: int = 0):
    """(this process's devices, every process's devices) using the first `per_process` local devices of
    every process (0: all of them), in process order: the data-parallel mesh spans all of them, each
    process feeding its own."""
    available = jax.local_device_count()
    per = per_process or available
    if per > available:
        raise ValueError(f"distributed.local_devices={per_process} but this process has {available} devices; "
                         f"use at most {available} (0: all).")
    local = jax.local_devices()[:per]
    if jax.process_count() == 1:
        return local, local
    chosen = [d for p in range(jax.process_count())
              for d in sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)[:per]]
    return local, chosen


def primary_first(name: str, fn):
    """`fn()` on process 0, then (after it finished) on the others: process 0 writes what the others
    then only read or check (the tokenizer, token caches, run_meta.json). Returns this process's result."""
    result = fn() if is_primary() else None
    barrier(name)
    return result if is_primary() else fn()


def barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def broadcast(tree):
    """Process 0's values of `tree` (numpy arrays) on every process."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils
    return jax.device_get(multihost_utils.broadcast_one_to_all(tree))


def allgather(x):
    """Every process's `x` (a numpy array, the same shape everywhere), stacked in process order: [P, ...]."""
    if jax.process_count() == 1:
        return x[None]
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=False))


def allgather_strings(strings: list[str]) -> list[list[str]]:
    """Every process's list of strings (the same count everywhere), in process order; exact (UTF-8 bytes
    padded to the longest)."""
    encoded = [s.encode("utf-8") for s in strings]
    lengths = np.asarray([len(b) for b in encoded], np.int32)
    all_lengths = allgather(lengths)
    width = max(1, int(all_lengths.max(initial=0)))
    padded = np.zeros((len(encoded), width), np.uint8)
    for i, b in enumerate(encoded):
        padded[i, :len(b)] = np.frombuffer(b, np.uint8)
    all_bytes = allgather(padded)
    return [[bytes(row[:n]).decode("utf-8") for row, n in zip(rows, lens)]
            for rows, lens in zip(all_bytes, all_lengths)]
