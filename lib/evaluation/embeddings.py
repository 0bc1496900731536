"""Networks applied to cached clips: every evaluation patch through a model, the outputs
gathered per clip, a patch classifier's clip accuracy, and a finished pretraining run's model
and embeddings."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from aclaudio.data.datasets import subset_mask
from aclaudio.evaluation import metrics
from aclaudio.nn import augment
from aclaudio.nn.models import ContrastiveModel, build_contrastive_model
from aclaudio.training.batches import TrainingData
from aclaudio.training.config import PretrainConfig
from aclaudio.training.devices import autocast, resolve_device
from aclaudio.training.runs import Run


def embed(
    encoder: nn.Module,
    data: TrainingData,
    rows: np.ndarray,
    device: torch.device,
    *,
    per_band: bool = False,
    amp: bool = True,
    hop: int | None = None,
    end_patch: bool | None = None,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of every evaluation patch of the clips (hop: the preset's eval_hop unless
    given; end_patch, see features.patch_starts: the run's eval_end_patch, data.end_patch,
    unless given): (patches, dim) and the clip row of each."""
    end_patch = data.end_patch if end_patch is None else end_patch
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
    return metrics.clip_probabilities(patch_emb, clip_of_patch)[1]


def project(model: ContrastiveModel, h: np.ndarray, device: torch.device) -> np.ndarray:
    """z = head(h) for clip embeddings (h itself when the model has no projection head)."""
    if model.head is None:
        return h
    with torch.no_grad():
        return model.head.eval()(torch.from_numpy(h).float().to(device)).cpu().numpy()


def clip_report(
    classifier,
    data: TrainingData,
    rows,
    device,
    amp: bool,
    *,
    per_band: bool = False,
    hop: int | None = None,
    end_patch: bool | None = None,
    aggregate: str = "mean",
) -> dict:
    """Accuracy of a patch classifier on clips: softmax over every patch (embed's), aggregated
    per clip (metrics.accuracy_report, the patch-weighted accuracy included)."""
    logits, clip_of_patch = embed(
        classifier, data, rows, device, amp=amp, per_band=per_band, hop=hop, end_patch=end_patch
    )
    probs = torch.from_numpy(logits).softmax(1).numpy()
    ids, clip_probs = metrics.clip_probabilities(probs, clip_of_patch, aggregate=aggregate)
    patches = np.unique(clip_of_patch, return_counts=True)[1]  # in the order of ids
    return metrics.accuracy_report(
        data.targets(ids), clip_probs.argmax(1), n_classes=data.n_classes, patches=patches
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
        "test_patch_weighted": report.get("patch_weighted"),
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
