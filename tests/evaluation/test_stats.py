"""Statistics for comparing methods, each number checked against an independent computation
(a hand calculation, scipy, brute-force search, explicit resampling loops, simulation)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import optimize, stats
from sklearn.metrics import balanced_accuracy_score

from aclaudio.evaluation.stats import (
    hierarchical_bootstrap,
    paired_difference,
    resolvable_difference,
    verdict,
    wilson_interval,
)

# ----------------------------------------------------------------------------- Wilson interval


def test_wilson_interval_textbook_value():
    # 81 of 263 (Agresti & Coull's example), checked by hand: p = 0.30798, z = 1.95996,
    # centre = (p + z^2/2n) / (1 + z^2/n) = 0.31075, half-width = 0.05546.
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=1e-4)
    assert high == pytest.approx(0.3662, abs=1e-4)


@pytest.mark.parametrize(("k", "n", "confidence"), [(81, 263, 0.95), (3, 10, 0.9), (47, 50, 0.99)])
def test_wilson_interval_inverts_the_score_test(k, n, confidence):
    """Independent check: the interval is where |k/n - p| = z sqrt(p (1 - p) / n)."""
    z = stats.norm.ppf(0.5 + confidence / 2)

    def score(p):
        return abs(k / n - p) - z * math.sqrt(p * (1 - p) / n)

    low = optimize.brentq(score, 1e-12, k / n)
    high = optimize.brentq(score, k / n, 1 - 1e-12)
    assert wilson_interval(k, n, confidence=confidence) == pytest.approx((low, high), abs=1e-9)


def test_wilson_interval_at_the_extremes():
    assert wilson_interval(0, 20)[0] == 0.0
    assert wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(0, 20)[1] == pytest.approx(1 - wilson_interval(20, 20)[0])


@pytest.mark.parametrize(
    ("k", "n", "confidence"), [(1, 0, 0.95), (5, 4, 0.95), (-1, 4, 0.95), (2, 4, 1.0)]
)
def test_wilson_interval_bad_input(k, n, confidence):
    with pytest.raises(ValueError):
        wilson_interval(k, n, confidence=confidence)


# ----------------------------------------------------------------------------- verdict


def test_verdict_sentences():
    assert (
        verdict("ACL", "NT-Xent", -0.034, -0.050, -0.018)
        == "ACL - NT-Xent = -3.4 points (95 % interval -5.0 to -1.8)"
    )
    assert (
        verdict("ACL", "NT-Xent", 0.004, -0.0104, 0.018)
        == "no resolvable difference: ACL - NT-Xent = +0.4 points (95 % interval -1.0 to 1.8)"
    )
    assert verdict("a", "b", 0.02, 0.0, 0.04).startswith("no resolvable")  # 0 is in [0, 0.04]
    assert (
        verdict("a", "b", 0.031, 0.012, 0.05, n_comparisons=3, confidence=0.9)
        == "a - b = +3.1 points (90 % interval 1.2 to 5.0; one of 3 comparisons)"
    )
    assert "= +0.0 points (95 % interval -1.0 to 1.0)" in verdict("a", "b", -1e-4, -0.01, 0.01)


# ----------------------------------------------------------------------------- paired seeds
# Scores are accuracies (fractions): the verdict reports points, so the inputs that used to be
# in percent (70.1) or plain numbers (1, 2, 3, 4) are now divided by 100.


def test_paired_difference_by_hand_and_against_scipy():
    a, b = np.array([0.01, 0.02, 0.03, 0.04]), np.zeros(4)
    result = paired_difference(a, b, names=("acl", "nt_xent"))
    # mean 0.025, sd 0.012910, t(0.975, 3) = 3.1824: 0.025 +- 0.020543
    assert result["mean_difference"] == pytest.approx(0.025)
    assert result["ci"] == pytest.approx([0.004457, 0.045543], abs=1e-6)
    ttest = stats.ttest_rel(a, b)
    assert result["ci"] == pytest.approx(list(ttest.confidence_interval()))
    assert result["p_ttest"] == pytest.approx(ttest.pvalue)
    assert result["p_wilcoxon"] is None  # fewer than 6 seeds
    assert result["verdict"] == "acl - nt_xent = +2.5 points (95 % interval 0.4 to 4.6)"
    json.dumps(result, allow_nan=False)


def test_paired_difference_unresolved_and_wilcoxon():
    a = np.array([0.701, 0.715, 0.698, 0.720, 0.704, 0.711])
    b = np.array([0.705, 0.709, 0.702, 0.714, 0.709, 0.708])
    result = paired_difference(a, b)
    assert result["ci"][0] < 0 < result["ci"][1]
    assert result["verdict"].startswith("no resolvable difference")
    assert result["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    gain = np.array([0.04, 0.05, 0.06, 0.04, 0.05, 0.06])
    reverse = paired_difference(b + gain, b)
    assert reverse["verdict"].startswith("a - b = +5.0 points")
    worse = paired_difference(b, b + gain, names=("x", "y"), n_comparisons=2)
    assert worse["verdict"].startswith("x - y = -5.0 points")
    assert worse["verdict"].endswith("; one of 2 comparisons)")
    same = paired_difference(b, b)
    assert same["ci"] == [0, 0] and same["p_ttest"] is None  # all differences zero: no test
    assert same["verdict"].startswith("no resolvable difference")


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([1.0], [2.0], "at least 2"),
        ([1.0, 2.0], [1.0], "b has 1 entries"),
        ([1, np.nan], [1, 2], "NaN"),
    ],
)
def test_paired_difference_bad_input(a, b, message):
    with pytest.raises(ValueError, match=message):
        paired_difference(np.array(a), np.array(b))


# ----------------------------------------------------------------------------- resolvable


def nct_power(effect, n, alpha=0.05):
    """Power of the two-sided one-sample t-test for effects in SDs (array), from nct's cdf."""
    df, ncp = n - 1, np.asarray(effect) * math.sqrt(n)
    critical = stats.t.ppf(1 - alpha / 2, df)
    return 1 - stats.nct.cdf(critical, df, ncp) + stats.nct.cdf(-critical, df, ncp)


def simulated_power(effect, n, alpha=0.05, trials=40_000):
    """Fraction of simulated paired samples (differences ~ N(effect, 1)) the t-test rejects."""
    diffs = np.random.default_rng(0).normal(effect, 1.0, size=(trials, n))
    return np.mean(stats.ttest_1samp(diffs, 0.0, axis=1).pvalue < alpha)


def test_resolvable_difference_is_t_based():
    # Brute force: the smallest effect on a 1e-4 grid with nct power >= 80 %. For n = 10 this
    # is 0.9960 SDs; the often quoted 0.994 has 79.8 % power (checked with the same nct).
    grid = np.arange(0.9, 1.1, 1e-4)
    brute = grid[np.argmax(nct_power(grid, 10) >= 0.8)]
    assert resolvable_difference(1.0, 10) == pytest.approx(brute, abs=1e-4)
    assert resolvable_difference(1.0, 10) == pytest.approx(0.996, abs=5e-4)
    assert nct_power(0.994, 10) == pytest.approx(0.798, abs=5e-4)
    # Against simulated t-tests (Monte Carlo error 0.002): 80 % power at n = 10 and at n = 2.
    assert simulated_power(resolvable_difference(1.0, 10), 10) == pytest.approx(0.8, abs=0.01)
    assert simulated_power(resolvable_difference(1.0, 2), 2) == pytest.approx(0.8, abs=0.01)
    # Was the normal approximation (1.959964 + 0.841621) / sqrt(n): 1.4008 at n = 4, where the
    # t-test needs 2.1279 (brute force as above); at n = 2, 1.98 against 11.55, almost 6 times.
    grid = np.arange(2.0, 2.3, 1e-4)
    assert resolvable_difference(1.0, 4) == pytest.approx(
        grid[np.argmax(nct_power(grid, 4) >= 0.8)], abs=1e-4
    )
    assert resolvable_difference(1.0, 2) > 5 * 2.801585 / math.sqrt(2)
    delta = resolvable_difference(3.2, 20, confidence=0.9, power=0.9)
    assert nct_power(delta / 3.2, 20, alpha=0.1) == pytest.approx(0.9)  # the power
    assert resolvable_difference(0.0, 3) == 0.0
    with pytest.raises(ValueError):
        resolvable_difference(-1.0, 4)
    with pytest.raises(ValueError):
        resolvable_difference(1.0, 4, power=1.0)
    with pytest.raises(ValueError, match="n >= 2"):
        resolvable_difference(1.0, 1)


# ----------------------------------------------------------------------------- bootstrap


def explicit_bootstrap(a, b, labels, *, average, n_boot, rng):
    """The definition, one replicate at a time: draw seeds, then clips (within each class for
    macro), the same clips for every drawn seed and both methods."""
    classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    replicates = []
    for _ in range(n_boot):
        seeds = rng.integers(len(a), size=len(a))
        if average == "micro":
            clips = rng.integers(a.shape[1], size=a.shape[1])
            replicates.append(a[seeds][:, clips].mean() - b[seeds][:, clips].mean())
        else:
            picks = [rng.choice(members, size=len(members)) for members in classes]
            recall_a = [a[seeds][:, p].mean() for p in picks]
            recall_b = [b[seeds][:, p].mean() for p in picks]
            replicates.append(np.mean(recall_a) - np.mean(recall_b))
    return np.quantile(replicates, [0.025, 0.975])


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_hierarchical_bootstrap_matches_explicit_resampling(average):
    rng = np.random.default_rng(3)
    labels = rng.integers(4, size=60)
    a = rng.random((5, 60)) < 0.7
    b = rng.random((5, 60)) < 0.6
    result = hierarchical_bootstrap(a, b, labels=labels, average=average, n_boot=4000, seed=1)
    # Monte Carlo error of each bound is about 0.003.
    expected = explicit_bootstrap(a, b, labels, average=average, n_boot=4000, rng=rng)
    assert result["ci"] == pytest.approx(expected, abs=0.012)
    if average == "micro":
        assert result["estimate"] == pytest.approx(a.mean() - b.mean())
    else:  # the mean over seeds of each seed's balanced accuracy, as scikit-learn computes it
        balanced = [
            balanced_accuracy_score(labels, np.where(row_a, labels, (labels + 1) % 4))
            - balanced_accuracy_score(labels, np.where(row_b, labels, (labels + 1) % 4))
            for row_a, row_b in zip(a, b, strict=True)
        ]
        assert result["estimate"] == pytest.approx(np.mean(balanced))
    assert result == hierarchical_bootstrap(
        a, b, labels=labels, average=average, n_boot=4000, seed=1
    )
    json.dumps(result, allow_nan=False)


def test_hierarchical_bootstrap_collapses_without_noise():
    ones, zeros = np.ones((5, 200), bool), np.zeros((5, 200), bool)
    assert hierarchical_bootstrap(ones, zeros)["ci"] == pytest.approx([1, 1])  # constant difference
    same = np.random.default_rng(0).random((5, 200)) < 0.7
    assert hierarchical_bootstrap(same, same)["ci"] == [0.0, 0.0]
    # Every seed gets the same per-clip results: only the clips vary, and the interval is the
    # clip bootstrap's, about estimate +- 1.96 sd(difference per clip) / sqrt(n_clips).
    rng = np.random.default_rng(1)
    a, b = rng.random(1000) < 0.75, rng.random(1000) < 0.7
    diff = a.astype(float) - b
    result = hierarchical_bootstrap(np.tile(a, (5, 1)), np.tile(b, (5, 1)), n_boot=4000)
    half = 1.96 * diff.std() / math.sqrt(1000)
    assert result["estimate"] == pytest.approx(diff.mean())
    assert result["ci"] == pytest.approx([diff.mean() - half, diff.mean() + half], abs=0.003)


def test_hierarchical_bootstrap_macro_keeps_every_class():
    """A class of one clip, won by a on every seed, counts 1 / 2 in every replicate; drawing
    clips regardless of class would lose it from about a third of the replicates."""
    labels = np.array([0] + [1] * 99)
    a = np.zeros((3, 100), bool)
    a[:, 0] = True
    result = hierarchical_bootstrap(a, np.zeros_like(a), labels=labels, average="macro")
    assert result["estimate"] == pytest.approx(0.5)
    assert result["ci"] == pytest.approx([0.5, 0.5])


def simulate(rng, n_seeds, n_clips, delta):
    """Per-clip correctness of two methods whose true accuracy difference is delta: clips differ
    in difficulty and in which method they favour, seeds shift each method's accuracy."""
    base = rng.uniform(0.3, 0.7, n_clips)
    gain = rng.uniform(-0.15, 0.15, n_clips)
    p_a = base + (delta + gain) / 2 + rng.uniform(-0.05, 0.05, (n_seeds, 1))
    p_b = base - (delta + gain) / 2 + rng.uniform(-0.05, 0.05, (n_seeds, 1))
    return rng.random(p_a.shape) < p_a, rng.random(p_b.shape) < p_b


def test_hierarchical_bootstrap_coverage():
    """Over 200 simulated studies of 10 seeds x 300 clips the interval holds the true difference
    at least about 95 % of the time. It is conservative here (98.5 %, 1.3 times the width the
    spread of the estimates calls for): each seed x clip cell's own noise, large for 0/1
    outcomes, enters through the seed draw, the clip draw and both together."""
    rng = np.random.default_rng(0)
    results = [
        hierarchical_bootstrap(*simulate(rng, 10, 300, 0.03), n_boot=300, seed=i)
        for i in range(200)
    ]
    low, high = np.array([r["ci"] for r in results]).T
    assert np.mean((low <= 0.03) & (0.03 <= high)) >= 0.93
    spread = np.std([r["estimate"] for r in results])
    assert 1.0 < np.mean(high - low) / (2 * 1.96 * spread) < 1.4


def test_hierarchical_bootstrap_wider_than_seed_t_interval_with_few_clips():
    """Seeds agree on which of 40 clips each method gets right: the per-seed accuracies hardly
    vary, so a t-interval over seeds is narrow, yet another 40 clips would change the result."""
    rng = np.random.default_rng(2)
    b = np.tile(rng.random(40) < 0.6, (5, 1))
    a = b ^ np.tile(rng.random(40) < 0.3, (5, 1))  # a differs from b on the same clips
    a[np.arange(5), rng.integers(40, size=5)] ^= True  # and a little per seed
    seed_only = paired_difference(a.mean(axis=1), b.mean(axis=1))["ci"]
    both = hierarchical_bootstrap(a, b)["ci"]
    assert both[1] - both[0] > 3 * (seed_only[1] - seed_only[0])


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "message"),
    [
        (np.ones((2, 3)), np.ones((2, 4)), {}, "equal non-empty"),
        (np.ones(3), np.ones(3), {}, "equal non-empty"),
        (np.full((2, 3), 0.5), np.ones((2, 3)), {}, "0/1"),
        (np.ones((2, 3)), np.ones((2, 3)), {"average": "macro"}, "labels"),
        (np.ones((2, 3)), np.ones((2, 3)), {"average": "weighted"}, "micro"),
        (np.ones((2, 3)), np.ones((2, 3)), {"n_boot": 0}, "n_boot"),
    ],
)
def test_hierarchical_bootstrap_bad_input(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        hierarchical_bootstrap(a, b, **kwargs)
