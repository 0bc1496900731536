"""Statistics for comparing methods: accuracy intervals, paired differences over seeds and over
seeds and test clips, the smallest difference a number of seeds can resolve, and the sentence
that reports a difference.

Accuracies and their differences are fractions of 1 (0.034 is 3.4 points); only `verdict`
writes points. scipy does the standard pieces; what is written here is what no library does.
Fewer than MIN_SEEDS seeds describe a direction and never resolve a difference: with two, the
t-interval has one degree of freedom and a verdict would rest on one spread.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import scipy.stats
from scipy import optimize

#: Seeds below which a comparison is descriptive: it shows a direction, never a verdict.
MIN_SEEDS = 3


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
    low: float | None,
    high: float | None,
    *,
    n_seeds: int,
    n_comparisons: int = 1,
    confidence: float = 0.95,
) -> str:
    """The sentence reporting a difference a - b with its interval, in points of percent.

    estimate, low and high are fractions (0.034 is 3.4 points; low and high None: no interval).
    With fewer than MIN_SEEDS seeds the sentence is labelled descriptive and says no more: a
    direction. From MIN_SEEDS on, an interval that includes 0 reads "no resolvable difference".
    With several comparisons the sentence says how many: the interval is not adjusted, so a
    reader can weigh that one of several may exclude 0 by chance.
    """
    sentence = f"{name_a} - {name_b} = {points(estimate)} points"
    if low is not None:
        bounds = f"{_one_decimal(low, signed=False)} to {_one_decimal(high, signed=False)}"
        sentence += f" ({confidence * 100:g} % interval {bounds}"
        sentence += f"; one of {n_comparisons} comparisons)" if n_comparisons > 1 else ")"
    if n_seeds < MIN_SEEDS:
        return f"descriptive ({seeds(n_seeds)}): {sentence}" + (
            "" if low is not None else ", no interval"
        )
    return sentence if resolved([low, high], n_seeds) else f"no resolvable difference: {sentence}"


def seeds(n: int) -> str:
    """A count of seeds in words, the one wording the study uses: 1 -> "1 seed", 3 -> "3 seeds"."""
    return f"{n} seed{'s' if n != 1 else ''}"


def points(x: float) -> str:
    """A difference (a fraction) in points with its sign and one decimal: 0.0345 -> "+3.5".
    The one rounding of every difference the study writes: half away from zero, of the
    shortest decimal that reads back as the float, so one number always reads the same."""
    return _one_decimal(x, signed=True)


def percent(x: float) -> str:
    """An accuracy (a fraction) in percent with one decimal: 0.7685 -> "76.9"; the one
    rounding of every accuracy the study writes (as `points`)."""
    return _one_decimal(x, signed=False)


def _one_decimal(fraction: float, *, signed: bool) -> str:
    value = (100 * Decimal(repr(float(fraction)))).quantize(Decimal("0.1"), ROUND_HALF_UP)
    text = f"{value + 0:.1f}".replace("-0.0", "0.0")  # no negative zero
    return "+" + text if signed and not text.startswith("-") else text


def resolved(ci, n_seeds: int) -> bool:
    """Whether an interval resolves a difference: it excludes 0 and rests on MIN_SEEDS seeds or
    more."""
    return (
        n_seeds >= MIN_SEEDS
        and ci is not None
        and not any(v is None or math.isnan(v) for v in ci)
        and not ci[0] <= 0 <= ci[1]
    )


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
    sampling error as well, see seed_clip_interval.
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
    same = np.ptp(diff) <= 1e-12  # every difference equal (to rounding): no t statistic
    return {
        "n": n,
        "mean_difference": mean,
        "ci": [float(low), float(high)],
        "confidence": confidence,
        "p_ttest": None if same else float(scipy.stats.ttest_rel(a, b).pvalue),
        "p_wilcoxon": None if tied or n < 6 else float(scipy.stats.wilcoxon(a, b).pvalue),
        "verdict": verdict(
            *names, mean, low, high, n_seeds=n, n_comparisons=n_comparisons, confidence=confidence
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


def seed_clip_interval(correct_a, correct_b, *, weights=None, confidence: float = 0.95) -> dict:
    """Interval for accuracy(a) - accuracy(b) over seeds and test clips: how far another set of
    seeds and another test set of the same size would move the difference.

    correct_a, correct_b: (n_seeds, n_clips) per-clip correctness (predictions == labels), row s
    of both from seed s, column c from test clip c (every seed scored on the same clips).
    weights: one per clip (the patches of each, for the authors' patch-weighted accuracy);
    None weighs every clip the same.

    The model: the difference on clip c at seed s is delta + u_s + v_c + e_sc, a seed effect,
    a clip effect that every seed shares, and noise. The paired t-interval over the seeds'
    accuracies sees var(u)/S + var(e)/(SC) and misses the test set's var(v)/C, which more seeds
    never average away. That clip part is estimated from the two-way analysis of variance
    (crossed random effects: var(v) = (MS_clips - MS_residual) / S, floored at 0; Searle,
    Casella and McCulloch, *Variance Components*, 1992). Each part gets its own quantile, t
    with S - 1 degrees of freedom for the seeds' and normal for the clips' (its hundreds of
    degrees of freedom), and the two half-widths add in quadrature: exactly the paired
    t-interval without a clip effect, the normal interval on the clip means without a seed
    effect. Welch-Satterthwaite's pooled degrees of freedom are too noisy at two seeds, and a
    bootstrap over seeds and clips is too narrow with few seeds; tests/evaluation/test_stats.py
    checks the coverage of this one, docs/protocol.md (*Intervals*) lists it.

    Returns the estimate, the interval `ci` (None with one seed: the seeds' part is unknown),
    the two standard errors and the counts, as fractions.
    """
    a, b = _correctness(correct_a, correct_b)
    n_seeds, n_clips = a.shape
    w = np.ones(n_clips) if weights is None else _scores(weights, "weights", length=n_clips)
    if (w <= 0).any():
        raise ValueError("weights must be positive (one per clip: its patches)")
    w = w / w.sum()
    x = a.astype(float) - b.astype(float)
    per_seed = x @ w
    result = {
        "estimate": float(per_seed.mean()),
        "ci": None,
        "seed_se": None,
        "clip_se": None,
        "confidence": confidence,
        "n_seeds": n_seeds,
        "n_clips": n_clips,
    }
    if n_seeds < 2:
        return result
    seed_var = float(per_seed.var(ddof=1)) / n_seeds
    clip_var = _clip_effect_variance(x) * float((w**2).sum())
    tail = 0.5 + _level(confidence) / 2
    half = math.sqrt(
        scipy.stats.t.ppf(tail, n_seeds - 1) ** 2 * seed_var
        + scipy.stats.norm.ppf(tail) ** 2 * clip_var
    )
    estimate = result["estimate"]
    return result | {
        "ci": [estimate - half, estimate + half],
        "seed_se": math.sqrt(seed_var),
        "clip_se": math.sqrt(clip_var),
    }


def _clip_effect_variance(x: np.ndarray) -> float:
    """var(v), the clips' own effect in a two-way (seeds x clips) table without replication:
    (MS_clips - MS_residual) / n_seeds, floored at 0."""
    n_seeds, n_clips = x.shape
    rows, cols, grand = x.mean(1), x.mean(0), x.mean()
    if n_clips < 2:
        return 0.0
    ms_clips = n_seeds * float(((cols - grand) ** 2).sum()) / (n_clips - 1)
    residual = x - rows[:, None] - cols[None, :] + grand
    ms_residual = float((residual**2).sum()) / ((n_seeds - 1) * (n_clips - 1))
    return max(ms_clips - ms_residual, 0.0) / n_seeds


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
