"""The supervised recipe's patches and normalisation, as the authors cut and fit them (SUP
create_data.py): patch counts worked out by hand, statistics against scikit-learn's
StandardScaler fitted on the stacked training patches."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from aclaudio.training import batches


def fake_cache(clips: list[np.ndarray]) -> SimpleNamespace:
    """What patch_index and patch_statistics read of a FeatureCache: each clip's length and its
    (n_mels, frames) log-mel."""
    return SimpleNamespace(
        clips=pd.DataFrame({"length": [c.shape[1] for c in clips]}), clip=lambda row: clips[row]
    )


def test_training_patches_leave_out_the_one_that_ends_on_the_clip_end():
    """n_ins = max(1, ceil((T - 100) / 50)) patches at j * 50, by hand for each T."""
    lengths = [100, 101, 150, 200, 201, 60]
    cache = fake_cache([np.zeros((2, n), np.float32) for n in lengths])
    pairs = batches.patch_index(cache, np.arange(len(lengths)), frames=100, hop=50)
    starts = {n: pairs[pairs[:, 0] == row, 1].tolist() for row, n in enumerate(lengths)}
    assert starts == {
        100: [0],  # ceil(0 / 50) = 0, at least one
        101: [0],  # ceil(1 / 50) = 1
        150: [0],  # ceil(50 / 50) = 1: the patch 50-150, which ends on the clip's end, is left out
        200: [0, 50],  # ceil(100 / 50) = 2: not 100-200
        201: [0, 50, 100],  # ceil(101 / 50) = 3
        60: [0],  # shorter than a patch: one, repeated to fill it
    }
    assert batches.patch_index(cache, np.array([], dtype=int), 100, 50).shape == (0, 2)


def stacked_patches(clips: list[np.ndarray], pairs: np.ndarray, frames: int) -> np.ndarray:
    """The patches' frames as rows, each patch cut independently (a short clip repeated)."""
    return np.concatenate(
        [clips[row][:, (start + np.arange(frames)) % clips[row].shape[1]].T for row, start in pairs]
    )


def test_patch_statistics_are_a_standard_scaler_fitted_on_the_stacked_patches():
    rng = np.random.default_rng(0)
    clips = [
        (rng.normal(-4, 2, (5, n)) + np.arange(5)[:, None]).astype(np.float16).astype(np.float32)
        for n in (250, 101, 40, 180)
    ]
    for clip in clips:
        clip[3] = -15.65  # a band without variance (silence at the log floor): scaled by 1
    cache = fake_cache(clips)
    pairs = batches.patch_index(cache, np.array([3, 0, 2]), frames=100, hop=50)  # not clip 1
    mean, std = batches.patch_statistics(cache, pairs, frames=100)
    scaler = StandardScaler().fit(stacked_patches(clips, pairs, 100))
    np.testing.assert_allclose(mean, scaler.mean_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std, scaler.scale_, rtol=1e-6)
    assert std[3] == 1.0 and mean[3] == pytest.approx(-15.65, abs=1e-3)
    # overlapping patches count their shared frames twice: not the clips' own statistics
    whole = np.concatenate([clips[r] for r in (3, 0, 2)], axis=1)
    assert not np.allclose(mean, whole.mean(axis=1), rtol=1e-4)
    with pytest.raises(ValueError, match="no patches"):
        batches.patch_statistics(cache, pairs[:0], frames=100)
