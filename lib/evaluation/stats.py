"""Statistics for comparing methods: accuracy intervals, paired differences over seeds and over
seeds and test clips, the smallest difference a number of seeds can resolve, and the sentence
that reports a difference.

Accuracies and their differences are fractions of 1 (0.034 is 3.4 points); only `verdict`
writes points. scipy does the standard pieces; what is written here is what no library does.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats
from scipy import optimize


def _level(value: float, name: str = "confidence") -> float:
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value}")
    return value


def _scores(x, name: str, *, length: int | None = None) -> np.ndarray:
    """x as a non-empty 1-d float array of finite values, of `length` entries when given."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array, got shape {x.shape}")
    if length is not None and len(x) != length:
        raise ValueError(f"{name} has {len(x)} entries, expected {length} (one per seed)")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def wilson_interval(k: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials.

    Unlike p +- z * se it stays inside [0, 1] and keeps its coverage near 0 % and 100 %.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    ci = scipy.stats.binomtest(int(k), int(n)).proportion_ci(_level(confidence), method="wilson")
    return float(ci.low), float(ci.high)


def verdict(
    name_a: str,
    name_b: str,
    estimate: float,
    low: float,
    high: float,
    *,
    n_comparisons: int = 1,
    confidence: float = 0.95,
) -> str:
    """The sentence reporting a difference a - b with its interval, in points of percent.

    estimate, low and high are fractions (0.034 is 3.4 points). An interval that includes 0
    reads "no resolvable difference". With several comparisons the sentence says how many: the
    interval is not adjusted, so a reader can weigh that one of several may exclude 0 by chance.
    """

    def points(x: float) -> float:
        return round(100 * x, 1) + 0.0  # + 0.0: no "-0.0"

    detail = f"{confidence * 100:g} % interval {points(low):.1f} to {points(high):.1f}"
    if n_comparisons > 1:
        detail += f"; one of {n_comparisons} comparisons"
    sentence = f"{name_a} - {name_b} = {points(estimate):+.1f} points ({detail})"
    return f"no resolvable difference: {sentence}" if low <= 0 <= high else sentence


def paired_difference(
    a,
    b,
    *,
    confidence: float = 0.95,
    names: tuple[str, str] = ("a", "b"),
    n_comparisons: int = 1,
) -> dict:
    """Compare two methods scored on the same seeds: mean of a - b, its t-interval, p-values.

    a and b are accuracies (fractions), entry i of both from seed i. The Wilcoxon signed-rank
    p-value is given from 6 seeds on (below that its smallest possible two-sided p-value exceeds
    0.05), else None. The interval covers seed-to-seed variation only: for the test set's own
    sampling error as well, see hierarchical_bootstrap.
    """
    a = _scores(a, "a")
    b = _scores(b, "b", length=len(a))
    if len(a) < 2:
        raise ValueError("paired_difference needs at least 2 paired scores")
    diff = a - b
    n, mean = len(diff), float(diff.mean())
    # By hand rather than ttest_rel's interval, which is NaN when every difference is the same.
    half = scipy.stats.t.ppf(0.5 + _level(confidence) / 2, n - 1) * scipy.stats.sem(diff)
    low, high = mean - half, mean + half
    tied = not diff.any()  # every difference zero: neither test is defined
    return {
        "n": n,
        "mean_difference": mean,
        "ci": [float(low), float(high)],
        "confidence": confidence,
        "p_ttest": None if tied else float(scipy.stats.ttest_rel(a, b).pvalue),
        "p_wilcoxon": None if tied or n < 6 else float(scipy.stats.wilcoxon(a, b).pvalue),
        "verdict": verdict(
            *names, mean, low, high, n_comparisons=n_comparisons, confidence=confidence
        ),
    }


def resolvable_difference(
    std: float, n: int, *, confidence: float = 0.95, power: float = 0.8
) -> float:
    """Smallest mean paired difference that a two-sided paired t-test on n seeds detects with
    the given power, std being the standard deviation of the per-seed differences.

    Exact, from the noncentral t distribution: with few seeds the normal approximation
    (z_{1-alpha/2} + z_power) std / sqrt(n) is far too optimistic (16.3 std / sqrt(2) instead
    of 2.8 std / sqrt(2) at 2 seeds, 80 % power and alpha 0.05).
    """
    if std < 0 or n < 2:
        raise ValueError(f"need std >= 0 and n >= 2, got std={std}, n={n}")
    alpha = 1 - _level(confidence)
    if not alpha < _level(power, "power"):
        raise ValueError(f"power must exceed alpha = {alpha:g}, got {power}")
    df, root = n - 1, math.sqrt(n)
    critical = scipy.stats.t.ppf(1 - alpha / 2, df)

    def shortfall(effect: float) -> float:  # effect in standard deviations of the differences
        # Both tails through sf: nct.cdf far in the lower tail returns NaN.
        rejected = scipy.stats.nct.sf(critical, df, effect * root)
        return rejected + scipy.stats.nct.sf(critical, df, -effect * root) - power

    high = 1.0
    while shortfall(high) < 0:
        high *= 2
    return std * optimize.brentq(shortfall, 0.0, high, xtol=1e-10)


def _correctness(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    """Two equal non-empty (n_seeds, n_clips) arrays of 0/1, or a ValueError."""
    a, b = np.asarray(correct_a), np.asarray(correct_b)
    if a.ndim != 2 or a.size == 0 or b.shape != a.shape:
        raise ValueError(
            f"need two equal non-empty (n_seeds, n_clips) arrays, got {a.shape}, {b.shape}"
        )
    if not (np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all()):
        raise ValueError("correct_a and correct_b must hold 0/1 (or boolean) values")
    return a, b


def _clip_groups(average: str, labels, n_clips: int) -> list[np.ndarray]:
    """The clips drawn together: all of them (micro), or the clips of each class (macro)."""
    if average == "micro":
        return [np.arange(n_clips)]
    if average == "macro":
        labels = np.asarray(labels)
        if labels.shape != (n_clips,):
            raise ValueError(f"macro needs labels, one per clip ({n_clips}), got {labels.shape}")
        return [np.flatnonzero(labels == c) for c in np.unique(labels)]
    raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")


def _draws(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """How often each of n items is drawn with replacement, in each of n_boot replicates."""
    return rng.multinomial(n, np.full(n, 1 / n), size=n_boot)


def hierarchical_bootstrap(
    correct_a,
    correct_b,
    *,
    labels=None,
    average: str = "micro",
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Percentile bootstrap interval for accuracy(a) - accuracy(b) over seeds and test clips.

    correct_a, correct_b: (n_seeds, n_clips) per-clip correctness (predictions == labels), row s
    of both from seed s, column c from test clip c. A t-interval over per-seed accuracies sees
    seed-to-seed variation only; another test set would move both methods' numbers too, and with
    a few hundred clips that is often the larger part.

    Each replicate draws seeds with replacement and, independently, clips with replacement, the
    same clips for both methods and for every drawn seed (every seed was scored on the same
    test set: drawing clips per seed would average the test set's sampling error away). The
    interval is conservative when the noise of single seed x clip cells dominates, as it can for
    0/1 outcomes: that noise enters through both draws (Owen 2007, "The pigeonhole bootstrap").

    average: "micro", the accuracy over clips, or "macro", the mean per-class recall over the
    classes of labels ((n_clips,) class of each clip, needed for macro). For macro, clips are
    drawn within each class, as in metrics.accuracy_report: the test set's class counts are
    fixed by design, so no class vanishes from a replicate and each keeps its weight.

    Returns the estimate (the difference on the data) and the interval `ci`, as fractions.
    """
    a, b = _correctness(correct_a, correct_b)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    tail = (1 - _level(confidence)) / 2
    n_seeds, n_clips = a.shape
    groups = _clip_groups(average, labels, n_clips)
    # Accuracy as a weighted sum over clips: each group (class) weighs 1 / n_groups, shared
    # among its clips.
    weight = np.empty(n_clips)
    for group in groups:
        weight[group] = 1 / (len(groups) * len(group))
    diff = a.astype(float) - b.astype(float)
    rng = np.random.default_rng(seed)
    seeds_drawn = _draws(rng, n_seeds, n_boot)
    clips_drawn = np.empty((n_boot, n_clips))
    for group in groups:
        clips_drawn[:, group] = _draws(rng, len(group), n_boot)
    replicates = (seeds_drawn @ diff / n_seeds * clips_drawn) @ weight
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return {
        "estimate": float(diff.mean(axis=0) @ weight),
        "ci": [float(low), float(high)],
        "confidence": confidence,
        "average": average,
        "n_seeds": n_seeds,
        "n_clips": n_clips,
        "n_boot": n_boot,
    }
