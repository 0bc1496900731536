"""What the networks see: the cached features in their roles, normalised, cut into patches and
batched, one epoch at a time.

Every random draw of an epoch (clip order, patches, backgrounds) comes from `epoch_seed(seed,
epoch)`, so a resumed run draws exactly what an uninterrupted one would. Under torch.distributed
each rank draws the whole global batch with identical generators and keeps its own share.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from aclaudio.data.cache import FeatureCache, build_cache
from aclaudio.data.datasets import load_dataset, subset_mask
from aclaudio.data.features import patch_frame_index
from aclaudio.nn import augment
from aclaudio.training.devices import barrier, rank_and_world
from aclaudio.training.runs import Run, RunWarning


def epoch_seed(seed: int, epoch: int) -> int:
    """One integer per (seed, epoch): every random draw of an epoch derives from it."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@dataclass
class TrainingData:
    """The feature cache, the rows of each role, the normalisation statistics and the grid of
    evaluation patches."""

    cache: FeatureCache
    train_rows: np.ndarray
    monitor_rows: np.ndarray
    test_rows: np.ndarray
    classes: list[str]
    mean: np.ndarray  # per mel band, from the training clips (supervised: patch_statistics)
    std: np.ndarray
    # evaluation patches (embeddings.embed): every eval_hop frames while they fit, plus (True)
    # one aligned to the clip's end; the config's eval_end_patch
    end_patch: bool = False

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
            end_patch=getattr(config, "eval_end_patch", False),
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
            notes.append(
                f"{run.id}: no class has {checked}, so the monitor cannot choose an "
                "epoch: the last one is kept"
            )
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


def contrastive_batches(data: TrainingData, order: np.ndarray, batch_size: int, rng) -> Iterator:
    """Per batch: two independent random patches of each clip and two background patches.

    The backgrounds for mix-back are patches of two other clips of the whole training set,
    never the clip itself, as the authors draw them.
    """
    frames = data.cache.preset.patch_frames
    rank, world = rank_and_world()
    for step in range(len(order) // batch_size):
        rows = order[step * batch_size : (step + 1) * batch_size]
        backgrounds = other_clips(data.train_rows, rows, rng)
        patches = [
            data.cache.random_patches(r, frames, rng=rng)[:, None]
            for r in (rows, rows, *backgrounds)
        ]
        yield [np.array_split(p, world)[rank] for p in patches]


def other_clips(pool: np.ndarray, rows: np.ndarray, rng, n: int = 2) -> list[np.ndarray]:
    """For each row, n different clips of the pool drawn uniformly, none the row itself: a
    draw that clashes is redrawn, as the authors do."""
    if len(pool) <= n:
        raise ValueError(
            f"mix-back needs {n} background clips besides each clip; the training subset has "
            f"{len(pool)} clips"
        )
    taken = [rows]
    for _ in range(n):
        pick = rng.choice(pool, len(rows))
        while (clash := np.any([pick == t for t in taken], axis=0)).any():
            pick[clash] = rng.choice(pool, clash.sum())
        taken.append(pick)
    return taken[1:]


def labelled_random_patches(
    data: TrainingData, order: np.ndarray, batch_size: int, rng
) -> Iterator:
    """Per batch of `batch_size` clips in `order` (the last one smaller, kept as the authors'
    loader keeps it): one random patch of each clip and its label (fine-tuning)."""
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield data.cache.random_patches(rows, rng=rng)[:, None], data.targets(rows)


def patch_index(cache: FeatureCache, rows: np.ndarray, frames: int, hop: int) -> np.ndarray:
    """(clip row, start frame) of every training patch, cut as the authors cut them: a clip of T
    frames gives max(1, ceil((T - frames) / hop)) patches starting every `hop` frames, so a last
    patch that would end exactly on the clip's end is left out; a clip shorter than a patch gives
    one (repeated) patch."""
    pairs = []
    for row in rows:
        length = int(cache.clips["length"].iat[row])
        count = max(1, -(-(length - frames) // hop))  # ceil((length - frames) / hop)
        pairs.extend((row, j * hop) for j in range(count))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def patch_statistics(
    cache: FeatureCache, pairs: np.ndarray, frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per mel band mean and standard deviation of the patches at (clip row, start frame) pairs,
    exactly, as scikit-learn's StandardScaler fitted on their frames stacked: each frame counts
    once per patch that holds it, the standard deviation is the population one, and a band
    without variance gets 1. The authors fit it on their training patches (docs/protocol.md)."""
    if len(pairs) == 0:
        raise ValueError("no patches to take normalisation statistics from")
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    rows, first = np.unique(pairs[:, 0], return_index=True)
    shift = cache.clip(int(rows[0])).mean(axis=1, dtype=np.float64)  # against cancellation
    total, squares, count = np.zeros_like(shift), np.zeros_like(shift), 0
    for row, starts in zip(rows, np.split(pairs[:, 1], first[1:]), strict=True):
        length = int(cache.clips["length"].iat[row])
        weights = np.bincount(patch_frame_index(starts, frames, length).ravel(), minlength=length)
        x = cache.clip(int(row)).astype(np.float64) - shift[:, None]
        total += x @ weights
        squares += (x * x) @ weights
        count += int(weights.sum())
    mean = total / count
    var = np.maximum(squares / count - mean**2, 0.0)
    eps = np.finfo(np.float64).eps  # scikit-learn's test for a constant feature
    constant = var <= count * eps * var + (count * (mean + shift) * eps) ** 2
    std = np.where(constant, 1.0, np.sqrt(var))
    return (mean + shift).astype(np.float32), std.astype(np.float32)


def whole_batches(pairs: np.ndarray, batch_size: int, rng) -> np.ndarray:
    """The pairs shuffled and cut to whole batches, the last partial one dropped as the authors'
    `drop_last`; fewer pairs than one batch are kept, as one smaller batch rather than none."""
    order = rng.permutation(len(pairs))
    return pairs[order[: max(len(order) // batch_size, 1) * batch_size]]


def labelled_patches(data: TrainingData, pairs: np.ndarray, batch_size: int) -> Iterator:
    """The patches at (clip row, start frame) pairs and their labels, in batches, in order."""
    frames = data.cache.preset.patch_frames
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        yield (
            data.cache.patches_at(batch[:, 0], batch[:, 1], frames)[:, None],
            data.targets(batch[:, 0]),
        )


def plain_training_batches(data: TrainingData, config, device) -> Iterator[torch.Tensor]:
    """One un-augmented random patch of every training clip, normalised, in training-sized
    batches: what the authors' frozen encoder sees during their linear evaluation."""
    rng = np.random.default_rng(config.seed)
    mean, std = data.normaliser(device, per_band=False)
    order = rng.permutation(data.train_rows)
    for rows in np.array_split(order, max(1, len(order) // config.batch_size)):
        x = torch.from_numpy(data.cache.random_patches(rows, rng=rng)[:, None]).to(device)
        yield augment.normalise(x, mean, std)


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
