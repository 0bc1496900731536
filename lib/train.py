"""Training: self-supervised pretraining with ACL and the supervised baseline, resumable.

Both loops follow one pattern (after nanoGPT): the run store decides whether there is
anything to do; state is a plain dict checkpointed atomically every epoch; each epoch draws
its randomness from (seed, epoch) alone, so a run killed at any point and resumed ends with
the same weights as one that never stopped. A NaN or infinite loss stops the run with a clear
message and leaves the last good checkpoint in place.

The protocol, and where it differs from the authors' code: see docs/protocol.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import augment, evaluate, losses, models, probe
from .atomic import atomic_write_text
from .config import FinetuneConfig, PretrainConfig, SupervisedConfig, config_dict, kind_of
from .datasets import load_dataset, subset_mask
from .features import FeatureCache, build_cache
from .runs import Run, RunWarning, append_result, claimed_run, load_run


class TrainingError(ValueError):
    """Training cannot go on (the message says why and what was kept); a ValueError, so the
    command line reports it in one line rather than as a traceback."""


# ----------------------------------------------------------------------------- shared pieces


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast where the device has it (CUDA, and CPUs with AVX-512 BF16 or AMX)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def epoch_seed(seed: int, epoch: int) -> int:
    """One integer per (seed, epoch): every random draw of an epoch derives from it."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@dataclass
class TrainingData:
    """The feature cache, the rows of each role, and the normalisation statistics."""

    cache: FeatureCache
    train_rows: np.ndarray
    monitor_rows: np.ndarray
    test_rows: np.ndarray
    classes: list[str]
    mean: np.ndarray  # per mel band, from the training clips
    std: np.ndarray

    @classmethod
    def load(cls, config, *, progress: bool = True) -> TrainingData:
        if not config.data_dir:
            raise ValueError("no data_dir in the config: point it at a dataset folder")
        dataset = load_dataset(config.data_dir)
        first = rank_and_world()[0] == 0
        if not first:
            barrier()  # rank 0 builds the feature cache, the others then read it
        cache = build_cache(dataset, config.preset, progress=progress)
        if first:
            barrier()
        monitor = getattr(config, "monitor_subset", "clean")  # supervised runs: the clean subset
        rows = {
            name: np.flatnonzero(subset_mask(cache.clips, name))
            for name in (config.subset, monitor, "test")
        }
        for name, picked in rows.items():
            if len(picked) == 0:
                raise ValueError(f"{config.data_dir}: the {name!r} subset has no usable clips")
        train = rows[config.subset]
        sample = train[np.linspace(0, len(train) - 1, min(len(train), 2000)).astype(int)]
        frames = np.concatenate([cache.clip(r) for r in sample], axis=1)
        return cls(
            cache=cache,
            train_rows=train,
            monitor_rows=rows[monitor],
            test_rows=rows["test"],
            classes=dataset.classes,
            mean=frames.mean(axis=1).astype(np.float32),
            std=frames.std(axis=1).astype(np.float32) + 1e-5,
        )

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def targets(self, rows: np.ndarray) -> np.ndarray:
        return self.cache.clips["target"].to_numpy()[rows]

    def class_warnings(self, run: Run, train_rows, checked_rows, checked: str) -> list[str]:
        """Warn about each class never trained or never checked (named), and about a monitor
        with nothing to check (the last epoch is then kept); returned for the run's summary."""
        trained, validated = (
            np.bincount(self.targets(rows), minlength=self.n_classes)
            for rows in (train_rows, checked_rows)
        )
        names, n = np.array(self.classes), self.n_classes
        notes = [
            f"{run.id}: {mask.sum()} of {n} classes {problem}: {', '.join(names[mask])}"
            for problem, mask in [
                ("have no training clip and are never trained", trained == 0),
                (f"lack {checked}", (trained > 0) & (validated == 0)),
            ]
            if mask.any()
        ]
        if len(checked_rows) == 0:
            notes.append(f"{run.id}: no class has {checked}, so the monitor cannot choose an "
                         "epoch: the last one is kept")  # fmt: skip
        for note in notes:
            warnings.warn(note, RunWarning, stacklevel=2)
        return notes

    def normaliser(self, device: torch.device, *, per_band: bool):
        """(mean, std) for augment.normalise: per mel band, or one scalar each."""
        if per_band:
            mean, std = self.mean, self.std
        else:  # one scalar, as the authors' self-supervised recipe
            mean = np.float32(self.mean.mean())
            std = np.float32(np.sqrt((self.std**2 + (self.mean - mean) ** 2).mean()))
        return torch.as_tensor(mean, device=device), torch.as_tensor(std, device=device)


def prefetch(batches: Iterator, device: torch.device) -> Iterator:
    """Produce the next batch (memmap reads, pinned copy) in a thread while this one trains.

    One worker thread draws the batches strictly in order, so their randomness is unchanged.
    """
    iterator = iter(batches)

    def produce():
        batch = next(iterator, None)
        if batch is None:
            return None
        tensors = [torch.from_numpy(b) for b in batch]
        if device.type == "cuda":
            return [t.pin_memory().to(device, non_blocking=True) for t in tensors]
        return tensors

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(produce)
        while (batch := future.result()) is not None:
            future = pool.submit(produce)
            yield batch


def check_finite(loss: torch.Tensor, where: str, epoch: int, step: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"{where}: loss became {loss.item()} at epoch {epoch}, step {step}; training "
            "stopped. The last good checkpoint (end of the previous epoch) is kept: lower the "
            "learning rate or check the data, then rerun to resume from it."
        )


def finish(run: Run, summary: dict, started: float, device: torch.device) -> Run:
    """Add the run's row to the results table, then mark it finished with its summary."""
    summary = summary | {
        "run": run.id,
        "kind": kind_of(run.config),
        "wall_seconds": time.perf_counter() - started,
        "device": str(device),
        "finished_epochs": run.config.epochs,
    }
    # The row first: a kill between the two leaves an unfinished run, which a rerun completes
    # (replacing its row), never a finished run without its row.
    append_result(config_dict(run.config) | summary, run.path.parent)
    run.finish(summary)
    return run


def restore(run: Run, modules: dict[str, object]) -> dict:
    """Load the last checkpoint into the modules; the rest of the state is returned."""
    state = run.load_checkpoint("last")
    if state is None:
        return {}
    for name, module in modules.items():
        module.load_state_dict(state[name])
    return state


def load_weights(run: Run, model: nn.Module) -> int:
    """Load the weights a run is evaluated and used with (Run.weights) into its model; returns
    their epoch, -1 for a run of no epochs, which keeps the model's initial weights."""
    weights = run.weights()
    if weights is None:
        return -1
    model.load_state_dict(weights["model"])
    return weights["epoch"]


def capture(modules: dict[str, object], **extra) -> dict:
    return {name: module.state_dict() for name, module in modules.items()} | extra


# ----------------------------------------------------------------------------- pretraining


class ContrastiveModel(nn.Module):
    """Encoder (h, for the angular term and downstream use) and projection head (z, NT-Xent)."""

    def __init__(self, encoder: nn.Module, projection: bool):
        super().__init__()
        self.encoder = encoder
        self.head = models.ProjectionHead(encoder.out_dim) if projection else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, (self.head(h) if self.head is not None else h)


def build_contrastive_model(config: PretrainConfig, device: torch.device) -> ContrastiveModel:
    """Initial weights depend on the seed only: every loss at a seed starts from the same ones."""
    torch.manual_seed(config.seed)
    model = ContrastiveModel(models.build_encoder(config.encoder), config.projection).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


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
    )
    model = build_contrastive_model(config, device)
    step_model = wrap_distributed(model, device)
    step_model = torch.compile(step_model) if config.compile else step_model
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.lr_milestones), gamma=config.lr_gamma
    )
    modules = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    state = restore(run, modules)
    best = state.get("best", -math.inf)

    for epoch in range(state.get("epoch", -1) + 1, config.epochs):
        loss, n_steps, seconds = contrastive_epoch(
            model, step_model, optimizer, data, config, epoch, device, where=str(run.path),
            progress=progress and rank == 0,
            desc=f"pretrain {run.id} epoch {epoch + 1}/{config.epochs}",
        )  # fmt: skip
        scheduler.step()
        if rank != 0:  # rank 0 monitors, logs and checkpoints; the others wait for it
            barrier()
            continue
        row = {
            "epoch": epoch,
            "loss": loss,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "clips_per_s": n_steps * config.batch_size / seconds,
        }
        last = epoch == config.epochs - 1
        if (epoch + 1) % config.knn_every == 0 or last:
            row["knn_balanced_acc"] = knn_monitor(model.encoder, data, config, device)
            if row["knn_balanced_acc"] > best:
                best = row["knn_balanced_acc"]
                run.save_checkpoint({"model": model.state_dict(), "epoch": epoch}, "best")
        run.log_epoch(row)
        run.save_checkpoint(capture(modules, epoch=epoch, best=best))
        barrier()

    best_epoch = evaluation_encoder(run, model, data, config, device)  # on every rank: batch
    if rank != 0:  # norm may be synchronised across them (SyncBatchNorm on GPUs)
        return run
    summary = linear_evaluation(run, model, data, config, device, best_epoch)
    return finish(run, summary | {"warnings": notes}, started, device)


def contrastive_epoch(
    model: ContrastiveModel,
    step_model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TrainingData,
    config: PretrainConfig,
    epoch: int,
    device: torch.device,
    *,
    where: str = "",
    max_steps: int | None = None,
    progress: bool = False,
    desc: str = "",
) -> tuple[float, int, float]:
    """One epoch of two-view training (or its first `max_steps` steps, for benchmarks).

    Returns the mean loss, the number of steps and the seconds taken. Every random draw
    (clip order, patches, backgrounds, augmentation) comes from (seed, epoch).
    """
    model.train()
    seed = epoch_seed(config.seed, epoch)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    generator = torch.Generator(device).manual_seed(seed + rank_and_world()[0])
    mean, std = data.normaliser(device, per_band=False)
    order = rng.permutation(data.train_rows)
    n_steps = len(order) // config.batch_size  # drop the last partial batch, as SimCLR
    if n_steps == 0:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(order)} training clips")
    n_steps = min(n_steps, max_steps or n_steps)
    total, start = 0.0, time.perf_counter()
    batches = prefetch(contrastive_batches(data, order[: n_steps * config.batch_size],
                                            config.batch_size, rng), device)  # fmt: skip
    bar = tqdm(batches, total=n_steps, disable=not progress, desc=desc, leave=False)
    for step, (x1, x2, bg1, bg2) in enumerate(bar):
        with torch.no_grad():
            v1, v2 = augment.two_views(
                x1, x2, bg1, bg2, config.augment, mean=mean, std=std, generator=generator
            )
        loss = contrastive_step(step_model, optimizer, v1, v2, config, device)
        check_finite(loss, where, epoch, step)
        total += loss.item()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return total / n_steps, n_steps, time.perf_counter() - start


def contrastive_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    v1: torch.Tensor,
    v2: torch.Tensor,
    config: PretrainConfig,
    device: torch.device,
) -> torch.Tensor:
    """Forward both views in one batch, ACL, backward, optimiser step; returns the loss.

    Under torch.distributed the loss gathers every rank's embeddings (negatives span the
    global batch) and DDP averages the gradients: the step equals the single-process one.
    """
    views = torch.cat([v1, v2])
    if config.channels_last:
        views = views.contiguous(memory_format=torch.channels_last)
    with autocast(device, config.amp):
        h, z = model(views)
    h1, h2 = h.float().chunk(2)
    z1, z2 = z.float().chunk(2)
    loss = losses.acl(
        h1, h2, z1, z2, alpha=config.alpha, margin=config.margin,
        temperature=config.temperature, reduction=config.reduction, gather=is_distributed(),
    )  # fmt: skip
    if torch.isfinite(loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.detach()


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_and_world() -> tuple[int, int]:
    if not is_distributed():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def init_distributed(device_name: str) -> torch.device:
    """Join the process group torchrun describes (WORLD_SIZE > 1); return this rank's device.

    nccl on GPUs (one per process, LOCAL_RANK), gloo on CPUs. Without torchrun: a no-op.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
    return resolve_device(device_name)


def wrap_distributed(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP around the model when a process group is active (SyncBatchNorm on GPUs, where it
    exists; on CPUs each process normalises its own share of the batch)."""
    if not is_distributed():
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(model)


def barrier() -> None:
    if is_distributed():
        torch.distributed.barrier()


def contrastive_batches(data: TrainingData, order: np.ndarray, batch_size: int, rng) -> Iterator:
    """Per batch: two independent random patches of each clip and two background patches.

    The backgrounds for mix-back are patches of other clips of the same batch (rolled by one
    and by two places), so they never come from the clip itself.
    Under torch.distributed every rank draws the whole global batch (identical generators, so
    the data are those of a single-process run) and keeps its own contiguous share.
    """
    frames = data.cache.preset.patch_frames
    rank, world = rank_and_world()
    for step in range(len(order) // batch_size):
        rows = order[step * batch_size : (step + 1) * batch_size]
        patches = [
            data.cache.random_patches(r, frames, rng=rng)[:, None]
            for r in (rows, rows, np.roll(rows, 1), np.roll(rows, 2))
        ]
        yield [np.array_split(p, world)[rank] for p in patches]


def embed(
    encoder: nn.Module,
    data: TrainingData,
    rows: np.ndarray,
    device: torch.device,
    *,
    per_band: bool = False,
    amp: bool = True,
    hop: int | None = None,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of every evaluation patch of the clips (hop: the preset's eval_hop unless
    given): (patches, dim) and the clip row of each patch."""
    mean, std = data.normaliser(device, per_band=per_band)
    patches = [(data.cache.clip_patches(int(r), hop=hop), r) for r in rows]
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


def flat_report(report: dict) -> dict:
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


def knn_rows(data: TrainingData) -> np.ndarray:
    """The monitor clips a leave-one-out kNN can score: those of classes with two or more."""
    labels = data.targets(data.monitor_rows)
    return data.monitor_rows[np.bincount(labels)[labels] >= 2]


def knn_monitor(encoder, data: TrainingData, config: PretrainConfig, device) -> float:
    """Leave-one-out cosine kNN balanced accuracy on the monitor (clean) subset's clips; NaN
    when no class has two of them (a lone clip has no neighbour of its class)."""
    rows = knn_rows(data)
    if len(rows) == 0:
        return math.nan
    patch_emb, clip_of_patch = embed(encoder, data, rows, device, amp=config.amp)
    clips = clip_embeddings(patch_emb, clip_of_patch)
    labels = data.targets(rows)
    probs = evaluate.knn_predict(
        clips, labels, clips, k=config.knn_k, n_classes=data.n_classes, exclude_self=True
    )
    report = evaluate.accuracy_report(labels, probs.argmax(1), n_classes=data.n_classes)
    return report["macro"]


def plain_training_batches(data: TrainingData, config, device) -> Iterator[torch.Tensor]:
    """One un-augmented random patch of every training clip, normalised, in training-sized
    batches: what the authors' frozen encoder sees during their linear evaluation."""
    rng = np.random.default_rng(config.seed)
    mean, std = data.normaliser(device, per_band=False)
    order = rng.permutation(data.train_rows)
    for rows in np.array_split(order, max(1, len(order) // config.batch_size)):
        x = torch.from_numpy(data.cache.random_patches(rows, rng=rng)[:, None]).to(device)
        yield augment.normalise(x, mean, std)


def evaluation_encoder(run: Run, model, data: TrainingData, config, device) -> int:
    """Load the best (else last) weights and re-estimate the encoder's batch-norm statistics on
    un-augmented training patches, as the authors' linear evaluation sees them; returns the
    weights' epoch. Every rank of a distributed run calls it (synchronised batch norm)."""
    best_epoch = load_weights(run, model)
    with autocast(device, config.amp):
        probe.reestimate_batchnorm(model.encoder, plain_training_batches(data, config, device))
    return best_epoch


def linear_evaluation(run: Run, model, data: TrainingData, config, device, best_epoch) -> dict:
    """The authors' linear evaluation (probe.py, docs/protocol.md) of an encoder prepared by
    `evaluation_encoder`: every patch embedded once, the classifier trained on the training
    subset's labels and its epoch chosen by balanced accuracy on the monitor subset."""
    encoder = model.encoder
    train, select, test = (
        probe.PatchEmbeddings(emb, clip_of_patch, data.targets(np.unique(clip_of_patch)))
        for emb, clip_of_patch in (
            embed(encoder, data, rows, device, amp=config.amp)
            for rows in (data.train_rows, data.monitor_rows, data.test_rows)
        )
    )
    report = probe.linear_evaluation(
        train, select, test, data.n_classes, probe.ProbeSettings(seed=config.seed), device=device
    )
    test_h = clip_embeddings(test.emb, test.clip_of_patch)
    test_z = project(model, test_h, device)
    np.savez_compressed(run.path / "test_embeddings.npz", h=test_h, z=test_z, target=test.labels)
    atomic_write_text(run.path / "evaluation.json", json.dumps(report, indent=1))
    return {
        "probe_epoch": report["epoch"],
        "probe_select_macro": report["select_macro"],
        "best_epoch": best_epoch,
        **flat_report(report),
        "uniformity": evaluate.uniformity(test_z),
        "tolerance": evaluate.tolerance(test_z, test.labels),
    }


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
    preset = data.cache.preset
    frames = preset.patch_frames
    train_patches = _patch_index(data.cache, train_rows, frames, config.train_hop)
    val_patches = _patch_index(data.cache, val_rows, frames, config.train_hop)
    mean, std = data.normaliser(device, per_band=True)

    torch.manual_seed(config.seed)
    model = models.BaselineCNN(n_classes=data.n_classes, n_mels=preset.n_mels, frames=frames)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if config.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.plateau_factor, patience=config.plateau_patience
    )
    modules = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    state = restore(run, modules)
    best = state.get("best", math.inf)

    def loss_of(x, y):
        x = augment.normalise(x, mean, std)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, config.amp):
            logits, feats = step_model(x)
        return losses.supervised_acl(
            logits.float(),
            feats.float(),
            y,
            alpha=config.alpha,
            margin=config.margin,
            reduction=config.reduction,
        )

    for epoch in range(state.get("epoch", -1) + 1, config.epochs):
        model.train()
        seed = epoch_seed(config.seed, epoch)
        torch.manual_seed(seed)
        order = np.random.default_rng(seed).permutation(len(train_patches))
        n_steps = max(len(order) // config.batch_size, 1)
        total, epoch_start = 0.0, time.perf_counter()
        batches = (
            _patch_batch(
                data, train_patches[order[s * config.batch_size :][: config.batch_size]], frames
            )
            for s in range(n_steps)
        )
        bar = tqdm(
            prefetch(batches, device),
            total=n_steps,
            disable=not progress,
            leave=False,
            desc=f"supervised {run.id} epoch {epoch + 1}/{config.epochs}",
        )
        for step, (x, y) in enumerate(bar):
            loss = loss_of(x, y)
            check_finite(loss, str(run.path), epoch, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        model.eval()
        with torch.no_grad():
            val_losses = [
                loss_of(
                    *(
                        torch.from_numpy(a).to(device)
                        for a in _patch_batch(data, val_patches[s : s + 512], frames)
                    )
                ).item()
                * len(val_patches[s : s + 512])
                for s in range(0, len(val_patches), 512)
            ]
        val_loss = sum(val_losses) / len(val_patches) if len(val_patches) else math.nan
        if len(val_patches):  # without a validation loss the learning rate stays as it is
            scheduler.step(val_loss)
        seconds = time.perf_counter() - epoch_start
        if val_loss < best:
            best = val_loss
            run.save_checkpoint({"model": model.state_dict(), "epoch": epoch}, "best")
        run.log_epoch(
            {
                "epoch": epoch,
                "loss": total / n_steps,
                "val_loss": val_loss,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": seconds,
            }
        )
        run.save_checkpoint(capture(modules, epoch=epoch, best=best))

    best_epoch = load_weights(run, model)
    # the authors' (docs/protocol.md): non-overlapping patches, softmax summed per clip, argmax
    report = clip_report(
        _Logits(model), data, data.test_rows, device, config.amp, per_band=True,
        hop=data.cache.preset.patch_frames, aggregate="sum",
    )  # fmt: skip
    atomic_write_text(run.path / "evaluation.json", json.dumps(report, indent=1))
    summary = flat_report(report) | {
        "best_epoch": best_epoch,
        "best_val_loss": best if math.isfinite(best) else None,
        "warnings": notes,
    }
    return finish(run, summary, started, device)


def validation_split(
    rows: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): per class, `fraction` of its clips rounded, at least one
    and at most all but one. Every class with two clips or more is trained and validated, a
    lone clip is trained; scikit-learn's stratified split can leave a small class out of either
    side, or refuse a subset with fewer validation clips than classes."""
    rng = np.random.default_rng(seed)
    classes = [rng.permutation(rows[labels == label]) for label in np.unique(labels)]
    validation = np.concatenate(
        [clips[: min(max(round(fraction * len(clips)), 1), len(clips) - 1)] for clips in classes]
    )
    return np.setdiff1d(rows, validation), np.sort(validation)


def _patch_index(cache: FeatureCache, rows: np.ndarray, frames: int, hop: int) -> np.ndarray:
    """(clip row, start frame) of every training patch; short clips give one (repeated) patch."""
    pairs = []
    for row in rows:
        length = cache.clips["length"].iat[row]
        starts = range(0, max(length - frames, 0) + 1, hop)
        pairs.extend((row, s) for s in starts)
    return np.array(pairs, dtype=np.int64)


def _patch_batch(data: TrainingData, pairs: np.ndarray, frames: int):
    x = data.cache.patches_at(pairs[:, 0], pairs[:, 1], frames)[:, None]
    return x, data.targets(pairs[:, 0])


class _Logits(nn.Module):
    """The logits of a model that returns (logits, features)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


# ----------------------------------------------------------------------------- finished runs


def load_pretrained(run: Run, *, progress: bool = True):
    """A pretraining run's model (best checkpoint, else last), its data and device."""
    if not isinstance(run.config, PretrainConfig):
        raise ValueError(f"{run.path}: not a pretraining run")
    device = resolve_device(run.config.device)
    data = TrainingData.load(run.config, progress=progress)
    model = build_contrastive_model(run.config, device)
    load_weights(run, model)
    return model, data, device


def relinear_evaluation(run: Run, *, progress: bool = True) -> dict:
    """Linear evaluation of a pretraining run again (its summary is not changed)."""
    model, data, device = load_pretrained(run, progress=progress)
    best_epoch = evaluation_encoder(run, model, data, run.config, device)
    return linear_evaluation(run, model, data, run.config, device, best_epoch)


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
    classifier = classifier.to(device)
    if config.channels_last:
        classifier = classifier.to(memory_format=torch.channels_last)
    step_model = torch.compile(classifier) if config.compile else classifier
    optimizer = torch.optim.SGD(
        classifier.parameters(), lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    modules = {"model": classifier, "optimizer": optimizer}
    state = restore(run, modules)
    best = state.get("best", -math.inf)
    targets = data.cache.clips["target"].to_numpy()
    mean, std = data.normaliser(device, per_band=False)

    for epoch in range(state.get("epoch", -1) + 1, config.epochs):
        classifier.train()
        seed = epoch_seed(config.seed, epoch)
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        order = rng.permutation(data.train_rows)
        n_steps = max(len(order) // config.batch_size, 1)
        batches = (
            (data.cache.random_patches(rows, rng=rng)[:, None], targets[rows])
            for rows in np.array_split(order[: n_steps * config.batch_size], n_steps)
        )
        total, epoch_start = 0.0, time.perf_counter()
        bar = tqdm(prefetch(batches, device), total=n_steps, disable=not progress, leave=False,
                   desc=f"finetune {run.id} epoch {epoch + 1}/{config.epochs}")  # fmt: skip
        for step, (x, y) in enumerate(bar):
            x = augment.normalise(x, mean, std)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, config.amp):
                logits = step_model(x)
            loss = nn.functional.cross_entropy(logits.float(), y)
            check_finite(loss, str(run.path), epoch, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        report = clip_report(classifier, data, data.monitor_rows, device, config.amp)
        if report["micro"] > best:
            best = report["micro"]
            run.save_checkpoint({"model": classifier.state_dict(), "epoch": epoch}, "best")
        run.log_epoch({"epoch": epoch, "loss": total / n_steps, "monitor_micro": report["micro"],
                       "seconds": time.perf_counter() - epoch_start})  # fmt: skip
        run.save_checkpoint(capture(modules, epoch=epoch, best=best))

    best_epoch = load_weights(run, classifier)
    report = clip_report(classifier, data, data.test_rows, device, config.amp)
    atomic_write_text(run.path / "evaluation.json", json.dumps(report, indent=1))
    summary = flat_report(report) | {
        "best_epoch": best_epoch,
        "pretrain_run": parent.id,
        "warnings": notes,
    }
    return finish(run, summary, started, device)


def clip_report(
    classifier,
    data: TrainingData,
    rows,
    device,
    amp: bool,
    *,
    per_band: bool = False,
    hop: int | None = None,
    aggregate: str = "mean",
) -> dict:
    """Accuracy of a patch classifier on clips: softmax over every patch, aggregated per clip."""
    logits, clip_of_patch = embed(
        classifier, data, rows, device, amp=amp, per_band=per_band, hop=hop
    )
    probs = torch.from_numpy(logits).softmax(1).numpy()
    ids, clip_probs = evaluate.clip_probabilities(probs, clip_of_patch, aggregate=aggregate)
    return evaluate.accuracy_report(
        data.cache.clips["target"].to_numpy()[ids], clip_probs.argmax(1), n_classes=data.n_classes
    )
