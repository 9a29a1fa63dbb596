"""Summary statistics the jobs report."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats


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


def win_rate(p_a, clusters) -> dict:
    """How often story a beats story b: the mean of the judge's preferences `p_a` (each in 0..1, NaN for an
    unscorable pair) with a 95% interval clustered by `clusters` (the opening: pairs from one opening are not
    independent). The standard error is the cluster-robust (sandwich) one of a mean, with a t quantile on
    clusters - 1 degrees of freedom, since a handful of openings makes a normal interval too narrow."""
    p_a = np.asarray(p_a, np.float64)
    clusters = np.asarray(clusters)
    ok = np.isfinite(p_a)
    p_a, clusters = p_a[ok], clusters[ok]
    if len(p_a) == 0:
        return {"win_rate": float("nan"), "ci95": float("nan"), "pairs": 0, "clusters": 0}
    mean = float(p_a.mean())
    keys, which = np.unique(clusters, return_inverse=True)
    K = len(keys)
    if K < 2:
        return {"win_rate": mean, "ci95": float("nan"), "pairs": int(len(p_a)), "clusters": int(K)}
    residual_K = np.bincount(which, weights=p_a - mean, minlength=K)
    se = math.sqrt(K / (K - 1) * float((residual_K ** 2).sum())) / len(p_a)
    half = float(scipy_stats.t.ppf(0.975, K - 1)) * se
    return {"win_rate": mean, "ci95": half, "pairs": int(len(p_a)), "clusters": int(K)}


def position_bias(p_a_first, p_a_second) -> dict:
    """How the order of asking moved a judge: `consistency`, the share of pairs with the same winner in both
    orders (ties count as agreeing only with ties), and `first_slot`, how often the story shown first won."""
    first, second = np.asarray(p_a_first, np.float64), np.asarray(p_a_second, np.float64)
    ok = np.isfinite(first) & np.isfinite(second)
    first, second = first[ok], second[ok]
    if not len(first):
        return {"consistency": float("nan"), "first_slot": float("nan")}
    return {"consistency": float((np.sign(first - 0.5) == np.sign(second - 0.5)).mean()),
            "first_slot": float(((first + 1 - second) / 2).mean())}
