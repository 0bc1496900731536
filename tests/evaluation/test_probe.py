"""The paper's linear evaluation on cached patch embeddings (aclaudio.evaluation.probe)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from aclaudio.evaluation import probe
from aclaudio.training.runs import Run


def clips_of(rng, centres: np.ndarray, n_clips: int, noise: float = 0.3):
    """Clips whose patches scatter around their class's centre; every 4th clip has 20 patches,
    the others 1 to 3."""
    labels = np.arange(n_clips) % len(centres)
    counts = [20 if i % 4 == 0 else 1 + i % 3 for i in range(n_clips)]
    patches = [
        centres[y] + noise * rng.standard_normal((c, centres.shape[1]))
        for y, c in zip(labels, counts, strict=True)
    ]
    emb = np.concatenate(patches)
    clip_of_patch = np.repeat(np.arange(n_clips) * 3 + 5, counts)  # clip rows need not be 0..n
    return probe.PatchEmbeddings(emb.astype(np.float32), clip_of_patch, labels)


SHORT = probe.ProbeSettings(epochs=12, milestones=(6, 10), batch_size=16)


def test_separable_clips_are_learned_and_the_report_is_the_selected_epoch():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 8)) * 2
    train, select, test = (clips_of(rng, centres, n) for n in (80, 24, 24))
    report = probe.linear_evaluation(train, select, test, 4, SHORT)
    assert report["micro"] == 1.0 and report["macro"] == 1.0
    curve = report["curve"]
    assert len(curve) == SHORT.epochs
    best = max(row["select_macro"] for row in curve)
    first_best = next(row["epoch"] for row in curve if row["select_macro"] == best)
    assert report["epoch"] == first_best and report["select_macro"] == best
    assert report["macro"] == curve[first_best]["test_macro"]
    assert curve[-1]["loss"] < curve[0]["loss"]


def test_same_seed_same_result_other_seed_other_draws():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((3, 8))
    train, select, test = (clips_of(rng, centres, n, noise=2.0) for n in (60, 30, 30))
    a = probe.linear_evaluation(train, select, test, 3, SHORT)
    b = probe.linear_evaluation(train, select, test, 3, SHORT)
    c = probe.linear_evaluation(train, select, test, 3, dataclasses.replace(SHORT, seed=1))
    assert a["curve"] == b["curve"]
    assert [r["loss"] for r in a["curve"]] != [r["loss"] for r in c["curve"]]


def test_each_epoch_draws_one_patch_of_every_clip_uniformly():
    counts = torch.tensor([1, 2, 50, 3])
    start = torch.cumsum(torch.cat([torch.tensor([0]), counts[:-1]]), 0)
    generator = torch.Generator().manual_seed(0)
    hits = torch.zeros(int(counts.sum()))
    for _ in range(4000):
        order, picks = probe.one_patch_per_clip(start, counts, generator)
        assert sorted(order.tolist()) == [0, 1, 2, 3]  # every clip exactly once
        assert ((picks >= start[order]) & (picks < start[order] + counts[order])).all()
        hits[picks] += 1
    per_patch = hits[2 + 1 : 2 + 1 + 50] / 4000  # the 50-patch clip: each about 1/50
    assert per_patch.min() > 0.01 and per_patch.max() < 0.035
    assert hits[0] == 4000  # the one-patch clip is drawn every epoch


def test_a_long_clip_weighs_as_much_as_a_short_one():
    """Class 0 has one clip of 200 patches, class 1 ten clips of one patch, every patch at the
    same point: per-clip draws see class 1 ten times as often, per-patch training the reverse."""
    emb = np.zeros((210, 2), np.float32)
    clip_of_patch = np.concatenate([np.zeros(200, int), np.arange(1, 11)])
    labels = np.array([0] + [1] * 10)
    train = probe.PatchEmbeddings(emb, clip_of_patch, labels)
    point = probe.PatchEmbeddings(np.zeros((1, 2), np.float32), np.array([0]), np.array([1]))
    report = probe.linear_evaluation(train, point, point, 2, SHORT)
    assert report["micro"] == 1.0  # the majority of clips (class 1), not of patches (class 0)


def test_patches_of_a_clip_must_be_contiguous():
    with pytest.raises(ValueError, match="contiguous"):
        probe.PatchEmbeddings(np.zeros((3, 2)), np.array([0, 1, 0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="2 labels for 3 clips"):
        probe.PatchEmbeddings(np.zeros((3, 2)), np.array([0, 1, 2]), np.array([0, 1]))


def test_batchnorm_statistics_are_the_average_over_the_batches():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU())
    encoder[1].running_mean.fill_(7.0)  # stale statistics, e.g. from augmented inputs
    batches = [torch.randn(32, 5) * (k + 1) + k for k in range(3)]
    weights = [p.clone() for p in encoder.parameters()]
    out = probe.reestimate_batchnorm(encoder, batches)
    assert out is encoder and not encoder.training
    with torch.no_grad():
        hidden = [encoder[0](x) for x in batches]
    expected_mean = torch.stack([h.mean(0) for h in hidden]).mean(0)
    expected_var = torch.stack([h.var(0, unbiased=True) for h in hidden]).mean(0)
    torch.testing.assert_close(encoder[1].running_mean, expected_mean)
    torch.testing.assert_close(encoder[1].running_var, expected_var)
    assert encoder[1].momentum == 0.1  # restored
    assert all(torch.equal(a, b) for a, b in zip(weights, encoder.parameters(), strict=True))


def test_test_embeddings_of_a_run_without_evaluation_say_what_to_run(tmp_path):
    run = Run(tmp_path / "pretrain-0123", config=None)
    with pytest.raises(FileNotFoundError, match=r"pretrain-0123.*aclaudio linear-eval"):
        probe.test_embeddings(run)
    h, z, target = np.ones((3, 4)), np.zeros((3, 2)), np.arange(3)
    run.path.mkdir()
    np.savez_compressed(run.path / "test_embeddings.npz", h=h, z=z, target=target)
    saved = probe.test_embeddings(run)
    assert sorted(saved) == ["h", "target", "z"]
    np.testing.assert_array_equal(saved["h"], h)
    np.testing.assert_array_equal(saved["target"], target)
