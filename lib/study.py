"""The study's scale per profile: which runs each notebook asks for, and where results go.

A profile scales every notebook at once: its training settings are profiles.PROFILES (the same
runs as `aclaudio pretrain --profile P`), its grids of seeds, alphas, margins and subsets are
STUDY below. smoke runs in seconds for the tests, cpu runs the whole study on the built-in
dataset in about an hour and a half on two idle cores, paper runs FSDnoisy18k with the full
alpha x margin grid and several seeds on a GPU. Notebooks call these functions instead of
building configs themselves, so every notebook of a profile sees the same runs (and reuses
them from the run store).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .atomic import atomic_write_text
from .config import config_dict, profile_config
from .plots import use_style
from .runs import RUNS_ENV
from .stats import hierarchical_bootstrap, paired_difference, resolvable_difference, verdict
from .synth import synthesize

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StudySettings:
    seeds: tuple[int, ...]
    acl_alpha: float = 0.3  # the ACL run compared with NT-Xent (the paper's best alpha)
    alphas: tuple[float, ...] = (0.0, 0.3, 0.7, 1.0)  # ablation grid
    margins: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
    ablation_seeds: tuple[int, ...] = (0,)
    supervised_subsets: tuple[str, ...] = ("clean", "noisy", "noisy_small", "all")
    supervised_alphas: tuple[float, ...] = (0.7, 1.0)
    supervised_seeds: tuple[int, ...] = (0,)
    # the ACL cell (acl_alpha, m 0.5) again with these reductions of the angular term, at the
    # ablation seeds: "mean" keeps the terms' balance whatever the batch ("sum/25" is the
    # paper's balance at its batch of 128, which the cpu profile keeps)
    reduction_controls: tuple[str, ...] = ("mean",)
    # one long ACL run (seed 0) probed at these steps: how long pretraining must be
    curve_steps: tuple[int, ...] = (100, 250, 500, 1000, 1500, 2000)


STUDY = {
    "smoke": StudySettings(
        seeds=(0,),
        alphas=(0.5, 1.0),
        margins=(0.5, 1.0),
        supervised_subsets=("clean", "all"),
        curve_steps=(3, 6),
    ),
    # cpu: the headline comparison at 5 seeds, a coarse alpha x margin grid at 2 (with the
    # control, the length curve and the supervised runs under 90 minutes on two idle cores; a
    # third margin, 0.25, would add 4 runs of about 165 s each and pass that budget)
    "cpu": StudySettings(
        seeds=(0, 1, 2, 3, 4),
        margins=(0.5, 1.0),
        ablation_seeds=(0, 1),
        supervised_seeds=(0, 1),  # notebook 03 shows its seeds as points
    ),
    "paper": StudySettings(
        seeds=(0, 1, 2),
        alphas=tuple(round(0.1 * i, 1) for i in range(11)),
        ablation_seeds=(0, 1, 2),
        supervised_alphas=tuple(round(0.1 * i, 1) for i in range(1, 11)),
        supervised_seeds=(0, 1, 2),
    ),
}


def settings(profile: str) -> StudySettings:
    if profile not in STUDY:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(STUDY)}")
    return STUDY[profile]


def pretrain_config(profile: str, data_dir: str | Path, **overrides: Any):
    """A pretraining config of the profile, with overrides."""
    return profile_config("pretrain", profile, data_dir=str(Path(data_dir).resolve()), **overrides)


def supervised_config(profile: str, data_dir: str | Path, **overrides: Any):
    """A supervised config of the profile, with overrides."""
    return profile_config(
        "supervised", profile, data_dir=str(Path(data_dir).resolve()), **overrides
    )


def comparison_configs(profile: str, data_dir: str | Path) -> dict[str, list]:
    """Notebook 02's runs per method, paired by seed: random init, NT-Xent and ACL."""
    study = settings(profile)
    methods = {"random init": dict(epochs=0, steps=0), "NT-Xent": dict(alpha=1.0),
               "ACL": dict(alpha=study.acl_alpha)}  # fmt: skip
    return {
        name: [pretrain_config(profile, data_dir, seed=seed, **values) for seed in study.seeds]
        for name, values in methods.items()
    }


def length_curve_config(profile: str, data_dir: str | Path):
    """The run of probe.curve: ACL at seed 0, as long as the last step of the curve, snapshots
    at the others; its own length whatever the profile's, so that it stays in the run store
    when the profile's length is chosen from it."""
    steps = settings(profile).curve_steps
    return pretrain_config(profile, data_dir, alpha=settings(profile).acl_alpha, seed=0,
                           steps=max(steps), snapshot_steps=steps)  # fmt: skip


def supervised_configs(profile: str, data_dir: str | Path) -> list:
    """Notebook 03's runs: every training subset x alpha (1 = cross-entropy) x seed."""
    study = settings(profile)
    return [
        supervised_config(profile, data_dir, subset=subset, alpha=alpha, seed=seed)
        for subset in study.supervised_subsets
        for alpha in study.supervised_alphas
        for seed in study.supervised_seeds
    ]


def summaries(runs: list) -> pd.DataFrame:
    """One row per finished run: its config and its summary (accuracies with intervals...)."""
    return pd.DataFrame([config_dict(run.config) | run.summary() for run in runs])


def ablation_configs(profile: str, data_dir: str | Path) -> list:
    """The alpha x margin grid with paired seeds; alpha = 1 (NT-Xent, no margin) once a seed."""
    study = settings(profile)
    configs = []
    for seed in study.ablation_seeds:
        for alpha in study.alphas:
            if alpha == 1:  # NT-Xent: the margin is moot, keep the default (the run of 02)
                configs.append(pretrain_config(profile, data_dir, seed=seed, alpha=alpha))
                continue
            for margin in study.margins:
                configs.append(pretrain_config(profile, data_dir, seed=seed, alpha=alpha,
                                               margin=margin))  # fmt: skip
    return configs


def control_configs(profile: str, data_dir: str | Path) -> list:
    """The ACL cell of the comparison (acl_alpha, margin 0.5) with each control reduction of
    the angular term, at the ablation seeds (paired with the grid's runs of that cell)."""
    study = settings(profile)
    return [
        pretrain_config(
            profile, data_dir, seed=seed, alpha=study.acl_alpha, margin=0.5, reduction=reduction
        )  # fmt: skip
        for reduction in study.reduction_controls
        for seed in study.ablation_seeds
    ]


def results_dir(profile: str, root: str | Path | None = None) -> Path:
    """results/<profile>/ of this checkout (figures/, tables/, notebooks/ beneath)."""
    path = Path(root or REPO / "results") / profile
    (path / "figures").mkdir(parents=True, exist_ok=True)
    (path / "tables").mkdir(parents=True, exist_ok=True)
    return path


def write_metrics(results: str | Path, notebook: str, metrics: dict[str, float]) -> Path:
    """Record a notebook's key numbers in tables/<notebook>.metrics.json (checked by the tests)."""
    path = Path(results) / "tables" / f"{notebook}.metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({k: float(v) for k, v in metrics.items()}, indent=1))
    return path


def builtin_data(profile: str, root: str | Path | None = None) -> str:
    """The built-in dataset of a profile (smoke for smoke, cpu otherwise), generated if missing."""
    size = "smoke" if profile == "smoke" else "cpu"
    path = Path(root or REPO / "data") / f"builtin-{size}"
    synthesize(path, profile=size, seed=0, progress=False)
    return str(path)


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
        return {"n": 1, "mean_difference": diff, "ci": None, "p_ttest": None,
                "resolvable_difference": None, "verdict": verdict}  # fmt: skip
    result = paired_difference(a, b, names=names, n_comparisons=n_comparisons)
    result["resolvable_difference"] = resolvable_difference(float(np.std(a - b, ddof=1)), len(a))
    keys = ("n", "mean_difference", "ci", "p_ttest", "resolvable_difference", "verdict")
    return {k: result[k] for k in keys}


def run_store(path: str | Path | None = None) -> Path:
    """The run store for notebooks: the argument, else $ACLAUDIO_RUNS, else runs/ of this
    checkout (not of the notebook's working folder)."""
    return Path(path or os.environ.get(RUNS_ENV) or REPO / "runs")


def _warning_without_path(message, category, filename, lineno, line=None) -> str:
    """A warning as its category and message: in a notebook, the file that raised it is a path
    of the machine that ran it, which a reader of the executed copy has no use for."""
    return f"{category.__name__}: {message}\n"


class Setup(NamedTuple):
    """What every notebook works with: where its results go, its dataset, its run store and
    the study's grids for its profile."""

    results: Path
    data_dir: str
    runs_dir: Path
    settings: StudySettings


def setup(
    profile: str,
    data_dir: str = "",
    runs_dir: str = "",
    results_root: str = "",
    *,
    needs_data: bool = True,
) -> Setup:
    """The first cell of every notebook, from its papermill parameters (empty: the default).

    The dataset defaults to the profile's built-in one, generated on first use (not for a
    notebook that reads no dataset: needs_data=False); figures take the project's style.
    """
    use_style()
    warnings.formatwarning = _warning_without_path
    return Setup(
        results=results_dir(profile, results_root or None),
        data_dir=data_dir or (builtin_data(profile) if needs_data else ""),
        runs_dir=run_store(runs_dir or None),
        settings=settings(profile),
    )


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
        return {run.config.seed: json.loads((run.path / "evaluation.json").read_text())
                for run in runs}  # fmt: skip

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


def compare_runs(runs_a: list, runs_b: list, names: tuple[str, str], *,
                 n_comparisons: int = 1) -> dict:  # fmt: skip
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
