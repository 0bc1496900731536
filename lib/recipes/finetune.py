"""Fine-tuning from start to finish: every layer of a pretraining run's encoder plus a linear
classifier, trained with cross-entropy on one random patch of each clip of the pretraining
subset per epoch (its noisy labels; the last, smaller batch kept), by SGD with the rate
x lr_gamma after each of lr_milestones; the first epoch with the best balanced accuracy on the
monitor (clean) subset is tested. The authors' recipe (SSL config/params_supervised_finetune.yaml,
main_train.py) and how each profile sizes it: profiles.py.

It reads as pretrain.py does; each epoch is loop.train_epoch with step.labelled_step.
"""

from __future__ import annotations

import functools
import json
import math
import time

import torch

from aclaudio.data.atomic import atomic_write_text
from aclaudio.evaluation.embeddings import clip_report, load_pretrained, result_columns
from aclaudio.nn import objectives
from aclaudio.nn.models import Classifier, Logits, in_memory_format
from aclaudio.training.batches import labelled_random_patches
from aclaudio.training.config import FinetuneConfig
from aclaudio.training.devices import compiled, resolve_device
from aclaudio.training.loop import capture, config_sgd, finish, restore, seed_epoch, train_epoch
from aclaudio.training.runs import Run, claimed_run, load_run
from aclaudio.training.step import labelled_step


def finetune(config: FinetuneConfig, *, runs_dir=None, progress: bool = True) -> Run:
    """Fine-tune the pretraining run `config.pretrain_run` (module doc).

    Example:
        >>> run = finetune(make_config("finetune", pretrain_run="runs/pretrain-0e3638d90ca2"))
    """
    parent = load_run(config.pretrain_run)
    if not parent.finished:
        raise ValueError(f"{parent.path}: pretraining has not finished; run it first")
    with claimed_run(config, runs_dir) as run:
        return run if run.finished else _finetune(run, parent, config, progress)


def _finetune(run: Run, parent: Run, config: FinetuneConfig, progress: bool) -> Run:
    started = time.perf_counter()
    model, data, _ = load_pretrained(parent, progress=progress)
    notes = data.class_warnings(run, data.train_rows, data.monitor_rows, "a monitor clip")
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    classifier = in_memory_format(Classifier(model.encoder, data.n_classes).to(device), config)
    step_model = compiled(classifier, config)
    optimizer, scheduler = config_sgd(classifier.parameters(), config)
    modules = {"model": classifier, "optimizer": optimizer, "scheduler": scheduler}
    state = restore(run, modules)
    best = state.get("best", -math.inf)
    step = functools.partial(
        labelled_step,
        step_model,
        objective=objectives.build("cross_entropy", "labels"),
        normaliser=data.normaliser(device, per_band=False),
        execution=config,
        device=device,
    )

    for epoch in range(state.get("epoch", -1) + 1, config.epochs):
        _, rng = seed_epoch(config.seed, epoch)
        order = rng.permutation(data.train_rows)
        n_steps = math.ceil(len(order) / config.batch_size)
        batches = labelled_random_patches(data, order, config.batch_size, rng)
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
        lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
        scheduler.step()
        best = _monitor_and_save(run, modules, data, device, epoch, result, lr, best)

    best_epoch = run.load_weights(classifier)
    report = clip_report(Logits(classifier), data, data.test_rows, device, config.amp)
    atomic_write_text(run.path / "evaluation.json", json.dumps(report, indent=1))
    summary = result_columns(report) | {
        "best_epoch": best_epoch,
        "pretrain_run": parent.id,
        "warnings": notes,
    }
    return finish(run, summary, started, device)


#: What chooses the fine-tuning's epoch: balanced accuracy (the mean per-class recall) on the
#: monitor subset, as the authors' (main_train.py compares acc_val_balanced)
SELECTION = "macro"


def _monitor_and_save(run, modules, data, device, epoch, result, lr: float, best: float) -> float:
    """After an epoch: the monitor subset's balanced accuracy keeps the best checkpoint (the
    first of equal epochs); the epoch is logged and checkpointed. Returns the best score."""
    classifier = modules["model"]
    report = clip_report(Logits(classifier), data, data.monitor_rows, device, run.config.amp)
    if report[SELECTION] > best:
        best = report[SELECTION]
        run.save_checkpoint({"model": classifier.state_dict(), "epoch": epoch}, "best")
    row = {"epoch": epoch, "loss": result.loss, "lr": lr}
    row |= {"monitor_macro": report["macro"], "monitor_micro": report["micro"]}
    run.log_epoch(row | {"seconds": result.seconds})
    run.save_checkpoint(capture(modules, epoch=epoch, best=best))
    return best
