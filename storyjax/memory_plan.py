"""How many micro-batches a pretraining step needs to fit its device, read from XLA's memory plan of the
compiled step (abstract inputs: nothing is allocated to find out).

A step's peak is its arguments (the state and the batch), its outputs and its temporaries, less what the
donated state lends its outputs. Gradient accumulation in A micro-batches divides the activations, the bulk
of the temporaries, by about A. `train.grad_accum=0` picks the smallest A, dividing the rows each device
takes per step, whose plan fits the device's memory (`train.device_memory_gb`, or what the device reports)
with a margin; an A given outright is refused before any work when its plan does not fit.
"""

from __future__ import annotations

from typing import Callable, Optional

# What a plan may use of the device: JAX's own allocator, cuDNN and NCCL workspaces need the rest.
HEADROOM = 0.9


def device_bytes(device, override_gb: float = 0.0) -> Optional[int]:
    """The device's memory: `override_gb` if given (planning for another device), else what the device
    reports (GPUs and TPUs do; a CPU does not: None)."""
    if override_gb:
        return int(override_gb * 2**30)
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return int(stats["bytes_limit"]) if stats and stats.get("bytes_limit") else None


def candidates(rows_per_device: int) -> list[int]:
    """Micro-batch counts that split a device's rows evenly, fewest first."""
    return [a for a in range(1, rows_per_device + 1) if rows_per_device % a == 0]


def choose(plan: Callable[[int], int], rows_per_device: int, limit: Optional[int], fixed: int = 0) -> tuple[int, int]:
    """(grad_accum, its planned bytes). `plan(A)`: the planned bytes of the step compiled with A micro-batches.
    `fixed` > 0: that A, checked against `limit`; 0: the smallest A that fits (1 where the limit is unknown)."""
    if fixed:
        need = plan(fixed) if limit else 0
        if limit and need > HEADROOM * limit:
            fits = next((a for a in candidates(rows_per_device) if a > fixed and plan(a) <= HEADROOM * limit), None)
            hint = f"set --config.train.grad_accum={fits} or 0 (the smallest that fits)" if fits else \
                "lower train.batch_size, or use a smaller model or shorter train.seq_len"
            raise ValueError(f"train.grad_accum={fixed}: the compiled step plans {need / 2**30:.1f} GiB of the device's "
                             f"{limit / 2**30:.1f} GiB (at most {HEADROOM:.0%} usable); {hint}.")
        return fixed, need
    if not limit:
        return 1, 0
    tried = []
    for a in candidates(rows_per_device):
        need = plan(a)
        tried.append(f"{a}: {need / 2**30:.1f} GiB")
        if need <= HEADROOM * limit:
            return a, need
    raise ValueError(f"no gradient accumulation fits the device's {limit / 2**30:.1f} GiB (planned per micro-batch "
                     f"count: {', '.join(tried)}); lower train.batch_size, or use a smaller model or shorter "
                     "train.seq_len.")
