"""The paper's linear evaluation, run on patch embeddings computed once.

The authors' recipe (docs/protocol.md): a frozen encoder and a new Linear(d, classes) trained
with cross-entropy on the pretraining subset's labels (noisy in FSDnoisy18k), SGD (lr 0.1,
momentum 0.9, weight decay 1e-4, batch 128) for 200 epochs with the rate x0.1 at epochs 80 and
160. Each epoch draws ONE random patch per clip, so every clip weighs the same whatever its
length. After each epoch the clip-level balanced accuracy on the clean subset is measured; the
test report of the best such epoch is the result. A clip's decision is the argmax of the mean
softmax over its patches.

The authors push each epoch's patches through the encoder; its batch-norm layers run in train
mode, so their statistics follow the un-augmented training patches. Here those statistics are
re-estimated once on such patches (`reestimate_batchnorm`), every patch is embedded once, and
each epoch draws one cached patch per clip: the same optimisation over the same inputs, seconds
instead of hours. The drawn patch starts on a grid of `hop` frames instead of at any frame.
Every clip's patches, in training, selection and test alike, are the run's evaluation patches
(embeddings.embed): every eval_hop frames while they fit, as the authors', and one aligned to
the clip's end only with the config's eval_end_patch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from aclaudio.data.atomic import atomic_write_text
from aclaudio.evaluation import metrics
from aclaudio.evaluation.embeddings import (
    clip_embeddings,
    embed,
    load_pretrained,
    project,
    result_columns,
)
from aclaudio.training.batches import TrainingData, plain_training_batches
from aclaudio.training.devices import autocast
from aclaudio.training.loop import step_sgd
from aclaudio.training.runs import Run


@dataclass(frozen=True)
class ProbeSettings:
    """The authors' linear-evaluation hyperparameters (config/params_supervised_lineval.yaml)."""

    epochs: int = 200
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 128
    milestones: tuple[int, ...] = (80, 160)
    gamma: float = 0.1
    seed: int = 0


@dataclass
class PatchEmbeddings:
    """Every patch embedding of a set of clips, grouped by clip: rows start[i]:start[i]+count[i]
    of `emb` are clip i's patches; `labels` holds one class per clip."""

    emb: np.ndarray  # (patches, dim)
    clip_of_patch: np.ndarray  # (patches,), the clip row of each patch, non-decreasing
    labels: np.ndarray  # (clips,), in the order of the clips' first patches

    def __post_init__(self):
        if np.any(np.diff(self.clip_of_patch) < 0):
            raise ValueError("clip_of_patch must be sorted: one contiguous block per clip")
        boundaries = np.flatnonzero(np.diff(self.clip_of_patch)) + 1
        self.start = np.concatenate([[0], boundaries]).astype(np.int64)
        self.count = np.diff(np.append(self.start, len(self.clip_of_patch)))
        if len(self.start) != len(self.labels):
            raise ValueError(
                f"{len(self.labels)} labels for {len(self.start)} clips: patches of one clip "
                "must be contiguous"
            )


def linear_evaluation(
    train: PatchEmbeddings,
    select: PatchEmbeddings,
    test: PatchEmbeddings,
    n_classes: int,
    settings: ProbeSettings = ProbeSettings(),
    *,
    device: torch.device | str = "cpu",
) -> dict:
    """Train the linear classifier as the authors do and report the test set at the epoch with
    the best balanced accuracy on `select` (the first such epoch on ties).

    Returns the test accuracy report (metrics.accuracy_report) with `epoch` (0-based) and
    `curve`: per epoch, the training loss and the selection and test balanced accuracies.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(settings.seed)
    classifier, optimizer, scheduler = linear_classifier(
        train.emb.shape[1], n_classes, settings, device
    )
    train_emb = torch.as_tensor(train.emb, dtype=torch.float32, device=device)
    train_labels = torch.as_tensor(train.labels, dtype=torch.long, device=device)
    start, count = torch.as_tensor(train.start), torch.as_tensor(train.count)

    curve, best = [], None
    for epoch in range(settings.epochs):
        order, picks = one_patch_per_clip(start, count, generator)
        losses = []
        for batch in torch.split(torch.arange(len(order)), settings.batch_size):
            x, y = train_emb[picks[batch].to(device)], train_labels[order[batch].to(device)]
            loss = nn.functional.cross_entropy(classifier(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
        chosen = classifier_report(classifier, select, n_classes, device)["macro"]
        report = classifier_report(classifier, test, n_classes, device)
        curve.append(
            {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "select_macro": chosen,
                "test_macro": report["macro"],
                "test_micro": report["micro"],
            }
        )
        if best is None or chosen > best[0]:
            best = (chosen, epoch, report)
    chosen, epoch, report = best
    return report | {"epoch": epoch, "select_macro": chosen, "curve": curve}


def linear_classifier(dim: int, n_classes: int, settings: ProbeSettings, device):
    """A new Linear(dim, classes) seeded by settings.seed, with the recipe's SGD and step
    schedule: (classifier, optimizer, scheduler)."""
    torch.manual_seed(settings.seed)  # the classifier's initial weights
    classifier = nn.Linear(dim, n_classes).to(device)
    optimizer, scheduler = step_sgd(
        classifier.parameters(),
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
        milestones=settings.milestones,
        gamma=settings.gamma,
    )
    return classifier, optimizer, scheduler


def one_patch_per_clip(start: torch.Tensor, count: torch.Tensor, generator: torch.Generator):
    """An epoch's draw: the clips in a random order, and for each one of its patches, uniformly
    (every clip weighs the same, however many patches it has)."""
    order = torch.randperm(len(start), generator=generator)
    offsets = (torch.rand(len(order), generator=generator) * count[order]).long()
    return order, start[order] + offsets


def classifier_report(
    classifier: nn.Module, clips: PatchEmbeddings, n_classes: int, device
) -> dict:
    with torch.no_grad():
        x = torch.as_tensor(clips.emb, dtype=torch.float32, device=device)
        probs = classifier(x).softmax(1).cpu().numpy()
    _, clip_probs = metrics.clip_probabilities(probs, clips.clip_of_patch)
    return metrics.accuracy_report(
        clips.labels, clip_probs.argmax(1), n_classes=n_classes, patches=clips.count
    )


def reestimate_batchnorm(encoder: nn.Module, batches) -> nn.Module:
    """Recompute every batch-norm layer's running statistics from `batches` (inputs as the
    encoder sees them: un-augmented training patches), as an equal-weight average over the
    batches; the weights do not change. Returns the encoder in eval mode."""
    norms = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts the same
    encoder.train()
    with torch.no_grad():
        for x in batches:
            encoder(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return encoder.eval()


def prepare_encoder(run: Run, model, data: TrainingData, config, device) -> int:
    """Load the run's best (else last) weights and re-estimate the encoder's batch-norm
    statistics (`fit_batchnorm`); returns the weights' epoch. Every rank of a distributed run
    calls it (synchronised batch norm)."""
    best_epoch = run.load_weights(model)
    fit_batchnorm(model, data, config, device)
    return best_epoch


def fit_batchnorm(model, data: TrainingData, config, device) -> None:
    """Re-estimate the encoder's batch-norm statistics on un-augmented training patches, as the
    authors' linear evaluation sees them."""
    with autocast(device, config.amp):
        reestimate_batchnorm(model.encoder, plain_training_batches(data, config, device))


def probe_encoder(model, data: TrainingData, config, device) -> tuple[dict, PatchEmbeddings]:
    """The linear evaluation of the encoder as it is: every evaluation patch (the run's grid,
    data.end_patch) embedded once, the classifier
    trained on the training subset's labels and its epoch chosen by balanced accuracy on the
    monitor subset. Returns the report and the test patches' embeddings."""
    train, select, test = (
        PatchEmbeddings(emb, clip_of_patch, data.targets(np.unique(clip_of_patch)))
        for emb, clip_of_patch in (
            embed(model.encoder, data, rows, device, amp=config.amp)
            for rows in (data.train_rows, data.monitor_rows, data.test_rows)
        )
    )
    report = linear_evaluation(
        train, select, test, data.n_classes, ProbeSettings(seed=config.seed), device=device
    )
    return report, test


#: Beside a pretraining run's evaluation: its test clips' h, z and target (evaluate_run).
TEST_EMBEDDINGS = "test_embeddings.npz"


def evaluate_run(run: Run, model, data: TrainingData, config, device, best_epoch: int) -> dict:
    """The linear evaluation (`probe_encoder`) of a pretraining run whose encoder
    `prepare_encoder` set up. Writes evaluation.json and the test clips' embeddings; returns
    the run's summary columns."""
    report, test = probe_encoder(model, data, config, device)
    test_h = clip_embeddings(test.emb, test.clip_of_patch)
    test_z = project(model, test_h, device)
    np.savez_compressed(run.path / TEST_EMBEDDINGS, h=test_h, z=test_z, target=test.labels)
    atomic_write_text(run.path / "evaluation.json", json.dumps(report, indent=1))
    return {
        "probe_epoch": report["epoch"],
        "probe_select_macro": report["select_macro"],
        "best_epoch": best_epoch,
        **result_columns(report),
        "uniformity": metrics.uniformity(test_z),
        "tolerance": metrics.tolerance(test_z, test.labels),
    }


def test_embeddings(run: Run) -> dict[str, np.ndarray]:
    """The test clips' h, z and target that evaluate_run saved with the run."""
    path = run.path / TEST_EMBEDDINGS
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no test embeddings, the run has no linear evaluation "
            f"(aclaudio linear-eval {run.path})"
        )
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}


def relinear_evaluation(run: Run, *, progress: bool = True) -> dict:
    """Linear evaluation of a finished pretraining run again (its summary is not changed); it
    writes evaluation.json and the test embeddings into the run's folder, which must be
    writable (checked before anything is computed)."""
    if not os.access(run.path, os.W_OK):
        raise PermissionError(
            f"{run.path}: read-only, and linear-eval writes its evaluation there: copy the run "
            "folder somewhere writable and evaluate the copy"
        )
    model, data, device = load_pretrained(run, progress=progress)
    best_epoch = prepare_encoder(run, model, data, run.config, device)
    return evaluate_run(run, model, data, run.config, device, best_epoch)


def curve(run: Run, *, progress: bool = True) -> pd.DataFrame:
    """The linear evaluation of each snapshot of a run (PretrainConfig.snapshot_steps), as a
    finished run's own: how accuracy grows with the number of training steps.

    One row per snapshot: step, the test accuracies with their intervals (result_columns) and
    select_macro (the monitor subset's balanced accuracy that chose the probe's epoch).
    """
    model, data, device = load_pretrained(run, progress=progress)
    steps = sorted(int(file.stem.removeprefix("step-")) for file in run.path.glob("step-*.pt"))
    rows = []
    for step in steps:
        model.load_state_dict(run.load_checkpoint(f"step-{step}")["model"])
        fit_batchnorm(model, data, run.config, device)
        report, _ = probe_encoder(model, data, run.config, device)
        select = report["select_macro"]
        rows.append({"step": step, **result_columns(report), "select_macro": select})
    return pd.DataFrame(rows)
