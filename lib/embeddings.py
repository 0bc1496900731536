"""Networks applied to cached clips: every evaluation patch through a model, the outputs
gathered per clip, and the two checks that read them during training (the kNN monitor of
pretraining, the clip accuracy of a patch classifier)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from . import augment, evaluate
from .config import PretrainConfig
from .datasets import subset_mask
from .devices import autocast, resolve_device
from .models import ContrastiveModel, build_contrastive_model
from .runs import Run, RunWarning
from .views import TrainingData

# Below this many monitor clips per class (on average) the kNN monitor's choice of epoch is noise.
MIN_CLIPS_PER_CLASS = 5


def embed(
    encoder: nn.Module,
    data: TrainingData,
    rows: np.ndarray,
    device: torch.device,
    *,
    per_band: bool = False,
    amp: bool = True,
    hop: int | None = None,
    end_patch: bool = True,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of every evaluation patch of the clips (hop: the preset's eval_hop unless
    given; end_patch: see features.patch_starts): (patches, dim) and the clip row of each."""
    mean, std = data.normaliser(device, per_band=per_band)
    patches = [(data.cache.clip_patches(int(r), hop=hop, end_patch=end_patch), r) for r in rows]
    clip_of_patch = np.concatenate([np.full(len(p), r) for p, r in patches])
    stacked = np.concatenate([p for p, _ in patches])
    encoder.eval()
    outputs = []
    with torch.no_grad(), autocast(device, amp):
        for start in range(0, len(stacked), batch_size):
            x = torch.from_numpy(stacked[start : start + batch_size, None]).to(device)
            outputs.append(encoder(augment.normalise(x, mean, std)).float().cpu())
    return torch.cat(outputs).numpy(), clip_of_patch


def clip_embeddings(patch_emb: np.ndarray, clip_of_patch: np.ndarray) -> np.ndarray:
    """Mean patch embedding per clip, in sorted clip-row order (the order of every row set here)."""
    return evaluate.clip_probabilities(patch_emb, clip_of_patch)[1]


def project(model: ContrastiveModel, h: np.ndarray, device: torch.device) -> np.ndarray:
    """z = head(h) for clip embeddings (h itself when the model has no projection head)."""
    if model.head is None:
        return h
    with torch.no_grad():
        return model.head.eval()(torch.from_numpy(h).float().to(device)).cpu().numpy()


def knn_rows(data: TrainingData) -> np.ndarray:
    """The monitor clips a leave-one-out kNN can score: those of classes with two or more."""
    labels = data.targets(data.monitor_rows)
    return data.monitor_rows[np.bincount(labels)[labels] >= 2]


def knn_monitor(model: ContrastiveModel, data: TrainingData, config, device) -> dict[str, float]:
    """Balanced accuracy of both kNN monitors on the monitor (clean) subset's clips, each clip
    classified by the others (docs/protocol.md, *Monitor*): `knn_patch_vote_z`, the authors'
    (unweighted votes of patch projections z, then a majority per clip), and `knn_clip_mean_h`
    (the clip-mean encoder output h, votes weighted by exp(similarity / 0.07)). NaN when no
    class has two clips (a lone clip has no neighbour of its class)."""
    rows = knn_rows(data)
    if len(rows) == 0:
        return dict.fromkeys(("knn_patch_vote_z", "knn_clip_mean_h"), math.nan)
    h, clip_of_patch = embed(model.encoder, data, rows, device, amp=config.amp)
    labels, k, n_classes = data.targets(rows), config.knn_k, data.n_classes
    _, votes = evaluate.clip_vote_knn(
        project(model, h, device), data.targets(clip_of_patch), clip_of_patch,
        n_classes=n_classes, k=k,
    )  # fmt: skip
    clips = clip_embeddings(h, clip_of_patch)
    probs = evaluate.knn_predict(clips, labels, clips, k=k, n_classes=n_classes, exclude_self=True)
    return {
        name: evaluate.accuracy_report(labels, scores.argmax(1), n_classes=n_classes)["macro"]
        for name, scores in (("knn_patch_vote_z", votes), ("knn_clip_mean_h", probs))
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


def clip_report(
    classifier,
    data: TrainingData,
    rows,
    device,
    amp: bool,
    *,
    per_band: bool = False,
    hop: int | None = None,
    end_patch: bool = True,
    aggregate: str = "mean",
) -> dict:
    """Accuracy of a patch classifier on clips: softmax over every patch, aggregated per clip."""
    logits, clip_of_patch = embed(
        classifier, data, rows, device, amp=amp, per_band=per_band, hop=hop, end_patch=end_patch
    )
    probs = torch.from_numpy(logits).softmax(1).numpy()
    ids, clip_probs = evaluate.clip_probabilities(probs, clip_of_patch, aggregate=aggregate)
    return evaluate.accuracy_report(
        data.targets(ids), clip_probs.argmax(1), n_classes=data.n_classes
    )


def result_columns(report: dict) -> dict:
    """The flat numbers of an accuracy report, as result-table columns."""
    return {
        "test_n": report["n"],
        "test_micro": report["micro"],
        "test_micro_low": report["micro_ci"][0],
        "test_micro_high": report["micro_ci"][1],
        "test_macro": report["macro"],
        "test_macro_low": report["macro_ci"][0],
        "test_macro_high": report["macro_ci"][1],
    }


def load_pretrained(run: Run, *, progress: bool = True):
    """A pretraining run's model (best checkpoint, else last), its data and device."""
    if not isinstance(run.config, PretrainConfig):
        raise ValueError(f"{run.path}: not a pretraining run")
    device = resolve_device(run.config.device)
    data = TrainingData.load(run.config, progress=progress)
    model = build_contrastive_model(run.config, device)
    run.load_weights(model)
    return model, data, device


def embed_subset(run: Run, subset: str, *, progress: bool = True) -> dict[str, np.ndarray]:
    """Clip embeddings of a subset: h (encoder), z (projection), targets and file names."""
    model, data, device = load_pretrained(run, progress=progress)
    rows = np.flatnonzero(subset_mask(data.cache.clips, subset))
    patch_emb, clip_of_patch = embed(model.encoder, data, rows, device, amp=run.config.amp)
    h = clip_embeddings(patch_emb, clip_of_patch)
    return {
        "h": h,
        "z": project(model, h, device),
        "target": data.targets(rows),
        "fname": data.cache.clips["fname"].to_numpy()[rows].astype(str),
    }
