"""Self-supervised pretraining from start to finish: train on two views with the config's
objective, monitor with kNN, then the linear evaluation of the kept checkpoint.

It reads as every recipe does (after nanoGPT): the run store decides whether there is anything
to do; the model, optimiser and scheduler are built; the state is a plain dict checkpointed
atomically every epoch; each epoch is loop.train_epoch over the epoch's batches with
step.contrastive_step, then the monitor picks the best checkpoint; the kept weights are
evaluated and the run finished. Resumable at any point, the same under torchrun.

The protocol, and where it differs from the authors' code: docs/protocol.md.
"""

from __future__ import annotations

import functools
import math
import time

import torch
from torch import nn

from aclaudio.evaluation import probe
from aclaudio.evaluation.monitor import knn_monitor, knn_rows, sparse_monitor_warnings
from aclaudio.nn import objectives
from aclaudio.nn.models import build_contrastive_model
from aclaudio.training.batches import TrainingData, contrastive_batches
from aclaudio.training.config import PretrainConfig
from aclaudio.training.devices import (
    barrier,
    compiled,
    init_distributed,
    is_distributed,
    rank_and_world,
    wrap_distributed,
)
from aclaudio.training.loop import (
    Epoch,
    capture,
    config_sgd,
    finish,
    restore,
    seed_epoch,
    train_epoch,
)
from aclaudio.training.runs import Run, claimed_run
from aclaudio.training.step import Augmentation, contrastive_step


def pretrain(config: PretrainConfig, *, runs_dir=None, progress: bool = True) -> Run:
    """Self-supervised pretraining, kNN monitor, then linear evaluation of the best checkpoint.

    Example:
        >>> run = pretrain(profile_config("pretrain", "smoke", data_dir="data/builtin-smoke"))
        >>> run.summary()["test_micro"]
    """
    with claimed_run(config, runs_dir) as run:
        if run.finished:
            run.weights()  # later commands use them: a damaged file is reported now, not then
            return run
        return _pretrain(run, config, progress)


def _pretrain(run: Run, config: PretrainConfig, progress: bool) -> Run:
    started = time.perf_counter()
    device = init_distributed(config.device)
    rank, world = rank_and_world()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by {world} processes")
    data = TrainingData.load(config, progress=progress and rank == 0)
    notes = data.class_warnings(
        run,
        data.train_rows,
        knn_rows(data),
        f"two {config.monitor_subset!r} clips for the kNN monitor",
    ) + sparse_monitor_warnings(run, data, config)
    model = build_contrastive_model(config, device)
    step_model = compiled(wrap_distributed(model, device), config)
    objective = objectives.build(config.objective, "views", config.loss, gather=is_distributed())
    optimizer, scheduler = config_sgd(model.parameters(), config)
    modules = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    state = restore(run, modules)
    best = state.get("best", -math.inf)
    plan = epoch_steps(config, data)
    encoder = list(model.encoder.parameters())  # where each term's gradient is measured

    for epoch in range(state.get("epoch", -1) + 1, len(plan)):
        result = contrastive_epoch(
            step_model,
            optimizer,
            data,
            config,
            objective,
            epoch,
            plan,
            device,
            run=run,
            measure=encoder,
            progress=progress and rank == 0,
        )
        scheduler.step()
        if rank == 0:  # rank 0 monitors, logs and checkpoints; the others wait for it
            best = _monitor_and_save(run, modules, data, config, device, epoch, plan, result, best)
        barrier()

    best_epoch = probe.prepare_encoder(run, model, data, config, device)  # on every rank: batch
    if rank != 0:  # norm may be synchronised across them (SyncBatchNorm on GPUs)
        return run
    summary = probe.evaluate_run(run, model, data, config, device, best_epoch)
    summary |= {"finished_epochs": len(plan), "finished_steps": sum(plan), "warnings": notes}
    return finish(run, summary, started, device)


def epoch_steps(config: PretrainConfig, data: TrainingData) -> list[int]:
    """The SGD steps of each epoch: `epochs` whole ones, or with a step budget as many as it
    takes, the last cut short, so that the budget means the same training on any dataset.

    An epoch is every training clip once; the last partial batch is dropped, as in SimCLR.
    """
    per_epoch = len(data.train_rows) // config.batch_size
    if per_epoch == 0:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the {len(data.train_rows)} training clips"
        )
    if not config.steps:
        return [per_epoch] * config.epochs
    whole, rest = divmod(config.steps, per_epoch)
    return [per_epoch] * whole + [rest] * (rest > 0)


def contrastive_epoch(
    step_model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TrainingData,
    config: PretrainConfig,
    objective: objectives.Objective,
    epoch: int,
    plan: list[int],
    device: torch.device,
    *,
    run: Run | None = None,
    measure: list[torch.Tensor] | None = None,
    progress: bool = False,
) -> Epoch:
    """One epoch of two-view training, plan[epoch] steps (epoch_steps) of distinct clips;
    `measure`: the parameters on which the first step measures each term's gradient."""
    seed, rng = seed_epoch(config.seed, epoch)
    generator = torch.Generator(device).manual_seed(seed + rank_and_world()[0])
    augmentation = Augmentation(config.augment, *data.normaliser(device, per_band=False), generator)
    order = rng.permutation(data.train_rows)[: plan[epoch] * config.batch_size]
    batches = contrastive_batches(data, order, config.batch_size, rng)
    step = functools.partial(
        contrastive_step,
        step_model,
        objective=objective,
        augmentation=augmentation,
        execution=config,
        device=device,
    )
    return train_epoch(
        step_model,
        optimizer,
        batches,
        step,
        plan[epoch],
        device,
        measure=measure,
        run=run,
        epoch=epoch,
        epochs=len(plan),
        progress=progress,
    )


def _monitor_and_save(run, modules, data, config, device, epoch, plan, result, best) -> float:
    """Log the epoch (with both kNN monitors every knn_every epochs and at the end), keep the
    monitor's best checkpoint and the snapshots asked for, checkpoint the state; returns the
    best monitor score so far."""
    model, lr = modules["model"], modules["optimizer"].param_groups[0]["lr"]
    steps = sum(plan[: epoch + 1])
    row = {
        "epoch": epoch,
        "steps": steps,
        "loss": result.loss,
        "lr": lr,
        "seconds": result.seconds,
        "clips_per_s": plan[epoch] * config.batch_size / result.seconds,
        **result.gradient_norms,
    }
    if (epoch + 1) % config.knn_every == 0 or epoch == len(plan) - 1:
        scores = knn_monitor(model, data, config, device)
        row |= {f"knn_{name}": score for name, score in scores.items()}
        if config.monitor != "last":  # else no best.pt: the last checkpoint is evaluated
            row["knn_balanced_acc"] = scores[config.monitor]
            if row["knn_balanced_acc"] > best:
                best = row["knn_balanced_acc"]
                run.save_checkpoint({"model": model.state_dict(), "epoch": epoch}, "best")
    if any(steps - plan[epoch] < s <= steps for s in config.snapshot_steps):
        run.save_checkpoint({"model": model.state_dict(), "epoch": epoch}, f"step-{steps}")
    run.log_epoch(row)
    run.save_checkpoint(capture(modules, epoch=epoch, best=best))
    return best
