"""Summary statistics the jobs report."""

from __future__ import annotations

import math

import numpy as np


def mean_ci(x) -> dict:
    """Mean and the half-width of its normal-approximation 95% confidence interval."""
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x)) if len(x) > 1 else float("nan")
    return {"mean": float(x.mean()), "ci95": float(half), "n": int(len(x))}


def score_ci(held: dict) -> str:
    """A held-out record's `score` ± `score_ci95` for tables and log lines; "—" when it has no score."""
    if held.get("score") is None:
        return "—"
    return f"{held['score']:.2f} ± {held.get('score_ci95') or 0:.2f}"
