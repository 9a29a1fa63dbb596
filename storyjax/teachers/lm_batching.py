"""How an LLM's stories are cut into padded micro-batches: few shapes to compile, few padded tokens to
compute. Shared by the in-process teacher and the reference language model."""

from __future__ import annotations

import math

BUCKET = 32  # suffix lengths are rounded up to a multiple of this


def padded_shape(rows: int, longest: int, step: int, bucket: int, cap: int, unit: int = 0) -> tuple:
    """(rows, tokens) a micro-batch is padded to: a multiple of `step` rows, or, for fewer rows than that,
    `unit` (the data devices) times the next power of two (an opening with 2 stories computes 2 rows, not 8:
    a few more shapes to compile, no wasted rows); its longest story rounded up to `bucket` tokens but at
    most `cap` (the teacher's context after the prefix and the answer)."""
    unit = unit or step
    if rows >= step:
        padded = -(-rows // step) * step
    else:
        padded = unit * (1 << max(0, math.ceil(math.log2(-(-rows // unit)))))
    return min(padded, -(-rows // step) * step), min(-(-longest // bucket) * bucket, cap)


def micro_batches(lengths: list, most: int, step: int, bucket: int, cap: int, unit: int = 0) -> list:
    """Slices cutting stories sorted by length (`lengths`, ascending) into consecutive micro-batches of at
    most `most`, chosen to compute the fewest tokens: each micro-batch is padded to a multiple of `step`
    rows and its longest story rounded up to `bucket` tokens (at most `cap`), and each costs as much again
    as `2 * step * bucket` tokens (a call's fixed work: the digit passes, reading the weights; measured
    on CPU as ~300 tokens' worth for SmolLM2), so stories of similar lengths stay together and only
    ragged batches are split."""
    n = len(lengths)
    per_call = 2 * step * bucket
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - most), end):
            B_pad, S = padded_shape(end - start, lengths[end - 1], step, bucket, cap, unit)
            cost = best[start] + B_pad * S + per_call
            if cost <= best[end]:  # on a tie (rows padded anyway) the later cut: short stories stay together
                best[end], cut[end] = cost, start
    parts, end = [], n
    while end:
        parts.append(slice(cut[end], end))
        end = cut[end]
    return parts[::-1]
