"""Win rates of pairwise judging: intervals clustered by opening, and position bias."""

import numpy as np
from scipy import stats as scipy_stats

from storyjax.stats import mean_ci, position_bias, win_rate


def test_equal_clusters_give_the_t_interval_of_the_cluster_means():
    rng = np.random.default_rng(0)
    means = rng.uniform(0.2, 0.9, 7)
    p_a, clusters = np.repeat(means, 4), np.repeat(np.arange(7), 4)
    w = win_rate(p_a, clusters)
    lo, hi = scipy_stats.t.interval(0.95, 6, loc=means.mean(), scale=scipy_stats.sem(means))
    np.testing.assert_allclose([w["win_rate"], w["ci95"]], [means.mean(), (hi - lo) / 2], rtol=1e-12)
    assert (w["pairs"], w["clusters"]) == (28, 7)


def test_pairs_repeated_within_an_opening_do_not_narrow_the_interval():
    rng = np.random.default_rng(1)
    once = rng.uniform(0, 1, 10)
    five_times = win_rate(np.repeat(once, 5), np.repeat(np.arange(10), 5))
    assert abs(five_times["ci95"] - win_rate(once, np.arange(10))["ci95"]) < 1e-12
    # ...where an interval that ignores the openings would claim sqrt(5) times the precision.
    assert mean_ci(np.repeat(once, 5))["ci95"] < five_times["ci95"] / 2


def test_the_interval_covers_the_true_win_rate_95_percent_of_the_time():
    """Openings differ (a random effect per opening) and have 1-6 pairs each: coverage over 3000 draws."""
    rng = np.random.default_rng(2)
    covered = 0
    for _ in range(3000):
        sizes = rng.integers(1, 7, 12)
        effect = rng.normal(0, 0.15, 12)
        clusters = np.repeat(np.arange(12), sizes)
        p_a = np.clip(0.6 + effect[clusters] + rng.normal(0, 0.2, len(clusters)), 0, 1)
        w = win_rate(p_a, clusters)
        covered += abs(w["win_rate"] - 0.6) <= w["ci95"]
    # the clip moves the true mean a little below 0.6; the interval is still close to its nominal 95%
    assert 0.91 <= covered / 3000 <= 0.98


def test_unscorable_pairs_are_left_out_and_one_opening_has_no_interval():
    w = win_rate([1.0, np.nan, 0.0, 1.0], ["x", "x", "y", "y"])
    assert (w["win_rate"], w["pairs"], w["clusters"]) == (2 / 3, 3, 2)
    assert np.isnan(win_rate([1.0, 0.0], ["x", "x"])["ci95"])
    assert win_rate([np.nan], ["x"])["pairs"] == 0


def test_position_bias_names_a_judge_that_always_picks_the_first_slot():
    always_first = position_bias(np.ones(8), np.zeros(8))  # a first in one order, b first in the other
    assert always_first == {"consistency": 0.0, "first_slot": 1.0}
    fair = position_bias([0.9, 0.2, 0.7], [0.8, 0.3, 0.6])
    assert fair["consistency"] == 1.0 and abs(fair["first_slot"] - 0.5) < 0.1
