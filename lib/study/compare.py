"""Two methods compared on runs paired by seed: the t-interval over seeds, and the hierarchical
bootstrap over seeds and test clips, each with its verdict."""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pandas as pd

from aclaudio.evaluation.stats import (
    hierarchical_bootstrap,
    paired_difference,
    resolvable_difference,
    verdict,
)


def compare_paired(
    a: pd.Series, b: pd.Series, names: tuple[str, str], *, n_comparisons: int = 1
) -> dict:
    """Paired comparison of two methods' accuracies (fractions) indexed by seed; only the shared
    seeds count.

    Two or more seeds: stats.paired_difference (t-interval, verdict) and the difference these
    seeds resolve (stats.resolvable_difference at the spread of their differences). One seed:
    the plain difference and a verdict that says no interval can be given.
    """
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds:
        raise ValueError(f"{names[0]} and {names[1]} share no seed")
    a, b = a.loc[seeds].to_numpy(float), b.loc[seeds].to_numpy(float)
    if len(seeds) == 1:
        diff = float(a[0] - b[0])
        verdict = f"one seed: {names[0]} - {names[1]} = {100 * diff:+.1f} points, no interval"
        return {
            "n": 1,
            "mean_difference": diff,
            "ci": None,
            "p_ttest": None,
            "resolvable_difference": None,
            "verdict": verdict,
        }
    result = paired_difference(a, b, names=names, n_comparisons=n_comparisons)
    result["resolvable_difference"] = resolvable_difference(float(np.std(a - b, ddof=1)), len(a))
    keys = ("n", "mean_difference", "ci", "p_ttest", "resolvable_difference", "verdict")
    return {k: result[k] for k in keys}


class Correctness(NamedTuple):
    """Per-clip correctness of two methods' runs paired by seed: rows are seeds, columns the
    test clips (the input of stats.hierarchical_bootstrap)."""

    seeds: list[int]
    a: np.ndarray
    b: np.ndarray
    labels: np.ndarray


def paired_correctness(runs_a: list, runs_b: list) -> Correctness:
    """The (seeds x clips) correctness arrays of two methods' finished runs, from the per-clip
    classes in each run's evaluation.json; only the seeds both methods ran count.

    Every run must have been scored on the same test clips, in the same order: a t-interval
    over seeds ignores the test set's sampling error, a bootstrap over these arrays does not.
    """

    def by_seed(runs: list) -> dict[int, dict]:
        return {
            run.config.seed: json.loads((run.path / "evaluation.json").read_text()) for run in runs
        }

    a, b = by_seed(runs_a), by_seed(runs_b)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("the two lists of runs share no seed")
    reports = [a[s] for s in seeds] + [b[s] for s in seeds]
    if any("y_true" not in r for r in reports):
        raise ValueError("a run's evaluation.json has no per-clip classes: evaluate it again")
    labels = np.asarray(reports[0]["y_true"])
    if any(r["y_true"] != reports[0]["y_true"] for r in reports):
        raise ValueError("the runs were not scored on the same test clips")

    def correct(side: dict) -> np.ndarray:
        return np.array([np.asarray(side[s]["y_pred"]) == labels for s in seeds])

    return Correctness(seeds, correct(a), correct(b), labels)


def compare_runs(
    runs_a: list, runs_b: list, names: tuple[str, str], *, n_comparisons: int = 1
) -> dict:
    """Two methods' runs paired by seed, compared two ways: the t-interval over seeds with the
    difference those seeds resolve (compare_paired), and the hierarchical bootstrap over seeds
    and test clips (stats.hierarchical_bootstrap), each with its verdict."""

    def micro(runs: list) -> pd.Series:
        return pd.Series({run.config.seed: run.summary()["test_micro"] for run in runs})

    seeds = compare_paired(micro(runs_a), micro(runs_b), names, n_comparisons=n_comparisons)
    clips = paired_correctness(runs_a, runs_b)
    boot = hierarchical_bootstrap(clips.a, clips.b)
    return seeds | {
        "bootstrap_ci": boot["ci"],
        "bootstrap_verdict": verdict(
            *names, boot["estimate"], *boot["ci"], n_comparisons=n_comparisons
        ),
        "n_clips": boot["n_clips"],
    }
