"""The kNN monitor of pretraining: how well the encoder's embeddings of the monitor (clean)
clips, each classified by its neighbours, sort them into classes; the monitor chooses the
checkpoint that is evaluated."""

from __future__ import annotations

import math
import warnings

import numpy as np

from aclaudio.evaluation import metrics
from aclaudio.evaluation.embeddings import clip_embeddings, embed, project
from aclaudio.nn.models import ContrastiveModel
from aclaudio.training.batches import TrainingData
from aclaudio.training.runs import Run, RunWarning

# Below this many monitor clips per class (on average) the kNN monitor's choice of epoch is noise.
MIN_CLIPS_PER_CLASS = 5


def knn_rows(data: TrainingData) -> np.ndarray:
    """The monitor clips a leave-one-out kNN can score: those of classes with two or more."""
    labels = data.targets(data.monitor_rows)
    return data.monitor_rows[np.bincount(labels)[labels] >= 2]


def knn_monitor(model: ContrastiveModel, data: TrainingData, config, device) -> dict[str, float]:
    """Balanced accuracy of both kNN monitors on the monitor (clean) subset's clips, each clip
    classified by the others (docs/protocol.md, *Monitor*), by monitor name: `patch_vote_z`,
    the authors' (unweighted votes of the projections z of the run's evaluation patches,
    embeddings.embed, then a majority per clip), and `clip_mean_h` (the clip-mean encoder
    output h, votes weighted by exp(similarity / 0.07)). NaN when no class has two clips (a
    lone clip has no neighbour of its class)."""
    rows = knn_rows(data)
    if len(rows) == 0:
        return dict.fromkeys(("patch_vote_z", "clip_mean_h"), math.nan)
    h, clip_of_patch = embed(model.encoder, data, rows, device, amp=config.amp)
    labels, k, n_classes = data.targets(rows), config.knn_k, data.n_classes
    _, votes = metrics.clip_vote_knn(
        project(model, h, device),
        data.targets(clip_of_patch),
        clip_of_patch,
        n_classes=n_classes,
        k=k,
    )
    clips = clip_embeddings(h, clip_of_patch)
    probs = metrics.knn_predict(clips, labels, clips, k=k, n_classes=n_classes, exclude_self=True)
    return {
        name: metrics.accuracy_report(labels, scores.argmax(1), n_classes=n_classes)["macro"]
        for name, scores in (("patch_vote_z", votes), ("clip_mean_h", probs))
    }


def sparse_monitor_warnings(run: Run, data: TrainingData, config) -> list[str]:
    """Warn when the monitor chooses the checkpoint from fewer than MIN_CLIPS_PER_CLASS clips
    per class on average: its choice is then mostly noise, and `monitor=last` may serve better.
    Returned for the run's summary."""
    rows = knn_rows(data)
    per_class = len(rows) / data.n_classes
    if config.monitor == "last" or len(rows) == 0 or per_class >= MIN_CLIPS_PER_CLASS:
        return []  # without any clip class_warnings says that the last epoch is kept
    note = (
        f"{run.id}: the kNN monitor ({config.monitor}) scores {per_class:.1f} "
        f"{config.monitor_subset!r} clips per class, fewer than {MIN_CLIPS_PER_CLASS}: the epoch "
        "it chooses is mostly chance; --set monitor=last keeps the last epoch instead"
    )
    warnings.warn(note, RunWarning, stacklevel=2)
    return [note]
