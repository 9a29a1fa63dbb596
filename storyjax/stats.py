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


def hard_wins(p_a_first, p_a_second):
    """Each pair's verdict from a judge asked in both orders: 1 where a won in both, 0 where b won in both,
    0.5 where the two orders disagree (or either is a tie), NaN where either order is unscorable. Averaging
    soft probabilities instead lets a judge that always picks one slot sit at 0.5 with a tiny interval."""
    first, second = np.asarray(p_a_first, np.float64), np.asarray(p_a_second, np.float64)
    win = (first > 0.5) & (second > 0.5)
    loss = (first < 0.5) & (second < 0.5)
    return np.where(np.isfinite(first) & np.isfinite(second), np.where(win, 1.0, np.where(loss, 0.0, 0.5)), np.nan)


def _seed_spread(values_SxN) -> float:
    """The variance of a mean over S seeds that seed-to-seed differences add: the spread of the seeds' own
    means over S (0 with one seed, where nothing estimates it). It holds the stories' noise within each seed
    as well, which the openings' resampling holds too: counted twice, which widens the interval (by up to
    1.4x where that noise dominates) rather than narrowing it. Subtracting it instead left the heavy-tailed
    seed part too small and the interval short (90% coverage with 3 seeds in simulation)."""
    seed_means_S = np.nanmean(values_SxN, 1)
    return float(seed_means_S.var(ddof=1)) / len(seed_means_S) if len(seed_means_S) > 1 else 0.0


def _replicates(values_SxN, weights_RxN, rng) -> np.ndarray:
    """One arm's mean over seeds in each replicate: the stories' seed-averaged values under the replicate's
    openings, plus a seed effect from a t distribution on S - 1 degrees of freedom scaled to the seeds' own
    spread (`_seed_spread`). Resampling 2-3 seeds with replacement instead gives intervals that miss a
    seed-level effect about one time in eight: the bootstrap of a mean over 3 values is far narrower than its
    t interval."""
    ok_SxN = np.isfinite(values_SxN)
    story_means_N = np.where(ok_SxN.any(0), np.nansum(values_SxN, 0) / np.maximum(ok_SxN.sum(0), 1), np.nan)
    ok_N = np.isfinite(story_means_N)
    means_R = weights_RxN[:, ok_N] @ story_means_N[ok_N] / np.maximum(weights_RxN[:, ok_N].sum(1), 1e-12)
    S = values_SxN.shape[0]
    spread = _seed_spread(values_SxN)
    if spread == 0:
        return means_R
    # Evenly spaced t quantiles in random order rather than t draws: the tails of t on 1-2 degrees of freedom
    # are too heavy for a few thousand draws to place their 2.5% quantile (it came out 5% short).
    t_R = scipy_stats.t.ppf((np.arange(len(means_R)) + 0.5) / len(means_R), S - 1)
    return means_R + math.sqrt(spread) * rng.permutation(t_R)


def two_way_bootstrap(arms, openings_N, reps: int = 2000, seed: int = 0) -> dict:
    """The mean over seeds of per-story values, and its 95% interval from a two-way bootstrap over openings
    and seeds: `arms` is one [S, N] array (per seed, per story in the shared order: a paired difference, a
    verdict) or a tuple of two, (arm, control), for the arm's mean minus the control's. `openings_N` names
    each story's cluster: its opening, or its own sampling key where every story continues one opening.

    Every seed writes from the same openings with the same keys against the same before-stories, so the part
    of an effect that varies by opening is shared by all seeds, and a t-interval over seed means misses it.
    Each replicate draws openings with replacement (one draw for both arms: they share the openings) and a
    seed effect per arm (the arms' seeds are independent runs); the interval is the replicates' 2.5% and
    97.5% quantiles."""
    arms = [np.atleast_2d(np.asarray(a, np.float64)) for a in (arms if isinstance(arms, tuple) else (arms,))]
    keys, which_N = np.unique(np.asarray(openings_N), return_inverse=True)
    seed_means = [np.nanmean(a, 1) for a in arms]
    point = [float(np.nanmean(m)) if np.isfinite(m).any() else math.nan for m in seed_means]
    estimate = point[0] - (point[1] if len(point) > 1 else 0.0)
    if len(keys) < 2 or not math.isfinite(estimate):
        return {"mean": estimate, "ci95_low": math.nan, "ci95_high": math.nan}
    rng = np.random.default_rng(seed)
    weights_RxN = rng.multinomial(len(keys), np.full(len(keys), 1 / len(keys)), size=reps)[:, which_N].astype(float)
    replicates = [_replicates(a, weights_RxN, rng) for a in arms]
    diff_R = replicates[0] - (replicates[1] if len(arms) > 1 else 0.0)
    low, high = np.nanquantile(diff_R, [0.025, 0.975])
    return {"mean": estimate, "ci95_low": float(low), "ci95_high": float(high)}
