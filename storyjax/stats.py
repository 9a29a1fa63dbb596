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


def clustered_mean(x, clusters) -> dict:
    """The mean of `x` (NaN left out) with a 95% interval clustered by `clusters` (the opening: stories or
    pairs from one opening are not independent). The standard error is the cluster-robust (sandwich) one of
    a mean, with a t quantile on clusters - 1 degrees of freedom, since a handful of openings makes a normal
    interval too narrow."""
    x = np.asarray(x, np.float64)
    clusters = np.asarray(clusters)
    ok = np.isfinite(x)
    x, clusters = x[ok], clusters[ok]
    if len(x) == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0, "clusters": 0}
    mean = float(x.mean())
    keys, which = np.unique(clusters, return_inverse=True)
    K = len(keys)
    if K < 2:
        return {"mean": mean, "ci95": float("nan"), "n": int(len(x)), "clusters": int(K)}
    residual_K = np.bincount(which, weights=x - mean, minlength=K)
    se = math.sqrt(K / (K - 1) * float((residual_K ** 2).sum())) / len(x)
    return {"mean": mean, "ci95": float(scipy_stats.t.ppf(0.975, K - 1)) * se, "n": int(len(x)), "clusters": int(K)}


def win_rate(p_a, clusters) -> dict:
    """How often story a beats story b: the mean of the judge's preferences `p_a` (each in 0..1, NaN for an
    unscorable pair) with its 95% interval clustered by opening (`clustered_mean`)."""
    m = clustered_mean(p_a, clusters)
    return {"win_rate": m["mean"], "ci95": m["ci95"], "pairs": m["n"], "clusters": m["clusters"]}


def paired_delta(after, before, clusters) -> dict:
    """The mean paired difference after - before (two students' stories from the same opening and the same
    sampling key; NaN where either is unscorable) with its 95% interval clustered by opening."""
    return clustered_mean(np.asarray(after, np.float64) - np.asarray(before, np.float64), clusters)


def across_seeds(means) -> dict:
    """The mean over seeds of a per-seed figure and its 95% t-interval (seeds - 1 degrees of freedom): the
    between-seed spread, which holds the within-seed sampling noise too. No interval from one seed."""
    x = np.asarray([m for m in means if m is not None and math.isfinite(m)], np.float64)
    if len(x) == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "seeds": 0}
    if len(x) < 2:
        return {"mean": float(x[0]), "ci95": float("nan"), "seeds": 1}
    half = float(scipy_stats.t.ppf(0.975, len(x) - 1)) * x.std(ddof=1) / math.sqrt(len(x))
    return {"mean": float(x.mean()), "ci95": half, "seeds": int(len(x))}


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
