"""The authors' pretraining protocol (docs/protocol.md): the patch-vote kNN monitor, each view in
its own forward pass, and mix-back backgrounds drawn from the whole training set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aclaudio.data import features
from aclaudio.evaluation import metrics
from aclaudio.nn import models
from aclaudio.training import batches, config


def on_circle(*degrees: float) -> np.ndarray:
    angles = np.radians(degrees)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def test_patch_votes_are_unweighted_and_differ_from_the_weighted_clip_mean_knn():
    """Clip Q (class 0) has patches at -40 and +40 degrees, so its mean points at 0 degrees,
    where the one patch of clip B (class 1) lies; clips A1 and A2 (class 0) sit at -40 and +40.

    Weighted clip means: B (cosine 1) outweighs A1 and A2 (cosine 0.77) by far at temperature
    0.07, so Q is called 1. Patch votes, k = 3: each patch of Q has one A at cosine 1, B at 0.77
    and the other A at 0.17, so two votes of three for class 0, and Q is called 0.
    """
    emb = on_circle(-40, 40, 0, -40, 40)
    clip = np.array(["Q", "Q", "B", "A1", "A2"])
    labels = np.array([0, 0, 1, 0, 0])
    ids, votes = metrics.clip_vote_knn(emb, labels, clip, n_classes=2, k=3)
    assert ids.tolist() == ["A1", "A2", "B", "Q"]
    assert votes[3].tolist() == [1.0, 0.0]  # both patches of Q vote for class 0

    means = np.stack([emb[clip == c].mean(axis=0) for c in ids])
    clip_labels = np.array([0, 0, 1, 0])
    probs = metrics.knn_predict(means, clip_labels, means, n_classes=2, k=3, exclude_self=True)
    assert probs[3].argmax() == 1


def test_patch_votes_leave_out_every_patch_of_the_clip_itself():
    """Q's two patches are each other's nearest neighbours; left out, B (class 1) is nearest."""
    emb = on_circle(0, 1, 30, 120)
    clip = np.array([0, 0, 1, 2])
    _, votes = metrics.clip_vote_knn(emb, np.array([0, 0, 1, 0]), clip, n_classes=2, k=1)
    assert votes[0].tolist() == [0.0, 1.0]  # both patches of Q vote for B's class


def test_clip_majority_ties_go_to_the_smallest_class():
    """Q's patches point at B (class 1) and at A (class 0): one vote each, class 0 wins."""
    emb = on_circle(0, 90, 0, 90)
    _, votes = metrics.clip_vote_knn(
        emb, np.array([2, 2, 1, 0]), ["Q", "Q", "B", "A"], n_classes=3, k=1
    )
    assert votes[2].tolist() == [0.5, 0.5, 0.0] and votes[2].argmax() == 0


def test_views_apart_normalise_each_view_with_its_own_batch():
    cfg = config.profile_config("pretrain", "smoke", amp=False, channels_last=False)
    model = models.build_contrastive_model(cfg, torch.device("cpu")).train()
    preset = features.PRESETS[cfg.preset]
    generator = torch.Generator().manual_seed(0)
    view1, view2, other2 = (
        torch.randn(4, 1, preset.n_mels, preset.patch_frames, generator=generator) for _ in range(3)
    )

    def first_view(second: torch.Tensor, apart: bool) -> torch.Tensor:
        with torch.no_grad():
            h, z = model(torch.cat([view1, second]), views_apart=apart)
        return torch.cat([h[:4], z[:4]], dim=1)

    torch.testing.assert_close(first_view(view2, True), first_view(other2, True))
    assert not torch.allclose(first_view(view2, False), first_view(other2, False))  # one batch
    with torch.no_grad():
        alone = torch.cat(model(view1), dim=1)
    torch.testing.assert_close(first_view(view2, True), alone)


def test_backgrounds_come_from_the_whole_pool_never_the_clip_and_differ():
    pool, rows = np.arange(100, 400), np.arange(100, 132)
    first, second = batches.other_clips(pool, rows, np.random.default_rng(0))
    assert ((first != rows) & (second != rows) & (first != second)).all()
    assert np.isin([first, second], pool).all() and not np.isin(first, rows).all()
    again = batches.other_clips(pool, rows, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip([first, second], again, strict=True))
    # three clips: the two backgrounds of each are exactly the other two
    trio = np.array([5, 6, 7])
    first, second = batches.other_clips(trio, trio, np.random.default_rng(1))
    assert (np.sort(np.stack([trio, first, second]), axis=0) == trio[:, None]).all()
    with pytest.raises(ValueError, match="mix-back needs 2 background clips"):
        batches.other_clips(trio[:2], trio[:2], np.random.default_rng(0))


def test_unknown_choices_are_clear_errors():
    with pytest.raises(ValueError, match="monitor must be one of patch_vote_z, clip_mean_h, last"):
        config.profile_config("pretrain", "smoke", monitor="best")
    with pytest.raises(
        ValueError, match="unknown objective 'barlow_twins' here; choose one of ntxent"
    ):
        config.profile_config("pretrain", "smoke", objective="barlow_twins")
