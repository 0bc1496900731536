"""Evaluation on embeddings computed once: clip aggregation, kNN, accuracy with confidence
intervals (intervals themselves in stats.py), and the geometry of the embedding space
(uniformity, tolerance, angles of positive and negative pairs).

Inputs are numpy arrays or torch tensors. Embeddings are (n, dim) float arrays, labels are
(n,) integers in [0, n_classes), clip ids are (n,) values of any kind (one per patch). Bad input
(mismatched lengths, empty arrays, NaN, labels out of range) raises a ValueError naming it.
The code that runs an encoder over a dataset lives elsewhere and calls these functions.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import confusion_matrix

from aclaudio.evaluation.stats import wilson_interval

# ----------------------------------------------------------------------------- input checks


def _matrix(x, name: str) -> torch.Tensor:
    """x as a float (n, dim) tensor on its own device, non-empty and finite."""
    x = torch.as_tensor(x).detach()
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-d (n, dim) array, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        x = x.float()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _unit_rows(x, name: str) -> torch.Tensor:
    """Rows of x scaled to unit length; an all-zero row has no direction, so it is an error."""
    x = _matrix(x, name)
    norms = x.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError(f"{name} has all-zero rows: their cosine similarity is undefined")
    return x / norms


def _ids(x, name: str, *, length: int | None = None) -> np.ndarray:
    """x as a non-empty 1-d numpy array, of `length` elements when given."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array, got shape {x.shape}")
    if length is not None and len(x) != length:
        raise ValueError(f"{name} has {len(x)} entries, expected {length} (one per row)")
    return x


def _labels(y, name: str, *, n_classes: int, length: int | None = None) -> np.ndarray:
    """y as a 1-d integer array with values in [0, n_classes)."""
    y = _ids(y, name, length=length)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"{name} has values outside [0, {n_classes}): {y.min()}..{y.max()}")
    return y.astype(np.int64)


def _confidence(confidence: float) -> float:
    """The two-sided normal quantile of a confidence level in (0, 1)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(stats.norm.ppf(0.5 + confidence / 2))


# ----------------------------------------------------------------------------- clip decisions


def clip_probabilities(patch_probs, patch_clip, *, aggregate: str = "mean"):
    """Clip-level class scores from patch probabilities (docs/protocol.md).

    patch_probs (n_patches, n_classes) and patch_clip (n_patches,), the clip id of each patch.
    Returns clip_ids (n_clips,), sorted, and clip_probs (n_clips, n_classes): the mean of each
    clip's patch probabilities ("mean": the self-supervised protocol) or their sum ("sum": the
    supervised protocol; the same argmax, but rows that no longer sum to 1).
    """
    if aggregate not in ("mean", "sum"):
        raise ValueError(f"aggregate must be 'mean' or 'sum', got {aggregate!r}")
    probs = _matrix(patch_probs, "patch_probs").cpu().double().numpy()
    clips = _ids(patch_clip, "patch_clip", length=len(probs))
    clip_ids, index, counts = np.unique(clips, return_inverse=True, return_counts=True)
    sums = np.zeros((len(clip_ids), probs.shape[1]))
    np.add.at(sums, index, probs)
    return clip_ids, sums / counts[:, None] if aggregate == "mean" else sums


# ----------------------------------------------------------------------------- accuracy


def accuracy_report(
    y_true,
    y_pred,
    *,
    n_classes: int,
    patches=None,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Micro and macro accuracy with intervals, per-class accuracy and the confusion matrix.

    y_true, y_pred: (n,) class indices of the clips. Micro accuracy (the paper's number) gets a
    Wilson interval. Macro (balanced) accuracy, the mean recall over the classes present in
    y_true, gets a percentile bootstrap interval that resamples clips within each true class
    (stratified: the test set's class counts are fixed by design, and every replicate keeps
    every class). `per_class` is None for classes absent from y_true. `y_true` and `y_pred` are
    kept, clip by clip, so that runs can later be compared over test clips as well as seeds
    (stats.seed_clip_interval). All values are JSON-able.

    patches: (n,) evaluation patches of each clip; with them, `patch_weighted` is the accuracy
    with each clip weighing its patches, as the authors' `top1.avg` (each clip's 0 or 1 times
    its patches, over all patches), and `patches` is kept beside y_true.
    """
    y_true = _labels(y_true, "y_true", n_classes=n_classes)
    y_pred = _labels(y_pred, "y_pred", n_classes=n_classes, length=len(y_true))
    _confidence(confidence)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    confusion = confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))
    support, hits = confusion.sum(axis=1), np.diag(confusion)
    present = support > 0
    recall = hits[present] / support[present]
    # Resampling the n_c clips of class c with replacement gives Binomial(n_c, recall_c) hits:
    # drawing that count directly is the same bootstrap without materialising the resamples.
    rng = np.random.default_rng(seed)
    boot = rng.binomial(support[present], recall, size=(n_boot, len(recall))) / support[present]
    tail = (1 - confidence) / 2
    macro_low, macro_high = np.quantile(boot.mean(axis=1), [tail, 1 - tail])
    n, k = len(y_true), int(hits.sum())
    return {
        "n": n,
        "confidence": confidence,
        "micro": k / n,
        "micro_ci": list(wilson_interval(k, n, confidence=confidence)),
        "macro": float(recall.mean()),
        "macro_ci": [float(macro_low), float(macro_high)],
        "intervals": "micro: Wilson score; macro: stratified percentile bootstrap over clips",
        "per_class": [float(h / s) if s else None for h, s in zip(hits, support, strict=True)],
        "support": support.tolist(),
        "confusion": confusion.tolist(),
        "y_true": y_true.tolist(),
        "y_pred": y_pred.tolist(),
    } | _patch_weighted(y_true, y_pred, patches)


def _patch_weighted(y_true: np.ndarray, y_pred: np.ndarray, patches) -> dict:
    if patches is None:
        return {}
    weights = _ids(patches, "patches", length=len(y_true)).astype(float)
    if not (weights >= 1).all():
        raise ValueError("patches must be positive counts, one per clip")
    return {
        "patch_weighted": float(((y_true == y_pred) * weights).sum() / weights.sum()),
        "patches": weights.astype(int).tolist(),
    }


# ----------------------------------------------------------------------------- kNN


def knn_predict(
    train_emb,
    train_labels,
    query_emb,
    *,
    n_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    batch_size: int = 1024,
    exclude_self: bool = False,
) -> np.ndarray:
    """Class probabilities (n_query, n_classes) from a cosine kNN with weighted votes.

    Each of the k most similar training rows votes for its label with weight
    exp(similarity / temperature) (the instance-discrimination monitor; docs/protocol.md
    uses K = 200). Queries go in batches of `batch_size`, so at most batch_size x n_train
    similarities exist at a time; k is clipped to the training set's size. With
    `exclude_self` the queries are the training rows themselves and each is classified by the
    others (leave-one-out): the kNN monitor on the clean subset needs no held-out split.
    """
    if k < 1 or temperature <= 0 or batch_size < 1:
        raise ValueError(
            f"need k >= 1, temperature > 0, batch_size >= 1; got {k}, {temperature}, {batch_size}"
        )
    train = _unit_rows(train_emb, "train_emb")
    labels = _labels(train_labels, "train_labels", n_classes=n_classes, length=len(train))
    labels = torch.as_tensor(labels, device=train.device)
    query = _unit_rows(query_emb, "query_emb").to(train)
    if query.shape[1] != train.shape[1]:
        raise ValueError(f"query_emb has dimension {query.shape[1]}, train_emb {train.shape[1]}")
    if exclude_self and len(query) != len(train):
        raise ValueError("exclude_self needs the queries to be the training rows themselves")
    k = min(k, len(train) - exclude_self)
    if k < 1:
        raise ValueError("leave-one-out kNN needs at least two training rows")
    probs = []
    starts = range(0, len(query), batch_size)
    for start, batch in zip(starts, query.split(batch_size), strict=True):
        sims = batch @ train.T
        if exclude_self:
            rows = torch.arange(len(batch), device=sims.device)
            sims[rows, rows + start] = -torch.inf
        sims, index = sims.topk(k, dim=1)
        # Shifting by each row's largest similarity leaves the normalised votes unchanged and
        # keeps exp() finite at small temperatures.
        weights = torch.exp((sims - sims[:, :1]) / temperature)
        votes = torch.zeros(len(batch), n_classes, dtype=weights.dtype, device=weights.device)
        votes.scatter_add_(1, labels[index], weights)
        probs.append(votes / votes.sum(dim=1, keepdim=True))
    return torch.cat(probs).cpu().numpy()


def clip_vote_knn(
    patch_emb, patch_labels, patch_clip, *, n_classes: int, k: int = 200, batch_size: int = 1024
):
    """The authors' kNN monitor (docs/protocol.md, *Monitor*): each patch takes the unweighted
    majority label of its k most cosine-similar patches of the other clips, each clip the
    majority of its patches' labels; ties go to the smallest class index.

    Every clip is scored against all the others (its own patches left out, so no held-out split
    is needed). Returns clip_ids (n_clips,), sorted, and each clip's share of its patches'
    labels (n_clips, n_classes), whose argmax is the clip's prediction.
    """
    emb = _unit_rows(patch_emb, "patch_emb")
    labels = _labels(patch_labels, "patch_labels", n_classes=n_classes, length=len(emb))
    clip_ids, clip_of = np.unique(
        _ids(patch_clip, "patch_clip", length=len(emb)), return_inverse=True
    )
    if len(clip_ids) < 2 or k < 1 or batch_size < 1:
        raise ValueError(
            f"need two clips or more, k >= 1 and batch_size >= 1; got {len(clip_ids)}, {k}, "
            f"{batch_size}"
        )
    labels, clip_of = (torch.as_tensor(a, device=emb.device) for a in (labels, clip_of))
    k = min(k, len(emb) - 1)
    patch_votes = []
    for batch, own in zip(emb.split(batch_size), clip_of.split(batch_size), strict=True):
        sims = (batch @ emb.T).masked_fill(own[:, None] == clip_of, -torch.inf)
        top, index = sims.topk(k, dim=1)
        votes = torch.zeros(len(batch), n_classes, device=emb.device)
        votes.scatter_add_(1, labels[index], torch.isfinite(top).float())  # own patches: no vote
        patch_votes.append(votes.argmax(1))  # the first of equal counts: the smallest class
    counts = torch.zeros(len(clip_ids), n_classes, device=emb.device)
    ones = torch.ones(len(emb), device=emb.device)
    counts.index_put_((clip_of, torch.cat(patch_votes)), ones, accumulate=True)
    return clip_ids, (counts / counts.sum(dim=1, keepdim=True)).cpu().numpy()


# ----------------------------------------------------------------------------- geometry


def uniformity(z, *, t: float = 2.0) -> float:
    """log E[exp(-t ||z_x - z_y||^2)] over distinct pairs of L2-normalised rows (Wang & Isola).

    Lower is more uniform: 0 when all rows coincide, -2t for orthonormal rows. Uses
    torch.pdist, so memory grows as n^2 / 2 (fine for test sets of a few thousand clips).
    """
    z = _unit_rows(z, "z")
    if len(z) < 2:
        raise ValueError("uniformity needs at least 2 embeddings")
    squared = torch.pdist(z).square()
    return float(torch.logsumexp(-t * squared, dim=0) - math.log(len(squared)))


def tolerance(z, labels) -> float:
    """Mean cosine similarity over all distinct same-class pairs (i != j), pooled over classes.

    Computed from per-class sums in O(n * dim): the sum of z_i . z_j over i != j in a class is
    ||sum of its z||^2 minus the sum of ||z_i||^2.
    """
    z = _unit_rows(z, "z").double()  # the difference below cancels: keep the digits
    labels = _ids(labels, "labels", length=len(z))
    _, group, counts = np.unique(labels, return_inverse=True, return_counts=True)
    pairs = int((counts * (counts - 1)).sum())
    if pairs == 0:
        raise ValueError("tolerance needs at least one class with two or more embeddings")
    group = torch.as_tensor(group, device=z.device)
    sums = torch.zeros(len(counts), z.shape[1], dtype=z.dtype, device=z.device)
    sums.index_add_(0, group, z)
    return float((sums.square().sum() - z.square().sum()) / pairs)


def pair_angles(h1, h2) -> tuple[np.ndarray, np.ndarray]:
    """Angles in radians of the positive and negative pairs of two views (N, dim) each.

    Positives: the N matching rows. Negatives: every other pair among the 2N views, each
    unordered pair once (2N(N - 1) angles), the pairs L_AM pushes beyond its margin.
    """
    a = _unit_rows(h1, "h1")
    b = _unit_rows(h2, "h2").to(a)
    if a.shape != b.shape:
        raise ValueError(f"h1 and h2 must have the same shape, got {a.shape} and {b.shape}")
    n = len(a)
    angles = _angles(torch.cat([a, b]))
    i, j = np.triu_indices(2 * n, k=1)
    negative = j != i + n
    return angles[np.arange(n), np.arange(n) + n], angles[i[negative], j[negative]]


def clip_angles(h) -> np.ndarray:
    """Angles in radians between the rows of h (n, dim), each unordered pair once."""
    unit = _unit_rows(h, "h")
    i, j = np.triu_indices(len(unit), k=1)
    return _angles(unit)[i, j]


def _angles(unit: torch.Tensor) -> np.ndarray:
    """The (n, n) angles between unit rows. For unit vectors |x - y| = 2 sin(angle / 2) and
    |x + y| = 2 cos(angle / 2): atan2 of the two stays accurate near 0 and pi, where arccos of
    the cosine does not. The distances are exact differences (no matmul shortcut, which would
    cancel small angles away)."""
    exact = "donot_use_mm_for_euclid_dist"
    difference = torch.cdist(unit, unit, compute_mode=exact)
    total = torch.cdist(unit, -unit, compute_mode=exact)
    return (2 * torch.atan2(difference, total)).cpu().double().numpy()
