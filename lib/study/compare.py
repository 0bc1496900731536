"""Two methods compared on runs paired by seed: the t-interval over seeds, and the interval over
seeds and test clips (stats.seed_clip_interval), each with its verdict; fewer than
stats.MIN_SEEDS seeds describe a direction only."""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pandas as pd

from aclaudio.evaluation.stats import (
    MIN_SEEDS,
    paired_difference,
    resolvable_difference,
    resolved,
    seed_clip_interval,
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
        return {
            "n": 1,
            "mean_difference": diff,
            "ci": None,
            "p_ttest": None,
            "resolvable_difference": None,
            "verdict": verdict(*names, diff, None, None, n_seeds=1),
        }
    result = paired_difference(a, b, names=names, n_comparisons=n_comparisons)
    spread = float(np.std(a - b, ddof=1))
    result["resolvable_difference"] = (
        resolvable_difference(spread, len(a)) if len(a) >= MIN_SEEDS else None
    )
    keys = ("n", "mean_difference", "ci", "p_ttest", "resolvable_difference", "verdict")
    return {k: result[k] for k in keys}


class Correctness(NamedTuple):
    """Per-clip correctness of two methods' runs paired by seed: rows are seeds, columns the
    test clips (the input of stats.seed_clip_interval), with each clip's class and patches."""

    seeds: list[int]
    a: np.ndarray
    b: np.ndarray
    labels: np.ndarray
    patches: np.ndarray


def paired_correctness(runs_a: list, runs_b: list) -> Correctness:
    """The (seeds x clips) correctness arrays of two methods' finished runs, from the per-clip
    classes in each run's evaluation.json; only the seeds both methods ran count.

    Every run must have been scored on the same test clips, in the same order: a t-interval
    over seeds ignores the test set's sampling error, an interval over these arrays does not.
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
    if any("y_true" not in r or "patches" not in r for r in reports):
        raise ValueError(
            "a run's evaluation.json has no per-clip classes or patch counts: evaluate it again "
            "(aclaudio linear-eval RUN_DIR)"
        )
    labels = np.asarray(reports[0]["y_true"])
    same = ("y_true", "patches")
    if any(r[key] != reports[0][key] for r in reports for key in same):
        raise ValueError("the runs were not scored on the same test clips and patches")

    def correct(side: dict) -> np.ndarray:
        return np.array([np.asarray(side[s]["y_pred"]) == labels for s in seeds])

    patches = np.asarray(reports[0]["patches"])
    return Correctness(seeds, correct(a), correct(b), labels, patches)


def compare_runs(
    runs_a: list,
    runs_b: list,
    names: tuple[str, str],
    *,
    n_comparisons: int = 1,
    accuracy: str = "micro",
) -> dict:
    """Two methods' runs paired by seed, compared two ways: the t-interval over seeds with the
    difference those seeds resolve (compare_paired), and the interval over seeds and test
    clips (stats.seed_clip_interval), each with its verdict; `resolved` when both exclude 0 on
    MIN_SEEDS seeds or more.

    accuracy: "micro", each clip counts once, or "patch_weighted", each clip by its patches (the
    authors' `top1.avg`).
    """
    column = {"micro": "test_micro", "patch_weighted": "test_patch_weighted"}[accuracy]

    def scores(runs: list) -> pd.Series:
        return pd.Series({run.config.seed: run.summary()[column] for run in runs})

    seeds = compare_paired(scores(runs_a), scores(runs_b), names, n_comparisons=n_comparisons)
    clips = paired_correctness(runs_a, runs_b)
    weights = clips.patches if accuracy == "patch_weighted" else None
    both = seed_clip_interval(clips.a, clips.b, weights=weights)
    low, high = both["ci"] or (None, None)
    sentence = verdict(
        *names, both["estimate"], low, high, n_seeds=both["n_seeds"], n_comparisons=n_comparisons
    )
    return seeds | {
        "seeds_clips_ci": both["ci"],
        "seeds_clips_verdict": sentence,
        "n_clips": both["n_clips"],
        "resolved": resolved(seeds["ci"], seeds["n"]) and resolved(both["ci"], both["n_seeds"]),
        "accuracy": accuracy,
    }
