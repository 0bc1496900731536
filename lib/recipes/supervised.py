"""The supervised baseline from start to finish: the FSDnoisy18k baseline CNN trained on
labelled patches with the config's objective (cross-entropy, supervised ACL, ...), the
checkpoint of lowest validation loss kept, then tested on whole clips.

It reads as pretrain.py does; each epoch is loop.train_epoch with step.labelled_step. The
protocol, and where it differs from the authors' code: docs/protocol.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from aclaudio.data.atomic import atomic_write_text
from aclaudio.evaluation.embeddings import clip_report, result_columns
from aclaudio.nn import objectives
from aclaudio.nn.models import BaselineCNN, Logits, in_memory_format
from aclaudio.training.batches import (
    TrainingData,
    labelled_patches,
    patch_index,
    patch_statistics,
    validation_split,
    whole_batches,
)
from aclaudio.training.config import SupervisedConfig
from aclaudio.training.devices import compiled, resolve_device
from aclaudio.training.loop import capture, finish, restore, seed_epoch, train_epoch
from aclaudio.training.runs import Run, claimed_run
from aclaudio.training.step import labelled_step


def supervised(config: SupervisedConfig, *, runs_dir=None, progress: bool = True) -> Run:
    """The baseline CNN with the config's objective; the lowest-validation-loss checkpoint is
    tested.

    Example:
        >>> run = supervised(profile_config("supervised", "smoke", data_dir="data/builtin-smoke"))
    """
    with claimed_run(config, runs_dir) as run:
        return run if run.finished else _supervised(run, config, progress)


def _supervised(run: Run, config: SupervisedConfig, progress: bool) -> Run:
    started = time.perf_counter()
    device = resolve_device(config.device)
    data = TrainingData.load(config, progress=progress)
    train_patches, val_patches, notes = _patches(run, data, config)
    # the authors' StandardScaler: per band, fitted on the training patches after the split,
    # applied to training, validation and test patches alike
    mean, std = patch_statistics(data.cache, train_patches, data.cache.preset.patch_frames)
    data = dataclasses.replace(data, mean=mean, std=std)
    model, optimizer, scheduler = _network(data, config, device)
    step_model = compiled(model, config)
    modules = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    state = restore(run, modules)
    best = state.get("best", math.inf)
    objective = objectives.build(config.objective, "labels", config.loss)
    normaliser = data.normaliser(device, per_band=True)
    step = functools.partial(
        labelled_step,
        step_model,
        objective=objective,
        normaliser=normaliser,
        execution=config,
        device=device,
    )

    for epoch in range(state.get("epoch", -1) + 1, config.epochs):
        _, rng = seed_epoch(config.seed, epoch)
        patches = whole_batches(train_patches, config.batch_size, rng)
        n_steps = math.ceil(len(patches) / config.batch_size)
        batches = labelled_patches(data, patches, config.batch_size)
        result = train_epoch(
            step_model,
            optimizer,
            batches,
            step,
            n_steps,
            device,
            run=run,
            epoch=epoch,
            epochs=config.epochs,
            progress=progress,
        )
        val_batches = labelled_patches(data, val_patches, config.batch_size)
        best = _validate_and_save(run, modules, step, val_batches, device, epoch, result, best)

    best_epoch = run.load_weights(model)
    summary = _test(run, model, data, config, device) | {
        "best_epoch": best_epoch,
        "best_val_loss": best if math.isfinite(best) else None,
        "warnings": notes,
    }
    return finish(run, summary, started, device)


def _validate_and_save(run, modules, step, val_batches, device, epoch, result, best) -> float:
    """After an epoch: the validation loss steps the learning-rate schedule and keeps the best
    checkpoint; the epoch is logged and checkpointed. Returns the lowest validation loss."""
    model, optimizer, scheduler = modules["model"], modules["optimizer"], modules["scheduler"]
    val_loss = validation_loss(model, step, val_batches, device)
    if math.isfinite(val_loss):  # without a validation loss the learning rate stays as it is
        scheduler.step(val_loss)
    if val_loss < best:
        best = val_loss
        run.save_checkpoint({"model": model.state_dict(), "epoch": epoch}, "best")
    lr = optimizer.param_groups[0]["lr"]
    row = {"epoch": epoch, "loss": result.loss, "val_loss": val_loss, "lr": lr}
    run.log_epoch(row | {"seconds": result.seconds})
    run.save_checkpoint(capture(modules, epoch=epoch, best=best))
    return best


def _network(data: TrainingData, config: SupervisedConfig, device: torch.device):
    """The baseline CNN seeded by the config, its Adam optimiser and plateau schedule."""
    preset = data.cache.preset
    torch.manual_seed(config.seed)
    model = BaselineCNN(n_classes=data.n_classes, n_mels=preset.n_mels, frames=preset.patch_frames)
    model = in_memory_format(model.to(device), config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.plateau_factor, patience=config.plateau_patience
    )
    return model, optimizer, scheduler


def _test(run: Run, model: nn.Module, data: TrainingData, config: SupervisedConfig, device) -> dict:
    """The test as the authors' (docs/protocol.md): non-overlapping patches, the remainder
    dropped unless test_end_patch, softmax summed per clip, argmax. Writes evaluation.json;
    returns the result columns."""
    report = clip_report(
        Logits(model),
        data,
        data.test_rows,
        device,
        config.amp,
        per_band=True,
        hop=data.cache.preset.patch_frames,
        end_patch=config.test_end_patch,
        aggregate="sum",
    )
    atomic_write_text(run.path / "evaluation.json", json.dumps(report, indent=1))
    return result_columns(report)


def _patches(run: Run, data: TrainingData, config: SupervisedConfig):
    """The training patches, the validation patches and the warnings about classes without
    training or validation clips.

    The authors' validation: training-sized batches, shuffled, the last partial one dropped,
    so that the angular term (a sum over the batch's pairs) is on the training scale. One order
    for every epoch (theirs reshuffle), so that epochs are compared on the same batches.
    """
    train_rows, val_rows = validation_split(
        data.train_rows, data.targets(data.train_rows), config.val_fraction, config.seed
    )
    notes = data.class_warnings(run, train_rows, val_rows, "a validation clip")
    frames = data.cache.preset.patch_frames
    train_patches = patch_index(data.cache, train_rows, frames, config.train_hop)
    val_patches = whole_batches(
        patch_index(data.cache, val_rows, frames, config.train_hop),
        config.batch_size,
        np.random.default_rng(config.seed),
    )
    return train_patches, val_patches, notes


def validation_loss(model: nn.Module, step: Callable, batches: Iterator, device) -> float:
    """The mean of the batches' losses, in eval mode, as the authors'; NaN without a batch."""
    model.eval()
    with torch.no_grad():
        values = [
            step((torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))).loss.item()
            for x, y in batches
        ]
    return float(np.mean(values)) if values else math.nan
