"""The study's scale per profile: which runs each notebook asks for.

A profile scales every notebook at once: its training settings are training.profiles.PROFILES
(the same runs as `aclaudio pretrain --profile P`), its grids of seeds, alphas, margins and
subsets are STUDY below. smoke runs in seconds for the tests, cpu runs the whole study on the
built-in dataset on two cores (docs/protocol.md says how long), paper runs FSDnoisy18k with
the full alpha x margin grid and several seeds on a GPU. Notebooks call these functions instead
of building configs themselves, so every notebook of a profile sees the same runs (and reuses
them from the run store).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from aclaudio.training.config import config_row, profile_config
from aclaudio.training.runs import find_run


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
    # notebook 07: the margins tried inside NT-Xent's softmax (radians for the angular margin,
    # cosine units for the cosine one), each at the sweep seeds; the value with the best
    # clean-subset accuracy then runs at `margin_seeds`, as VICReg does (NT-Xent and ACL are
    # notebook 02's runs at `seeds`: the comparisons pair the seeds both methods ran)
    softmax_margins: tuple[float, ...] = (0.1, 0.2, 0.4)
    margin_sweep_seeds: tuple[int, ...] = (0,)
    margin_seeds: tuple[int, ...] = (0, 1, 2)
    # notebook 07's supervised side on the noisy subset (cross-entropy, supervised ACL, SupCon)
    margin_supervised_seeds: tuple[int, ...] = (0, 1, 2)


STUDY = {
    "smoke": StudySettings(
        seeds=(0,),
        alphas=(0.5, 1.0),
        margins=(0.5, 1.0),
        supervised_subsets=("clean", "all"),
        curve_steps=(3, 6),
        softmax_margins=(0.1, 0.4),
        margin_seeds=(0,),
        margin_supervised_seeds=(0,),
    ),
    # cpu: the headline comparison at 5 seeds, a coarse alpha x margin grid at 2, notebook 07's
    # methods at 3 after a sweep of two margins: with the control, the length curve and the
    # supervised runs, what fits about 90 minutes on two fast cores (docs/protocol.md says
    # what was trimmed and why)
    "cpu": StudySettings(
        seeds=(0, 1, 2, 3, 4),
        margins=(0.5, 1.0),
        ablation_seeds=(0, 1),
        supervised_seeds=(0, 1),  # notebook 03 shows its seeds as points
        softmax_margins=(0.1, 0.3),
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
    """Notebook 02's runs per method, paired by seed: random init (NT-Xent's run before any
    step: the initial weights every method starts from at its seed), NT-Xent (ACL at alpha 1)
    and ACL."""
    study = settings(profile)
    methods = {
        "random init": dict(alpha=1.0, epochs=0, steps=0),
        "NT-Xent": dict(alpha=1.0),
        "ACL": dict(alpha=study.acl_alpha),
    }
    return {
        name: [pretrain_config(profile, data_dir, seed=seed, **values) for seed in study.seeds]
        for name, values in methods.items()
    }


def length_curve_config(profile: str, data_dir: str | Path):
    """The run of probe.curve: ACL at seed 0, as long as the last step of the curve, snapshots
    at the others; its own length whatever the profile's, so that it stays in the run store
    when the profile's length is chosen from it."""
    steps = settings(profile).curve_steps
    return pretrain_config(
        profile,
        data_dir,
        alpha=settings(profile).acl_alpha,
        seed=0,
        steps=max(steps),
        snapshot_steps=steps,
    )


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
    return pd.DataFrame([config_row(run.config) | run.summary() for run in runs])


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
                configs.append(
                    pretrain_config(profile, data_dir, seed=seed, alpha=alpha, margin=margin)
                )
    return configs


def control_configs(profile: str, data_dir: str | Path) -> list:
    """The ACL cell of the comparison (acl_alpha, margin 0.5) with each control reduction of
    the angular term, at the ablation seeds (paired with the grid's runs of that cell)."""
    study = settings(profile)
    return [
        pretrain_config(
            profile, data_dir, seed=seed, alpha=study.acl_alpha, margin=0.5, reduction=reduction
        )
        for reduction in study.reduction_controls
        for seed in study.ablation_seeds
    ]


#: Notebook 07's self-supervised methods beside notebook 02's NT-Xent and ACL: the objective
#: of each; the two margins inside the softmax take the margin their sweep chose.
MARGIN_METHODS = {
    "ArcFace NT-Xent": dict(objective="ntxent_arcface"),
    "CosFace NT-Xent": dict(objective="ntxent_cosface"),
    "VICReg": dict(objective="vicreg"),
}
#: Notebook 07's supervised methods on the noisy subset (the first two are notebook 03's).
MARGIN_SUPERVISED_METHODS = {
    "CE": dict(alpha=1.0),
    "ACL (alpha 0.7)": dict(alpha=0.7),
    "SupCon": dict(objective="supcon"),
}


def margin_sweep_configs(profile: str, data_dir: str | Path) -> dict[str, list]:
    """Notebook 07's sweep: per margin-in-the-softmax method, one run per swept margin and
    sweep seed (the value is then chosen on the clean subset, never on the test set)."""
    study = settings(profile)
    return {
        name: [
            pretrain_config(profile, data_dir, seed=seed, margin=margin, **MARGIN_METHODS[name])
            for margin in study.softmax_margins
            for seed in study.margin_sweep_seeds
        ]
        for name in ("ArcFace NT-Xent", "CosFace NT-Xent")
    }


def choose_margins(sweep: dict[str, list]) -> dict[str, float]:
    """Per method, the swept margin whose finished runs have the best mean balanced accuracy on
    the clean subset (the linear evaluation's selection set, never the test set); the smaller
    margin on ties."""
    chosen = {}
    for name, runs in sweep.items():
        scores = pd.DataFrame(
            {"margin": run.config.loss.margin, "clean": run.summary()["probe_select_macro"]}
            for run in runs
        )
        by_margin = scores.groupby("margin")["clean"].mean()
        chosen[name] = float(by_margin[by_margin == by_margin.max()].index.min())
    return chosen


def margin_configs(profile: str, data_dir: str | Path, chosen: dict[str, float]) -> dict[str, list]:
    """Notebook 07's runs per method: notebook 02's NT-Xent and ACL at the study's seeds, then
    MARGIN_METHODS at the margin seeds (a subset of them: every pair shares its seeds);
    `chosen` is the margin of each margin-in-the-softmax method (choose_margins)."""
    study = settings(profile)
    configs = comparison_configs(profile, data_dir)
    del configs["random init"]
    for name, values in MARGIN_METHODS.items():
        margin = {"margin": chosen[name]} if name in chosen else {}
        configs[name] = [
            pretrain_config(profile, data_dir, seed=seed, **values, **margin)
            for seed in study.margin_seeds
        ]
    return configs


def _margin_study(profile: str, data_dir: str | Path, store: str | Path | None) -> list:
    """Every run notebook 07 trains: the sweep, then its methods at the margins the sweep
    chose, as far as the store knows them; before the sweep has finished, the first swept
    margin holds the place of the choice (as many runs, the ones to come unknown)."""
    sweep = margin_sweep_configs(profile, data_dir)
    chosen = dict.fromkeys(sweep, settings(profile).softmax_margins[0])
    if store is not None:
        runs = {name: [find_run(c, store) for c in configs] for name, configs in sweep.items()}
        if all(run.finished for group in runs.values() for run in group):
            chosen = choose_margins(runs)
    ssl = margin_configs(profile, data_dir, chosen)
    supervised = margin_supervised_configs(profile, data_dir)
    return [c for group in (*sweep.values(), *ssl.values(), *supervised.values()) for c in group]


def margin_supervised_configs(profile: str, data_dir: str | Path) -> dict[str, list]:
    """Notebook 07's supervised runs on the noisy subset, per method, paired by seed."""
    study = settings(profile)
    return {
        name: [
            supervised_config(profile, data_dir, subset="noisy", seed=seed, **values)
            for seed in study.margin_supervised_seeds
        ]
        for name, values in MARGIN_SUPERVISED_METHODS.items()
    }


def notebook_configs(
    profile: str, data_dir: str | Path, store: str | Path | None = None
) -> dict[str, list]:
    """The runs each training notebook asks for, by its number (the others train nothing);
    notebook 07's depend on its sweep's results in `store` (_margin_study)."""
    comparison = [c for configs in comparison_configs(profile, data_dir).values() for c in configs]
    controls = control_configs(profile, data_dir)
    return {
        "02": [*comparison, *controls, length_curve_config(profile, data_dir)],
        "03": supervised_configs(profile, data_dir),
        "04": [*ablation_configs(profile, data_dir), *controls],
        "07": _margin_study(profile, data_dir, store),
    }


def all_configs(
    profile: str,
    data_dir: str | Path,
    notebooks: tuple[str, ...] = (),
    store: str | Path | None = None,
) -> list:
    """Every run the notebooks of a profile ask for, or those `notebooks` (numbers, "02") ask
    for (a run some ask for twice, listed twice); `store`: the run store notebook 07's sweep
    is read from."""
    by_notebook = notebook_configs(profile, data_dir, store)
    return [
        c for n, configs in by_notebook.items() if not notebooks or n in notebooks for c in configs
    ]
