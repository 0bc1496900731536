"""Evaluation on embeddings: every number checked by hand or against an independent computation
(scikit-learn, scipy, brute-force loops), plus bad inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.neighbors import KNeighborsClassifier

from aclaudio.evaluation.metrics import (
    accuracy_report,
    clip_angles,
    clip_probabilities,
    knn_predict,
    pair_angles,
    tolerance,
    uniformity,
)
from aclaudio.evaluation.stats import wilson_interval

# ----------------------------------------------------------------------------- clip decisions


def test_clip_probabilities_mean_and_sum_by_hand():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.4, 0.6], [1.0, 0.0]])
    clips = np.array([7, 3, 7, 3, 3])
    ids, mean = clip_probabilities(probs, clips)
    assert ids.tolist() == [3, 7]
    np.testing.assert_allclose(mean, [[1.6 / 3, 1.4 / 3], [0.7, 0.3]])
    ids, total = clip_probabilities(torch.tensor(probs), torch.tensor(clips), aggregate="sum")
    np.testing.assert_allclose(total, [[1.6, 1.4], [1.4, 0.6]])


def test_clip_probabilities_accepts_any_clip_ids():
    ids, mean = clip_probabilities(np.eye(3), np.array(["b.wav", "a.wav", "b.wav"]))
    assert ids.tolist() == ["a.wav", "b.wav"]
    np.testing.assert_allclose(mean, [[0, 1, 0], [0.5, 0, 0.5]])


@pytest.mark.parametrize(
    ("probs", "clips", "kwargs", "message"),
    [
        (np.ones((3, 2)), np.arange(3), {"aggregate": "max"}, "aggregate"),
        (np.ones((3, 2)), np.arange(2), {}, "patch_clip has 2 entries"),
        (np.ones((0, 2)), np.arange(0), {}, "patch_probs is empty"),
        (np.ones(3), np.arange(3), {}, "2-d"),
        (np.array([[np.nan, 1.0]]), np.arange(1), {}, "NaN"),
    ],
)
def test_clip_probabilities_bad_input(probs, clips, kwargs, message):
    with pytest.raises(ValueError, match=message):
        clip_probabilities(probs, clips, **kwargs)


# ----------------------------------------------------------------------------- accuracy


def test_accuracy_report_by_hand_and_against_sklearn():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 2, 2, 2, 3])
    report = accuracy_report(y_true, y_pred, n_classes=4)
    assert report["n"] == 10
    assert report["micro"] == pytest.approx(0.7) == accuracy_score(y_true, y_pred)
    assert report["per_class"] == [0.75, 0.5, 0.75, None]  # class 3 never occurs in y_true
    assert report["macro"] == pytest.approx(2 / 3)
    with pytest.warns(UserWarning):  # sklearn warns about the predicted-only class 3
        assert report["macro"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert report["confusion"] == [[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 3, 1], [0, 0, 0, 0]]
    assert report["support"] == [4, 2, 4, 0]
    assert report["micro_ci"] == pytest.approx(list(wilson_interval(7, 10)))
    assert (report["y_true"], report["y_pred"]) == (y_true.tolist(), y_pred.tolist())
    json.dumps(report, allow_nan=False)


def test_accuracy_report_bootstrap_matches_explicit_resampling():
    """The binomial shortcut against resampling clips within each class, on 100 clips."""
    rng = np.random.default_rng(5)
    y_true = rng.integers(4, size=100)
    y_pred = np.where(rng.random(100) < 0.7, y_true, rng.integers(4, size=100))
    report = accuracy_report(y_true, y_pred, n_classes=4, n_boot=4000, seed=1)
    classes = [np.flatnonzero(y_true == c) for c in range(4)]
    macro = []
    for _ in range(4000):
        picks = [rng.choice(members, size=len(members)) for members in classes]
        macro.append(np.mean([np.mean(y_true[p] == y_pred[p]) for p in picks]))
    # Monte Carlo error of each bound is about 0.002; a 97.5 % interval would be 0.01 wider.
    assert report["macro_ci"] == pytest.approx(np.quantile(macro, [0.025, 0.975]), abs=0.005)
    assert report["macro_ci"][0] < report["macro"] < report["macro_ci"][1]
    assert accuracy_report(y_true, y_pred, n_classes=4, n_boot=4000, seed=1) == report


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([0, 1, 2], [0, 1], "y_pred has 2 entries"),
        ([], [], "non-empty"),
        ([0, 1, 5], [0, 1, 2], r"outside \[0, 3\)"),
        ([0.0, 1.0], [0, 1], "integer"),
    ],
)
def test_accuracy_report_bad_input(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        accuracy_report(np.array(y_true), np.array(y_pred), n_classes=3)


# ----------------------------------------------------------------------------- kNN


def knn_brute_force(train, labels, query, *, k, n_classes, temperature):
    """One query at a time: cosine similarities, the k largest, exp-weighted votes."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    out = []
    for q in query:
        sims = train @ (q / np.linalg.norm(q))
        nearest = np.argsort(-sims)[:k]
        votes = np.zeros(n_classes)
        for i in nearest:
            votes[labels[i]] += math.exp(sims[i] / temperature)
        out.append(votes / votes.sum())
    return np.array(out)


def test_knn_against_brute_force_and_sklearn():
    rng = np.random.default_rng(0)
    train, query = rng.standard_normal((300, 16)), rng.standard_normal((40, 16))
    labels = rng.integers(4, size=300)
    ours = knn_predict(train, labels, query, n_classes=4, k=25, temperature=0.1, batch_size=7)
    expected = knn_brute_force(train, labels, query, k=25, n_classes=4, temperature=0.1)
    np.testing.assert_allclose(ours, expected, atol=1e-10)
    reference = KNeighborsClassifier(
        n_neighbors=25,
        metric="cosine",
        algorithm="brute",
        weights=lambda distance: np.exp((1 - distance) / 0.1),
    ).fit(train, labels)
    np.testing.assert_allclose(ours, reference.predict_proba(query), atol=1e-8)


def test_knn_clips_k_to_the_training_set():
    rng = np.random.default_rng(1)
    train, query = torch.randn(10, 8), torch.randn(5, 8)
    labels = torch.tensor(rng.integers(3, size=10))
    clipped = knn_predict(train, labels, query, n_classes=3, k=200, temperature=1.0)
    exact = knn_brute_force(
        train.numpy(), labels.numpy(), query.numpy(), k=10, n_classes=3, temperature=1.0
    )
    np.testing.assert_allclose(clipped, exact, atol=1e-6)


def test_knn_survives_small_temperatures_in_float32():
    train = torch.randn(50, 8)
    labels = torch.arange(50) % 3
    query = train[:6]  # similarity 1 to themselves: exp(1 / 0.01) overflows float32
    probs = knn_predict(train, labels, query, n_classes=3, k=5, temperature=0.01)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)
    assert (probs.argmax(axis=1) == labels[:6].numpy()).all()  # each query's twin dominates


@pytest.mark.parametrize(
    ("train", "query", "kwargs", "message"),
    [
        (np.ones((5, 4)), np.ones((2, 3)), {}, "dimension 3"),
        (np.zeros((5, 4)), np.ones((2, 4)), {}, "all-zero rows"),
        (np.ones((5, 4)), np.full((2, 4), np.nan), {}, "query_emb contains NaN"),
        (np.ones((5, 4)), np.ones((2, 4)), {"k": 0}, "k >= 1"),
    ],
)
def test_knn_bad_input(train, query, kwargs, message):
    with pytest.raises(ValueError, match=message):
        knn_predict(train, np.zeros(5, dtype=int), query, n_classes=2, **kwargs)


# ----------------------------------------------------------------------------- geometry


def test_uniformity_against_brute_force_and_extremes():
    z = np.random.default_rng(0).standard_normal((30, 5))
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    terms = [math.exp(-2.0 * np.sum((unit[i] - unit[j]) ** 2)) for i in range(30) for j in range(i)]
    assert uniformity(z) == pytest.approx(math.log(np.mean(terms)), rel=1e-6)
    assert uniformity(np.tile([[3.0, 4.0]], (6, 1))) == pytest.approx(0.0, abs=1e-6)
    assert uniformity(np.eye(8) * 5, t=3.0) == pytest.approx(-6.0)  # exp(-t * 2) for every pair
    with pytest.raises(ValueError, match="at least 2"):
        uniformity(np.ones((1, 3)))


def test_tolerance_against_brute_force_and_extremes():
    rng = np.random.default_rng(1)
    z, labels = rng.standard_normal((40, 6)), rng.integers(4, size=40)
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    same = [
        unit[i] @ unit[j] for i in range(40) for j in range(40) if i != j and labels[i] == labels[j]
    ]
    assert tolerance(z, labels) == pytest.approx(np.mean(same))
    assert tolerance(np.tile([[1.0, 2.0, 2.0]], (5, 1)), np.zeros(5)) == pytest.approx(1.0)
    assert tolerance(np.eye(4), [0, 0, 0, 0]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="two or more"):
        tolerance(np.eye(3), [0, 1, 2])
    with pytest.raises(ValueError, match="labels has 2 entries"):
        tolerance(np.eye(3), [0, 1])


def test_pair_angles_against_brute_force():
    rng = np.random.default_rng(2)
    h1, h2 = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    positives, negatives = pair_angles(h1, h2)
    views = np.concatenate([h1, h2])
    views /= np.linalg.norm(views, axis=1, keepdims=True)

    def angle(i, j):
        return math.acos(np.clip(views[i] @ views[j], -1, 1))

    expected = [angle(i, j) for i in range(12) for j in range(i + 1, 12) if j != i + 6]
    assert len(negatives) == 2 * 6 * 5
    np.testing.assert_allclose(negatives, expected, atol=1e-7)
    np.testing.assert_allclose(positives, [angle(i, i + 6) for i in range(6)], atol=1e-7)


def test_clip_angles_of_each_unordered_pair():
    h = [[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]  # 90 degrees, then 45 and 45
    np.testing.assert_allclose(clip_angles(h), [math.pi / 2, math.pi / 4, math.pi / 4])
    rng = np.random.default_rng(4)
    h = rng.standard_normal((7, 3))
    unit = h / np.linalg.norm(h, axis=1, keepdims=True)
    i, j = np.triu_indices(7, k=1)
    expected = np.arccos(np.clip((unit[i] * unit[j]).sum(axis=1), -1, 1))
    np.testing.assert_allclose(clip_angles(h), expected, atol=1e-7)
    with pytest.raises(ValueError, match="all-zero rows"):
        clip_angles([[1.0, 0.0], [0.0, 0.0]])


def test_pair_angles_resolves_tiny_and_opposite_angles_in_float32():
    a = torch.nn.functional.normalize(torch.randn(30, 2), dim=1)  # > 25 rows: cdist's mm regime
    b = a.clone()
    a[:2] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b[:2] = torch.tensor([[1.0, 1e-4], [-1e-4, -1.0]])  # 1e-4 rad, and pi - 1e-4 rad
    positives, negatives = pair_angles(a, b)
    np.testing.assert_allclose(positives[:2], [1e-4, math.pi - 1e-4], rtol=1e-6)
    np.testing.assert_allclose(positives[2:], 0, atol=1e-6)
    assert float(torch.arccos((a[0] * b[0]).sum())) == 0.0  # what the naive formula gives
    assert len(negatives) == 2 * 30 * 29
    with pytest.raises(ValueError, match="same shape"):
        pair_angles(a, b[:1])


def test_knn_leave_one_out_matches_brute_force():
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((40, 8))
    labels = rng.integers(0, 3, 40)
    probs = knn_predict(emb, labels, emb, n_classes=3, k=5, exclude_self=True, batch_size=16)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for i in range(40):
        others = [j for j in range(40) if j != i]
        sims = unit[others] @ unit[i]
        top = np.argsort(-sims)[:5]
        votes = np.zeros(3)
        for t in top:
            votes[labels[others][t]] += np.exp((sims[t] - sims[top[0]]) / 0.07)
        np.testing.assert_allclose(probs[i], votes / votes.sum(), atol=1e-5)
    with pytest.raises(ValueError, match="queries to be the training rows"):
        knn_predict(emb, labels, emb[:5], n_classes=3, exclude_self=True)
