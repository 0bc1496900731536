"""The study's per-profile run lists and the paired comparison used by the notebooks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aclaudio import stats as stats_
from aclaudio import study
from aclaudio.profiles import PROFILES
from aclaudio.runs import RUNS_ENV


def test_ablation_grid_spans_both_axes_with_paired_seeds(tmp_path):
    configs = study.ablation_configs("cpu", tmp_path)
    settings = study.settings("cpu")
    per_seed = len([a for a in settings.alphas if a < 1]) * len(settings.margins) + 1
    assert len(configs) == per_seed * len(settings.ablation_seeds)
    assert {c.margin for c in configs} == set(settings.margins)
    assert {c.alpha for c in configs} == set(settings.alphas)
    assert len({(c.alpha, c.margin) for c in configs if c.alpha == 1}) == 1  # margin moot
    nt_xent = study.comparison_configs("cpu", tmp_path)["NT-Xent"][0]
    assert nt_xent in configs  # notebook 02's NT-Xent run is the grid's: trained once
    assert all(c.steps == PROFILES["cpu"]["pretrain"]["steps"] for c in configs)
    paper = study.ablation_configs("paper", tmp_path)
    assert {c.alpha for c in paper} == {round(0.1 * i, 1) for i in range(11)}
    assert {c.encoder for c in paper} == {"resnet18"}


def test_comparison_runs_are_paired_by_seed(tmp_path):
    methods = study.comparison_configs("cpu", tmp_path)
    assert list(methods) == ["random init", "NT-Xent", "ACL"]
    seeds = [[c.seed for c in configs] for configs in methods.values()]
    assert seeds[0] == seeds[1] == seeds[2] == list(study.settings("cpu").seeds)
    assert {(c.epochs, c.steps) for c in methods["random init"]} == {(0, 0)}
    assert len(methods["ACL"]) >= 5


def test_control_and_length_curve_runs(tmp_path):
    settings = study.settings("cpu")
    controls = study.control_configs("cpu", tmp_path)
    assert [(c.seed, c.reduction) for c in controls] == [
        (s, "mean") for s in settings.ablation_seeds
    ]
    acl = {
        c.seed: c
        for c in study.ablation_configs("cpu", tmp_path)
        if c.alpha == 0.3 and c.margin == 0.5
    }
    assert all(dataclasses.replace(c, reduction="sum/25") == acl[c.seed] for c in controls)
    curve = study.length_curve_config("cpu", tmp_path)
    assert curve.steps == max(settings.curve_steps) >= PROFILES["cpu"]["pretrain"]["steps"]
    assert curve.snapshot_steps == settings.curve_steps and curve.alpha == settings.acl_alpha
    with pytest.raises(ValueError, match="unknown profile 'big'"):
        study.settings("big")


def test_compare_paired():
    a = pd.Series([0.80, 0.82, 0.79], index=[0, 1, 2])
    b = pd.Series([0.78, 0.80, 0.80, 0.5], index=[0, 1, 2, 3])  # seed 3 has no partner
    result = study.compare_paired(a, b, ("ACL", "NT-Xent"))
    assert result["n"] == 3
    assert result["mean_difference"] == pytest.approx(0.01)
    expected = stats.ttest_rel([0.80, 0.82, 0.79], [0.78, 0.80, 0.80]).pvalue
    assert result["p_ttest"] == pytest.approx(expected)
    assert result["verdict"].startswith("no resolvable difference: ACL - NT-Xent = +1.0 points")
    # t-based: 3.2640 SDs of the differences at 3 seeds (nct, checked in test_stats.py)
    sd = np.std([0.02, 0.02, -0.01], ddof=1)
    assert result["resolvable_difference"] == pytest.approx(stats_.resolvable_difference(sd, 3))
    assert result["resolvable_difference"] == pytest.approx(3.2640 * sd, rel=1e-4)
    three = study.compare_paired(a, b, ("ACL", "NT-Xent"), n_comparisons=3)
    assert three["verdict"].endswith("; one of 3 comparisons)")
    one = study.compare_paired(a.loc[[0]], b, ("ACL", "NT-Xent"))
    assert (
        one["n"] == 1
        and one["mean_difference"] == pytest.approx(0.02)
        and "one seed" in one["verdict"]
        and one["resolvable_difference"] is None
    )
    with pytest.raises(ValueError, match="share no seed"):
        study.compare_paired(a, pd.Series([0.5], index=[9]), ("x", "y"))


def test_setup_gives_every_notebook_the_same_start(tmp_path, monkeypatch):
    monkeypatch.delenv(RUNS_ENV, raising=False)
    results, data_dir, runs_dir, settings = study.setup(
        "smoke", str(tmp_path / "data"), "", str(tmp_path / "results")
    )
    assert results == tmp_path / "results" / "smoke" and (results / "figures").is_dir()
    assert data_dir == str(tmp_path / "data") and runs_dir == study.REPO / "runs"
    assert settings == study.settings("smoke")
    no_data = study.setup("smoke", "", str(tmp_path / "r"), str(tmp_path), needs_data=False)
    assert no_data.data_dir == "" and no_data.runs_dir == tmp_path / "r"
