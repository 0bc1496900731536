"""The difficulty baseline: how far a linear model gets without learning any representation.

A logistic regression on each clip's mean log-mel spectrum (standardised), trained on one
training subset and tested on the test set. It sees the average spectrum only, never how the
sound evolves in time, so it says how much of a dataset is solvable by spectral colour alone:
a learned representation has to beat it to have learned anything beyond that.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aclaudio.data.cache import build_cache
from aclaudio.data.datasets import SUBSETS, load_dataset, subset_mask
from aclaudio.evaluation.metrics import accuracy_report


def difficulty_baseline(
    dataset_dir: str | Path, *, preset: str = "cpu", train_subset: str = "clean", C: float = 0.1
) -> dict:
    """Test accuracy of a linear probe on clip-mean log-mel, trained on `train_subset`'s labels.

    Reads the feature cache (building it on first use). Returns accuracy (micro) with its 95 %
    Wilson interval, macro (balanced) accuracy, and the numbers of training and test clips.
    """
    if train_subset not in SUBSETS or train_subset == "test":
        choices = ", ".join(s for s in SUBSETS if s != "test")
        raise ValueError(f"train_subset must be one of {choices}; got {train_subset!r}")
    if not C > 0:
        raise ValueError(f"C (inverse regularisation strength) must be positive, got {C}")
    dataset = load_dataset(dataset_dir)
    cache = build_cache(dataset, preset, progress=False)
    clip_means = np.stack([cache.clip(row).mean(axis=1) for row in range(len(cache))])
    clips = cache.clips  # labels and subsets as the CSVs say now (build_cache relabels)
    train = subset_mask(clips, train_subset).to_numpy()
    test = subset_mask(clips, "test").to_numpy()
    targets = clips["target"].to_numpy()
    if len(np.unique(targets[train])) < 2 or not test.any():
        raise ValueError(
            f"{dataset.root}: the {train_subset!r} subset needs clips of at least two classes "
            f"and the test set at least one clip (found {train.sum()} and {test.sum()} clips)"
        )
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
    with warnings.catch_warnings():
        # scikit-learn guesses a regression task when a small subset has about one clip per
        # class; these are class labels
        warnings.filterwarnings("ignore", "The number of unique classes", UserWarning)
        probe.fit(clip_means[train], targets[train])
    report = accuracy_report(
        targets[test], probe.predict(clip_means[test]), n_classes=len(dataset.classes)
    )
    return {
        "accuracy": report["micro"],
        "accuracy_ci": report["micro_ci"],
        "macro": report["macro"],
        "n_train": int(train.sum()),
        "n_test": int(test.sum()),
    }
