"""Runs of two methods paired by seed, compared over seeds and over test clips."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from aclaudio.evaluation import stats
from aclaudio.evaluation.metrics import accuracy_report
from aclaudio.study import compare


class FakeRun(SimpleNamespace):
    def summary(self) -> dict:
        return self.finished


def fake_run(root, name, seed, y_true, y_pred, patches=None):
    """A finished run as the notebooks see it: its seed, summary and evaluation.json (each
    clip's patches: 1 to 4 in turn unless given)."""
    path = root / f"{name}-{seed}"
    path.mkdir()
    patches = np.arange(len(y_true)) % 4 + 1 if patches is None else patches
    report = accuracy_report(y_true, y_pred, n_classes=3, patches=patches)
    (path / "evaluation.json").write_text(json.dumps(report))
    summary = {"test_micro": report["micro"], "test_patch_weighted": report["patch_weighted"]}
    return FakeRun(config=SimpleNamespace(seed=seed), path=path, finished=summary)


@pytest.fixture
def two_methods(tmp_path):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 200)

    def predictions(accuracy):
        return np.where(rng.random(200) < accuracy, y_true, (y_true + 1) % 3)

    a = [fake_run(tmp_path, "a", s, y_true, predictions(0.9)) for s in (0, 1, 2)]
    b = [fake_run(tmp_path, "b", s, y_true, predictions(0.6)) for s in (2, 1, 0, 3)]
    return a, b, y_true


def test_paired_correctness_rows_are_the_shared_seeds(two_methods):
    a, b, y_true = two_methods
    clips = compare.paired_correctness(a, b)
    assert clips.seeds == [0, 1, 2]  # seed 3 has no partner; b's order does not matter
    assert clips.a.shape == clips.b.shape == (3, 200)
    assert np.array_equal(clips.labels, y_true)
    for row, seed in enumerate(clips.seeds):
        assert clips.b[row].mean() == pytest.approx(b[[2, 1, 0][seed]].summary()["test_micro"])


def test_compare_runs_gives_both_intervals(two_methods):
    a, b, _ = two_methods
    result = compare.compare_runs(a, b, ("A", "B"), n_comparisons=2)
    clips = compare.paired_correctness(a, b)
    both = stats.seed_clip_interval(clips.a, clips.b)
    assert result["seeds_clips_ci"] == both["ci"]
    assert result["mean_difference"] == pytest.approx(both["estimate"])
    assert result["n"] == 3 and result["n_clips"] == 200 and result["resolved"]
    assert result["seeds_clips_verdict"].startswith("A - B = +")  # 30 points apart: resolved
    assert result["seeds_clips_verdict"].endswith("one of 2 comparisons)")
    assert result["resolvable_difference"] > 0


def test_patch_weighted_comparison_weighs_clips_by_their_patches(two_methods):
    a, b, _ = two_methods
    result = compare.compare_runs(a, b, ("A", "B"), accuracy="patch_weighted")
    clips = compare.paired_correctness(a, b)
    weighted = stats.seed_clip_interval(clips.a, clips.b, weights=clips.patches)
    assert result["seeds_clips_ci"] == weighted["ci"] and result["accuracy"] == "patch_weighted"
    by_seed = {run.config.seed: run.summary()["test_patch_weighted"] for run in a}
    assert np.mean([by_seed[s] for s in clips.seeds]) - np.mean(
        [run.summary()["test_patch_weighted"] for run in b if run.config.seed in clips.seeds]
    ) == pytest.approx(result["mean_difference"])


def test_two_seeds_are_descriptive(two_methods):
    a, b, _ = two_methods
    result = compare.compare_runs(a[:2], b, ("A", "B"))
    assert result["n"] == 2 and not result["resolved"]
    assert result["verdict"].startswith("descriptive (2 seeds): A - B = +")
    assert result["seeds_clips_verdict"].startswith("descriptive (2 seeds)")
    assert result["resolvable_difference"] is None


def test_runs_on_other_test_clips_are_refused(tmp_path):
    a = [fake_run(tmp_path, "a", 0, [0, 1, 2], [0, 1, 2])]
    b = [fake_run(tmp_path, "b", 0, [0, 1, 1], [0, 1, 2])]
    with pytest.raises(ValueError, match="same test clips"):
        compare.paired_correctness(a, b)
    c = [fake_run(tmp_path, "c", 0, [0, 1, 2], [0, 1, 2], patches=[1, 1, 1])]
    with pytest.raises(ValueError, match="same test clips and patches"):
        compare.paired_correctness(a, c)
    with pytest.raises(ValueError, match="share no seed"):
        compare.paired_correctness(a, [fake_run(tmp_path, "c", 5, [0, 1, 2], [0, 1, 2])])
