"""Embedding analysis: angles between training views of a real smoke run, and the t-SNE map."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from aclaudio.data import synth
from aclaudio.evaluation import analysis, embeddings
from aclaudio.nn import augment
from aclaudio.recipes.pretrain import pretrain
from aclaudio.training import config, runs


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    synth.synthesize(root / "data", profile="smoke", seed=0, progress=False)
    data_dir = str(root / "data")
    cfg = config.profile_config("pretrain", "smoke", data_dir=data_dir, subset="all", epochs=1)
    return pretrain(cfg, runs_dir=root / "runs", progress=False)


def without_augmentation(run: runs.Run) -> runs.Run:
    """The same checkpoint, read with every augmentation switched off."""
    return runs.Run(run.path, dataclasses.replace(run.config, augment=augment.AugmentConfig.off()))


def test_view_pair_angles_shapes_range_and_determinism(smoke_run):
    positive, negative = analysis.view_pair_angles(smoke_run)
    n = 40  # the smoke test set
    assert positive.shape == (n,) and negative.shape == (2 * n * (n - 1),)
    for angles in (positive, negative):
        assert np.isfinite(angles).all() and angles.min() >= 0 and angles.max() <= np.pi
    again = analysis.view_pair_angles(smoke_run)
    assert np.array_equal(positive, again[0]) and np.array_equal(negative, again[1])
    other = analysis.view_pair_angles(smoke_run, seed=1)
    assert not np.allclose(positive, other[0])

    few_positive, few_negative = analysis.view_pair_angles(smoke_run, max_clips=10, subset="clean")
    assert few_positive.shape == (10,) and few_negative.shape == (2 * 10 * 9,)


def test_identical_views_meet_at_zero_and_match_the_evaluation_embeddings(smoke_run):
    """Without augmentation, a clip no longer than a patch gives the same patch twice (one
    repeated patch), so its two views coincide; and every such view's h is the encoder output
    that evaluation computes for the clip on its own."""
    plain = without_augmentation(smoke_run)
    positive, negative = analysis.view_pair_angles(plain)
    model, data, device = embeddings.load_pretrained(plain, progress=False)
    rows = data.test_rows
    short = data.cache.clips["length"].to_numpy()[rows] <= data.cache.preset.patch_frames
    assert 5 <= short.sum() <= len(rows) - 5  # both kinds occur in the smoke test set
    assert positive[short].max() < 1e-3
    assert positive[~short].mean() > 0.01  # two different patches of a longer clip

    patch_h, clip_of_patch = embeddings.embed(model.encoder, data, rows, device, amp=False)
    h = embeddings.clip_embeddings(patch_h, clip_of_patch)  # one patch per short clip
    unit = h / np.linalg.norm(h, axis=1, keepdims=True)
    expected = np.arccos(np.clip(unit @ unit.T, -1, 1))
    n = len(rows)
    i, j = np.triu_indices(2 * n, k=1)
    keep = j != i + n  # the order of evaluate.pair_angles' negatives
    i, j = i[keep] % n, j[keep] % n
    both_short = short[i] & short[j]
    np.testing.assert_allclose(negative[both_short], expected[i, j][both_short], atol=2e-3)

    augmented, _ = analysis.view_pair_angles(smoke_run)
    assert augmented[short].mean() > 10 * positive[short].mean() + 0.01


def test_view_pair_angles_rejects_bad_requests(smoke_run):
    with pytest.raises(ValueError, match="unknown subset 'train'"):
        analysis.view_pair_angles(smoke_run, subset="train")
    with pytest.raises(ValueError, match="max_clips must be at least 3"):
        analysis.view_pair_angles(smoke_run, max_clips=2)
    supervised = config.profile_config("supervised", "smoke", data_dir=smoke_run.config.data_dir)
    with pytest.raises(ValueError, match="not a pretraining run"):
        analysis.view_pair_angles(runs.Run(smoke_run.path, supervised))


def blobs(rng, *, n_per_class=15, n_classes=3, dim=16, spread=0.05):
    """Points around n_classes orthogonal directions, with random lengths, and their labels."""
    centres = np.eye(dim)[:n_classes]
    labels = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[labels] + spread * rng.standard_normal((len(labels), dim))
    return x * rng.uniform(0.5, 5, size=(len(labels), 1)), labels


def test_tsne_keeps_directional_clusters_and_ignores_length():
    rng = np.random.default_rng(0)
    x, labels = blobs(rng)
    points = analysis.tsne_2d(x)
    assert points.shape == (len(x), 2) and np.isfinite(points).all()
    distances = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(axis=1)] == labels).all()  # nearest neighbour: same class
    assert np.array_equal(points, analysis.tsne_2d(x))  # deterministic for a seed
    rescaled = x * rng.uniform(0.1, 10, size=(len(x), 1))
    np.testing.assert_allclose(analysis.tsne_2d(rescaled), points, atol=1e-6)


def test_tsne_adapts_to_tiny_sets_and_rejects_bad_input():
    x, _ = blobs(np.random.default_rng(1), n_per_class=2)  # 6 points, default perplexity 30
    assert analysis.tsne_2d(x).shape == (6, 2)
    with pytest.raises(ValueError, match="n >= 3"):
        analysis.tsne_2d(np.ones(5))
    with pytest.raises(ValueError, match="n >= 3"):
        analysis.tsne_2d(np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        analysis.tsne_2d(np.where(np.eye(4) == 1, np.nan, 1.0))
    with pytest.raises(ValueError, match="all-zero rows"):
        analysis.tsne_2d(np.vstack([np.eye(4), np.zeros(4)]))
    with pytest.raises(ValueError, match="perplexity must be positive"):
        analysis.tsne_2d(np.eye(4), perplexity=0)


def test_margin_geometry_by_hand():
    h = [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [3.0, 3.0, 0.0]]  # angles pi/2, pi/4, pi/4
    geometry = analysis.margin_geometry(h, margin=1.0)
    assert geometry["zero_share"] == pytest.approx(5 / 9)
    assert geometry["mean_angle"] == pytest.approx(np.pi / 3)
    assert geometry["beyond_margin"] == pytest.approx(1 / 3)  # only pi/2 is beyond 1 rad
    assert geometry["non_negative"] is True
    assert geometry["zero_clips"] == 0
    assert analysis.margin_geometry(-np.asarray(h), margin=0.5)["non_negative"] is False
    # a clip whose h is all 0 has no direction: counted, and left out of the angles
    with_silent = analysis.margin_geometry([*h, [0.0, 0.0, 0.0]], margin=1.0)
    assert with_silent["zero_clips"] == pytest.approx(1 / 4)
    assert with_silent["zero_share"] == pytest.approx(8 / 12)
    assert with_silent["mean_angle"] == pytest.approx(np.pi / 3)
    alone = analysis.margin_geometry([[1.0, 0.0], [0.0, 0.0]], margin=1.0)
    assert np.isnan(alone["mean_angle"]) and np.isnan(alone["beyond_margin"])


def test_angle_summary_by_hand():
    angles = {
        "A": (np.array([0.1, 0.3]), np.array([0.2, 0.4, 0.6, 0.8])),
        "B": (np.array([0.2]), np.array([1.0, 1.0])),
    }
    summary = analysis.angle_summary(angles, margin=0.5)
    assert list(summary.index) == ["A", "B"]
    a, b = summary.loc["A"], summary.loc["B"]
    assert a["positive: mean angle (rad)"] == pytest.approx(0.2)
    assert a["positive: median angle (rad)"] == pytest.approx(0.2)
    assert a["negative: mean angle (rad)"] == pytest.approx(0.5)
    assert a["negative: fraction below m"] == pytest.approx(0.5)  # 0.2 and 0.4
    assert a["positive / negative mean angle"] == pytest.approx(0.4)
    assert b["negative: fraction below m"] == 0 and b["positive / negative mean angle"] == 0.2
