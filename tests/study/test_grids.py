"""The study's per-profile run lists and the paired comparison used by the notebooks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aclaudio.data.folders import RUNS_ENV
from aclaudio.evaluation import stats as stats_
from aclaudio.study import compare, grids
from aclaudio.study.setup import setup
from aclaudio.training.profiles import PROFILES
from aclaudio.training.runs import open_run


def test_ablation_grid_spans_both_axes_with_paired_seeds(tmp_path):
    configs = grids.ablation_configs("cpu", tmp_path)
    settings = grids.settings("cpu")
    per_seed = len([a for a in settings.alphas if a < 1]) * len(settings.margins) + 1
    assert len(configs) == per_seed * len(settings.ablation_seeds)
    assert {c.loss.margin for c in configs} == set(settings.margins)
    assert {c.loss.alpha for c in configs} == set(settings.alphas)
    assert (
        len({(c.loss.alpha, c.loss.margin) for c in configs if c.loss.alpha == 1}) == 1
    )  # margin moot
    nt_xent = grids.comparison_configs("cpu", tmp_path)["NT-Xent"][0]
    assert nt_xent in configs  # notebook 02's NT-Xent run is the grid's: trained once
    assert all(c.steps == PROFILES["cpu"]["pretrain"]["steps"] for c in configs)
    paper = grids.ablation_configs("paper", tmp_path)
    assert {c.loss.alpha for c in paper} == {round(0.1 * i, 1) for i in range(11)}
    assert {c.encoder for c in paper} == {"resnet18"}


def test_comparison_runs_are_paired_by_seed(tmp_path):
    methods = grids.comparison_configs("cpu", tmp_path)
    assert list(methods) == ["random init", "NT-Xent", "ACL"]
    seeds = [[c.seed for c in configs] for configs in methods.values()]
    assert seeds[0] == seeds[1] == seeds[2] == list(grids.settings("cpu").seeds)
    assert {(c.epochs, c.steps) for c in methods["random init"]} == {(0, 0)}
    assert len(methods["ACL"]) >= 5


def test_control_and_length_curve_runs(tmp_path):
    settings = grids.settings("cpu")
    controls = grids.control_configs("cpu", tmp_path)
    assert [(c.seed, c.loss.reduction) for c in controls] == [
        (s, "mean") for s in settings.ablation_seeds
    ]
    acl = {
        c.seed: c
        for c in grids.ablation_configs("cpu", tmp_path)
        if c.loss.alpha == 0.3 and c.loss.margin == 0.5
    }
    summed = [dataclasses.replace(c.loss, reduction="sum/25") for c in controls]
    assert all(
        dataclasses.replace(c, loss=loss) == acl[c.seed]
        for c, loss in zip(controls, summed, strict=True)
    )
    curve = grids.length_curve_config("cpu", tmp_path)
    assert curve.steps == max(settings.curve_steps) >= PROFILES["cpu"]["pretrain"]["steps"]
    assert curve.snapshot_steps == settings.curve_steps and curve.loss.alpha == settings.acl_alpha
    with pytest.raises(ValueError, match="unknown profile 'big'"):
        grids.settings("big")


def test_compare_paired():
    a = pd.Series([0.80, 0.82, 0.79], index=[0, 1, 2])
    b = pd.Series([0.78, 0.80, 0.80, 0.5], index=[0, 1, 2, 3])  # seed 3 has no partner
    result = compare.compare_paired(a, b, ("ACL", "NT-Xent"))
    assert result["n"] == 3
    assert result["mean_difference"] == pytest.approx(0.01)
    expected = stats.ttest_rel([0.80, 0.82, 0.79], [0.78, 0.80, 0.80]).pvalue
    assert result["p_ttest"] == pytest.approx(expected)
    assert result["verdict"].startswith("no resolvable difference: ACL - NT-Xent = +1.0 points")
    # t-based: 3.2640 SDs of the differences at 3 seeds (nct, checked in test_stats.py)
    sd = np.std([0.02, 0.02, -0.01], ddof=1)
    assert result["resolvable_difference"] == pytest.approx(stats_.resolvable_difference(sd, 3))
    assert result["resolvable_difference"] == pytest.approx(3.2640 * sd, rel=1e-4)
    three = compare.compare_paired(a, b, ("ACL", "NT-Xent"), n_comparisons=3)
    assert three["verdict"].endswith("; one of 3 comparisons)")
    one = compare.compare_paired(a.loc[[0]], b, ("ACL", "NT-Xent"))
    assert (
        one["n"] == 1
        and one["mean_difference"] == pytest.approx(0.02)
        and one["verdict"].startswith("descriptive (1 seed)")
        and one["resolvable_difference"] is None
    )
    with pytest.raises(ValueError, match="share no seed"):
        compare.compare_paired(a, pd.Series([0.5], index=[9]), ("x", "y"))


def test_setup_gives_every_notebook_the_same_start(tmp_path, monkeypatch):
    monkeypatch.delenv(RUNS_ENV, raising=False)
    results, data_dir, runs_dir, settings = setup(
        "smoke", str(tmp_path / "data"), "", str(tmp_path / "results"), home=tmp_path / "project"
    )
    assert results == tmp_path / "results" / "smoke" and (results / "figures").is_dir()
    assert data_dir == str(tmp_path / "data") and runs_dir == tmp_path / "project" / "runs"
    assert settings == grids.settings("smoke")
    no_data = setup("smoke", "", str(tmp_path / "r"), str(tmp_path), needs_data=False)
    assert no_data.data_dir == "" and no_data.runs_dir == tmp_path / "r"


def _finish_sweep(data, store, clean: dict[tuple[str, float], float]) -> None:
    """Mark notebook 07's sweep runs finished with these clean-subset accuracies."""
    for name, configs in grids.margin_sweep_configs("cpu", data).items():
        for config in configs:
            run = open_run(config, store)
            run.finish({"probe_select_macro": clean[(name, config.loss.margin)]})


def test_the_margins_are_chosen_on_the_clean_subset_the_smaller_on_ties(tiny_dataset):
    data = tiny_dataset  # a dataset names the runs
    swept = grids.settings("cpu").softmax_margins
    assert len(swept) >= 2 and grids.settings("cpu").margin_sweep_seeds
    clean = {("ArcFace NT-Xent", m): 0.5 for m in swept}  # a tie: the smallest
    clean |= {("CosFace NT-Xent", m): 0.5 + (m == swept[1]) * 0.1 for m in swept}
    _finish_sweep(data, data / "runs", clean)
    sweep = {
        name: [open_run(c, data / "runs") for c in configs]
        for name, configs in grids.margin_sweep_configs("cpu", data).items()
    }
    assert grids.choose_margins(sweep) == {
        "ArcFace NT-Xent": min(swept),
        "CosFace NT-Xent": swept[1],
    }


def test_notebook_07_pairs_its_methods_with_02s_runs_at_shared_seeds(tmp_path):
    """NT-Xent and ACL are notebook 02's runs at the study's seeds; the new methods run at the
    margin seeds, at least 3 of those (a verdict needs 3 paired seeds)."""
    chosen = {"ArcFace NT-Xent": 0.2, "CosFace NT-Xent": 0.4}
    methods = grids.margin_configs("cpu", tmp_path, chosen)
    assert list(methods) == ["NT-Xent", "ACL", "ArcFace NT-Xent", "CosFace NT-Xent", "VICReg"]
    study = grids.settings("cpu")
    assert len(study.margin_seeds) >= 3 and set(study.margin_seeds) <= set(study.seeds)
    assert [[c.seed for c in configs] for configs in methods.values()] == [
        list(study.seeds)
    ] * 2 + [list(study.margin_seeds)] * 3
    comparison = grids.comparison_configs("cpu", tmp_path)
    assert methods["NT-Xent"] == comparison["NT-Xent"] and methods["ACL"] == comparison["ACL"]
    assert {c.objective for c in methods["VICReg"]} == {"vicreg"}
    for name, objective in (
        ("ArcFace NT-Xent", "ntxent_arcface"),
        ("CosFace NT-Xent", "ntxent_cosface"),
    ):
        assert {(c.objective, c.loss.margin) for c in methods[name]} == {(objective, chosen[name])}
    supervised = grids.margin_supervised_configs("cpu", tmp_path)
    assert list(supervised) == ["CE", "ACL (alpha 0.7)", "SupCon"]
    noisy = [c for c in grids.supervised_configs("cpu", tmp_path) if c.subset == "noisy"]
    reused = [c for c in supervised["CE"] + supervised["ACL (alpha 0.7)"] if c in noisy]
    assert len(reused) == 2 * len(grids.settings("cpu").supervised_seeds)  # notebook 03's runs
    assert {c.objective for c in supervised["SupCon"]} == {"supcon"}
    assert len(supervised["SupCon"]) >= 3


def test_the_study_lists_07s_runs_at_the_margins_its_sweep_chose_once_it_has(tiny_dataset):
    data = tiny_dataset  # a dataset names the runs
    store = data / "runs"
    swept = grids.settings("cpu").softmax_margins
    before = grids.notebook_configs("cpu", data, store)["07"]
    n_sweep = 2 * len(swept) * len(grids.settings("cpu").margin_sweep_seeds)
    n_ssl = 2 * len(grids.settings("cpu").seeds) + 3 * len(grids.settings("cpu").margin_seeds)
    n_supervised = 3 * len(grids.settings("cpu").margin_supervised_seeds)
    assert len(before) == n_sweep + n_ssl + n_supervised  # the first margin holds a place

    _finish_sweep(
        data, store, {(n, m): m for n in ("ArcFace NT-Xent", "CosFace NT-Xent") for m in swept}
    )
    after = grids.notebook_configs("cpu", data, store)["07"]
    assert len(after) == len(before)
    arcface = {c.loss.margin for c in after if c.objective == "ntxent_arcface" and c.seed != 0}
    assert arcface == {max(swept)}  # the best clean accuracy
