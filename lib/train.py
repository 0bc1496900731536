"""Training: self-supervised pretraining with ACL, the supervised baseline and fine-tuning.

Each kind reads the same way (after nanoGPT): the run store decides whether there is anything
to do; the model, optimiser and scheduler are built; state is a plain dict checkpointed
atomically every epoch; each epoch is `train_epoch` over that kind's batches and loss, then
its monitor picks the best checkpoint; the best weights are evaluated and the run finished.

Every kind runs on the skeleton of loop.py: per-epoch seeding, the optimisation steps, the
checkpointed state, resumable at any point.

One pretraining step, in order: `contrastive_epoch` draws the batch (views.contrastive_batches)
-> `train_epoch` -> `contrastive_loss` (augment.two_views, the model, losses.acl) -> backward
and the optimiser step in `train_epoch`.

The protocol, and where it differs from the authors' code: see docs/protocol.md.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from . import augment, losses, models, probe
from .atomic import atomic_write_text
from .config import FinetuneConfig, PretrainConfig, SupervisedConfig
from .devices import (
    barrier,
    compiled,
    forward,
    in_memory_format,
    init_distributed,
    is_distributed,
    rank_and_world,
    resolve_device,
    wrap_distributed,
)
from .embeddings import (
    clip_report,
    knn_monitor,
    knn_rows,
    load_pretrained,
    result_columns,
    sparse_monitor_warnings,
)
from .loop import capture, finish, restore, seed_epoch, train_epoch
from .runs import Run, claimed_run, load_run
from .views import (
    TrainingData,
    contrastive_batches,
    labelled_patches,
    labelled_random_patches,
    patch_index,
    validation_split,
    whole_batches,
)

# ----------------------------------------------------------------------------- pretraining


def pretrain(config: PretrainConfig, *, runs_dir=None, progress: bool = True) -> Run:
    """Self-supervised pretraining, kNN monitor, then linear evaluation of the best checkpoint."""
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
    model = models.build_contrastive_model(config, device)
    step_model = compiled(wrap_distributed(model, device), config)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.lr_milestones), gamma=config.lr_gamma
    )
    modules = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    state = restore(run, modules)
    best = state.get("best", -math.inf)
    plan = epoch_steps(config, data)

    for epoch in range(state.get("epoch", -1) + 1, len(plan)):
        grad_norms: dict[str, float] = {}
        loss, n_steps, seconds = contrastive_epoch(
            step_model,
            optimizer,
            data,
            config,
            epoch,
            device,
            run=run,
            grad_norms=grad_norms,
            progress=progress and rank == 0,
        )
        scheduler.step()
        if rank != 0:  # rank 0 monitors, logs and checkpoints; the others wait for it
            barrier()
            continue
        lr, clips_per_s = optimizer.param_groups[0]["lr"], n_steps * config.batch_size / seconds
        steps = sum(plan[: epoch + 1])
        row = {
            "epoch": epoch,
            "steps": steps,
            "loss": loss,
            "lr": lr,
            "seconds": seconds,
            "clips_per_s": clips_per_s,
            **grad_norms,
        }
        if (epoch + 1) % config.knn_every == 0 or epoch == len(plan) - 1:
            row |= knn_monitor(model, data, config, device)
            if config.monitor != "last":  # else no best.pt: the last checkpoint is evaluated
                row["knn_balanced_acc"] = row[f"knn_{config.monitor}"]
                if row["knn_balanced_acc"] > best:
                    best = row["knn_balanced_acc"]
                    run.save_checkpoint({"model": model.state_dict(), "epoch": epoch}, "best")
        if any(steps - n_steps < s <= steps for s in config.snapshot_steps):
            run.save_checkpoint({"model": model.state_dict(), "epoch": epoch}, f"step-{steps}")
        run.log_epoch(row)
        run.save_checkpoint(capture(modules, epoch=epoch, best=best))
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
    epoch: int,
    device: torch.device,
    *,
    run: Run | None = None,
    max_steps: int | None = None,
    grad_norms: dict[str, float] | None = None,
    progress: bool = False,
) -> tuple[float, int, float]:
    """One epoch of two-view training (its steps from `epoch_steps`, at most `max_steps`, for
    benchmarks): the mean loss, the number of steps and the seconds taken. `grad_norms`, when
    given, receives `term_gradient_norms` of the epoch's first batch."""
    seed, rng = seed_epoch(config.seed, epoch)
    generator = torch.Generator(device).manual_seed(seed + rank_and_world()[0])
    mean, std = data.normaliser(device, per_band=False)
    order = rng.permutation(data.train_rows)
    plan = epoch_steps(config, data)
    n_steps = min(plan[epoch], max_steps or plan[epoch])
    batches = contrastive_batches(
        data, order[: n_steps * config.batch_size], config.batch_size, rng, config.background
    )
    encoder = list(_unwrapped(step_model).encoder.parameters())

    def measure(*embeddings):
        grad_norms.update(term_gradient_norms(*embeddings, config, encoder))

    def loss_of(x1, x2, bg1, bg2):
        with torch.no_grad():
            views = augment.two_views(
                x1, x2, bg1, bg2, config.augment, mean=mean, std=std, generator=generator
            )
        first = grad_norms is not None and not grad_norms  # the epoch's first batch, if asked
        return contrastive_loss(
            step_model, *views, config, device, inspect=measure if first else None
        )

    loss, seconds = train_epoch(step_model, optimizer, batches, loss_of, n_steps, device, run=run,
                                epoch=epoch, epochs=len(plan), progress=progress)  # fmt: skip
    return loss, n_steps, seconds


def contrastive_loss(
    model: nn.Module,
    v1: torch.Tensor,
    v2: torch.Tensor,
    config: PretrainConfig,
    device,
    *,
    inspect: Callable[..., None] | None = None,
) -> torch.Tensor:
    """ACL of two batches of views, forwarded in one call (each view apart if the config asks);
    `inspect`, when given, sees the embeddings h1, h2, z1, z2 first.

    Under torch.distributed the loss gathers every rank's embeddings (negatives span the
    global batch) and DDP averages the gradients: the step equals the single-process one.
    """
    h, z = forward(model, torch.cat([v1, v2]), config, device, views_apart=config.views_apart)
    h1, h2 = h.float().chunk(2)
    z1, z2 = z.float().chunk(2)
    if inspect is not None:
        inspect(h1, h2, z1, z2)
    return losses.acl(h1, h2, z1, z2, **loss_settings(config))


def loss_settings(config: PretrainConfig) -> dict:
    """The config's keyword arguments of losses.acl and losses.acl_terms."""
    return dict(alpha=config.alpha, margin=config.margin, temperature=config.temperature,
                reduction=config.reduction, gather=is_distributed())  # fmt: skip


def term_gradient_norms(h1, h2, z1, z2, config: PretrainConfig, params: list) -> dict[str, float]:
    """The norm of the gradient that each term of the loss, alpha * NT-Xent and (1 - alpha) *
    angular margin, puts on `params` (the encoder's): which term drives training.

    Two backward passes through the embeddings' graph, kept for the step's own backward; no
    parameter's .grad is touched. Under torch.distributed: this rank's share of the batch.
    """
    norms = {}
    terms = losses.acl_terms(h1, h2, z1, z2, **loss_settings(config))
    for name, term in zip(("grad_ntxent", "grad_angular"), terms, strict=True):
        grads = torch.autograd.grad(term, params, retain_graph=True)
        norms[name] = torch.stack([g.norm() for g in grads]).norm().item()
    return norms


def _unwrapped(model: nn.Module) -> nn.Module:
    """The model inside torch.compile's and DDP's wrappers (they share its parameters)."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


# ----------------------------------------------------------------------------- supervised


def supervised(config: SupervisedConfig, *, runs_dir=None, progress: bool = True) -> Run:
    """The baseline CNN with CE or supervised ACL; the lowest-validation-loss checkpoint is kept."""
    with claimed_run(config, runs_dir) as run:
        return run if run.finished else _supervised(run, config, progress)


def _supervised(run: Run, config: SupervisedConfig, progress: bool) -> Run:
    started = time.perf_counter()
    device = resolve_device(config.device)
    data = TrainingData.load(config, progress=progress)
    train_rows, val_rows = validation_split(
        data.train_rows, data.targets(data.train_rows), config.val_fraction, config.seed
    )
    notes = data.class_warnings(run, train_rows, val_rows, "a validation clip")
    frames = data.cache.preset.patch_frames
    train_patches = patch_index(data.cache, train_rows, frames, config.train_hop)
    # The authors' validation: training-sized batches, shuffled, the last partial one dropped,
    # so that the angular term (a sum over the batch's pairs) is on the training scale. One
    # order for every epoch (theirs reshuffle), so that epochs are compared on the same batches.
    val_patches = whole_batches(
        patch_index(data.cache, val_rows, frames, config.train_hop),
        config.batch_size,
        np.random.default_rng(config.seed),
    )
    mean, std = data.normaliser(device, per_band=True)

    torch.manual_seed(config.seed)
    model = models.BaselineCNN(
        n_classes=data.n_classes, n_mels=data.cache.preset.n_mels, frames=frames
    )
    model = in_memory_format(model.to(device), config)
    step_model = compiled(model, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.plateau_factor, patience=config.plateau_patience
    )
    modules = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    state = restore(run, modules)
    best = state.get("best", math.inf)

    def loss_of(x, y):
        logits, feats = forward(step_model, augment.normalise(x, mean, std), config, device)
        return losses.supervised_acl(
            logits.float(), feats.float(), y,
            alpha=config.alpha, margin=config.margin, reduction=config.reduction,
        )  # fmt: skip

    for epoch in range(state.get("epoch", -1) + 1, config.epochs):
        _, rng = seed_epoch(config.seed, epoch)
        patches = whole_batches(train_patches, config.batch_size, rng)
        n_steps = math.ceil(len(patches) / config.batch_size)
        batches = labelled_patches(data, patches, config.batch_size)
        loss, seconds = train_epoch(step_model, optimizer, batches, loss_of, n_steps, device,
                                    run=run, epoch=epoch, epochs=config.epochs,
                                    progress=progress)  # fmt: skip
        val_batches = labelled_patches(data, val_patches, config.batch_size)
        val_loss = validation_loss(model, loss_of, val_batches, device)
        if math.isfinite(val_loss):  # without a validation loss the learning rate stays as it is
            scheduler.step(val_loss)
        if val_loss < best:
            best = val_loss
            run.save_checkpoint({"model": model.state_dict(), "epoch": epoch}, "best")
        run.log_epoch({"epoch": epoch, "loss": loss, "val_loss": val_loss,
                       "lr": optimizer.param_groups[0]["lr"], "seconds": seconds})  # fmt: skip
        run.save_checkpoint(capture(modules, epoch=epoch, best=best))

    best_epoch = run.load_weights(model)
    # the authors' (docs/protocol.md): non-overlapping patches, the remainder dropped unless
    # test_end_patch, softmax summed per clip, argmax
    report = clip_report(
        models.Logits(model), data, data.test_rows, device, config.amp, per_band=True,
        hop=frames, end_patch=config.test_end_patch, aggregate="sum",
    )  # fmt: skip
    atomic_write_text(run.path / "evaluation.json", json.dumps(report, indent=1))
    summary = result_columns(report) | {
        "best_epoch": best_epoch,
        "best_val_loss": best if math.isfinite(best) else None,
        "warnings": notes,
    }
    return finish(run, summary, started, device)


def validation_loss(model: nn.Module, loss_of: Callable, batches: Iterator, device) -> float:
    """The mean of the batches' losses, in eval mode, as the authors'; NaN without a batch."""
    model.eval()
    with torch.no_grad():
        values = [
            loss_of(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)).item()
            for x, y in batches
        ]
    return float(np.mean(values)) if values else math.nan


# ----------------------------------------------------------------------------- fine-tuning


def finetune(config: FinetuneConfig, *, runs_dir=None, progress: bool = True) -> Run:
    """All layers of a pretrained encoder plus a linear classifier, trained with cross-entropy
    on random patches of the pretraining subset (its noisy labels); the epoch with the best
    clip accuracy on the monitor (clean) subset is tested."""
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
    classifier = nn.Sequential(model.encoder, nn.Linear(model.encoder.out_dim, data.n_classes))
    classifier = in_memory_format(classifier.to(device), config)
    step_model = compiled(classifier, config)
    optimizer = torch.optim.SGD(
        classifier.parameters(), lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    modules = {"model": classifier, "optimizer": optimizer}
    state = restore(run, modules)
    best = state.get("best", -math.inf)
    mean, std = data.normaliser(device, per_band=False)

    def loss_of(x, y):
        logits = forward(step_model, augment.normalise(x, mean, std), config, device)
        return nn.functional.cross_entropy(logits.float(), y)

    for epoch in range(state.get("epoch", -1) + 1, config.epochs):
        _, rng = seed_epoch(config.seed, epoch)
        order = rng.permutation(data.train_rows)
        n_steps = max(len(order) // config.batch_size, 1)
        batches = labelled_random_patches(data, order[: n_steps * config.batch_size], n_steps, rng)
        loss, seconds = train_epoch(step_model, optimizer, batches, loss_of, n_steps, device,
                                    run=run, epoch=epoch, epochs=config.epochs,
                                    progress=progress)  # fmt: skip
        report = clip_report(classifier, data, data.monitor_rows, device, config.amp)
        if report["micro"] > best:
            best = report["micro"]
            run.save_checkpoint({"model": classifier.state_dict(), "epoch": epoch}, "best")
        run.log_epoch({"epoch": epoch, "loss": loss, "monitor_micro": report["micro"],
                       "seconds": seconds})  # fmt: skip
        run.save_checkpoint(capture(modules, epoch=epoch, best=best))

    best_epoch = run.load_weights(classifier)
    report = clip_report(classifier, data, data.test_rows, device, config.amp)
    atomic_write_text(run.path / "evaluation.json", json.dumps(report, indent=1))
    summary = result_columns(report) | {
        "best_epoch": best_epoch,
        "pretrain_run": parent.id,
        "warnings": notes,
    }
    return finish(run, summary, started, device)
