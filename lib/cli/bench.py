"""Benchmarks behind `aclaudio bench ...`: each returns a table and writes it to results/bench."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import soundfile as sf
import torch
import torch.nn.functional as F

from aclaudio.data import folders
from aclaudio.data.cache import build_cache
from aclaudio.data.datasets import load_dataset
from aclaudio.data.features import PRESETS
from aclaudio.data.synth import synthesize
from aclaudio.nn import objectives
from aclaudio.nn.models import ProjectionHead, ResNet18Encoder, build_contrastive_model
from aclaudio.recipes.pretrain import contrastive_epoch
from aclaudio.training.batches import TrainingData
from aclaudio.training.config import profile_config
from aclaudio.training.devices import resolve_device

BENCH_DIR = folders.results() / "bench"


def machine() -> str:
    """A short description of where a benchmark ran, stored beside its numbers."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def best_time(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Best wall time of `fn` over `repeats` calls, in seconds (the least disturbed run)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


@contextlib.contextmanager
def built_in_data(data_dir: Path | None, profile: str = "smoke") -> Iterator[Path]:
    """`data_dir`, or without it the profile's built-in dataset made in a temporary folder
    (removed afterwards)."""
    if data_dir is not None:
        yield Path(data_dir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        synthesize(Path(tmp) / "data", profile=profile, seed=0, progress=False)
        yield Path(tmp) / "data"


def write_table(table: pd.DataFrame, name: str, out_dir: Path | None = None) -> Path:
    """Write a benchmark table as CSV and Markdown (with the machine) and return the CSV path."""
    out_dir = Path(out_dir or BENCH_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / f"{name}.csv"
    table.to_csv(csv, index=False)
    header = f"# bench {name}\n\nmachine: {machine()}\n\n"
    (out_dir / f"{name}.md").write_text(header + table.to_markdown(index=False) + "\n")
    (out_dir / f"{name}.json").write_text(json.dumps(table.to_dict(orient="records"), indent=1))
    return csv


def bench_features(
    *, data_dir: Path | None = None, n_clips: int = 400, workers: int | None = None, out_dir=None
) -> pd.DataFrame:
    """Our ssl_paper cache build against a plain librosa loop over the same files.

    Without `data_dir`, writes `n_clips` FSDnoisy18k-like files (44.1 kHz 16-bit, 0.3-30 s,
    mean about 8 s) so that resampling is part of the work, as on the real dataset.
    """

    preset = PRESETS["ssl_paper"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(data_dir) if data_dir else _fsd_like_files(Path(tmp) / "data", n_clips)
        dataset = load_dataset(root)
        audio_seconds = float(dataset.clips["duration"].sum())
        start = time.perf_counter()
        build_cache(dataset, preset, cache_dir=Path(tmp) / "cache", workers=workers)
        ours = time.perf_counter() - start

        def reference(path: str) -> np.ndarray:
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
            wave = librosa.resample(audio.mean(axis=1), orig_sr=rate, target_sr=preset.sample_rate)
            wave = wave / np.abs(wave).max()
            mel = librosa.feature.melspectrogram(
                y=wave,
                sr=preset.sample_rate,
                n_fft=preset.n_fft,
                win_length=preset.win_length,
                hop_length=preset.hop_length,
                window="hamming",
                pad_mode="constant",
                n_mels=preset.n_mels,
                fmin=preset.f_min,
                fmax=preset.f_max,
                norm="slaney",
            )
            return np.log10(mel + preset.log_offset)

        start = time.perf_counter()
        for path in dataset.clips["path"]:
            reference(path)
        librosa_seconds = time.perf_counter() - start
    table = pd.DataFrame(
        [
            {"pipeline": "aclaudio build_cache", "seconds": ours},
            {"pipeline": "librosa loop (resample + melspectrogram)", "seconds": librosa_seconds},
        ]
    )
    table["clips"] = len(dataset.clips)
    table["audio_hours"] = round(audio_seconds / 3600, 3)
    table["x_realtime"] = (audio_seconds / table["seconds"]).round(1)
    table["speedup_vs_librosa"] = (librosa_seconds / table["seconds"]).round(2)
    table["seconds"] = table["seconds"].round(3)
    write_table(table, "features", out_dir)
    return table


def _fsd_like_files(root: Path, n_clips: int, *, seed: int = 0) -> Path:
    """Tones in noise at 44.1 kHz with FSDnoisy18k's spread of durations, in its layout."""

    rng = np.random.default_rng(seed)
    rate = 44100
    for split in ("train", "test"):
        (root / f"FSDnoisy18k.audio_{split}").mkdir(parents=True, exist_ok=True)
    rows = ["fname,label,aso_id,manually_verified,noisy_small"]
    for i in range(n_clips):
        seconds = float(np.clip(rng.lognormal(np.log(5.0), 0.9), 0.3, 30.0))
        t = np.arange(int(seconds * rate)) / rate
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
        wave += 0.05 * rng.standard_normal(len(t))
        sf.write(root / f"FSDnoisy18k.audio_train/{i}.wav", wave, rate, subtype="PCM_16")
        rows.append(f"{i}.wav,class_{i % 4},x,{int(i % 10 == 0)},0")
    (root / "FSDnoisy18k.meta").mkdir(exist_ok=True)
    (root / "FSDnoisy18k.meta/train.csv").write_text("\n".join(rows) + "\n")
    (root / "FSDnoisy18k.meta/test.csv").write_text("fname,label,aso_id\n")
    return root


def bench_loss(
    *,
    sizes: tuple[int, ...] = (256, 1024),
    dim: int = 512,
    device: str | torch.device | None = None,
    repeats: int = 30,
    step_repeats: int = 1,
    out_dir: Path | None = None,
) -> pd.DataFrame:
    """Forward + backward of the losses on 2N views of `dim` features, against references.

    Rows per 2N: nt_xent; acl (two Gram matrices, h and z: about twice nt_xent is the floor);
    pytorch-metric-learning's NTXentLoss (its memory and time grow as (2N)^3, so it runs once);
    angular_margin and the boolean-mask arccos reference of the same term, also summed with
    nt_xent. `pct_of_paper_step` compares the 2N = 256 rows with one paper-profile training
    step (ResNet-18 + head, batch 128, two views of 1 x 96 x 101, SGD), timed `step_repeats`
    times after a warm-up; 0 skips it (on a CPU a step takes seconds).
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    generator = torch.Generator().manual_seed(0)
    rows = []
    for views in sizes:
        inputs = [torch.randn(views // 2, dim, generator=generator).to(device) for _ in range(4)]
        ms = {}
        for name, loss in _loss_candidates(*(x.requires_grad_() for x in inputs)).items():
            once = name.startswith("pytorch-metric-learning")
            ms[name] = 1000 * best_time(
                lambda loss=loss, x=inputs: torch.autograd.grad(loss(), x, allow_unused=True),
                repeats=1 if once else repeats,
                warmup=0 if once else 1,
            )
        ms["nt_xent + boolean-mask reference"] = ms["nt_xent"] + ms[_REFERENCE]
        rows += [{"views_2N": views, "dim": dim, "loss": k, "ms": v} for k, v in ms.items()]
    step_ms = 1000 * best_time(_paper_step(device), repeats=step_repeats) if step_repeats else None
    if step_ms:
        rows.append({"views_2N": 256, "dim": 512, "loss": "paper-profile step", "ms": step_ms})
    table = pd.DataFrame(rows)
    nt_xent_ms = table[table["loss"] == "nt_xent"].set_index("views_2N")["ms"]
    table["x_nt_xent"] = (table["ms"] / table["views_2N"].map(nt_xent_ms)).round(2)
    table["pct_of_paper_step"] = (100 * table["ms"] / (step_ms or float("nan"))).round(3)
    table.loc[table["views_2N"] != 256, "pct_of_paper_step"] = None
    table["ms"] = table["ms"].round(3)
    table = table.astype(object).where(table.notna(), None)  # gaps as null, not NaN, in JSON
    write_table(table, "loss", out_dir)
    return table


_REFERENCE = "angular term, boolean-mask reference"


def _loss_candidates(h1, h2, z1, z2) -> dict[str, Callable[[], torch.Tensor]]:
    """The timed losses on encoder outputs h and projections z (N x dim each)."""
    from pytorch_metric_learning.losses import NTXentLoss  # a dev extra: the reference only

    clips = torch.arange(len(h1), device=h1.device).repeat(2)  # label i: the two views of clip i
    pml = NTXentLoss(temperature=0.2)
    return {
        "nt_xent": lambda: objectives.nt_xent(z1, z2),
        "acl": lambda: objectives.acl(h1, h2, z1, z2),
        "pytorch-metric-learning NTXentLoss": lambda: pml(torch.cat([z1, z2]), clips),
        "angular_margin": lambda: objectives.angular_margin(h1, h2),
        _REFERENCE: lambda: _masked_angular_reference(h1, h2),
    }


def _masked_angular_reference(h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
    """The angular term the straightforward way: arccos of clamped cosines, pairs by masks."""

    u = F.normalize(torch.cat([h1, h2]), dim=1)
    clips = torch.arange(len(h1), device=u.device).repeat(2)
    same = clips[:, None] == clips[None, :]
    itself = torch.eye(len(u), dtype=torch.bool, device=u.device)
    theta = torch.arccos((u @ u.T).clamp(-1 + 1e-7, 1 - 1e-7))
    pull = theta[same & ~itself].square().sum()
    push = F.relu(0.5 - theta[~same]).square().sum()
    return (pull + push) / 25


def _paper_step(device: torch.device) -> Callable[[], None]:
    """One paper-profile pretraining step: ResNet-18 + head on two views of 128 patches, ACL,
    SGD (lr 0.03, momentum 0.9, weight decay 1e-4)."""

    encoder, head = ResNet18Encoder().to(device), ProjectionHead(512).to(device)
    parameters = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=0.03, momentum=0.9, weight_decay=1e-4)
    views = torch.randn(2 * 128, 1, 96, 101, device=device)

    def step() -> None:
        h = encoder(views)
        z = head(h)
        loss = objectives.acl(h[:128], h[128:], z[:128], z[128:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def bench_train(
    *, data_dir: Path | None = None, steps: int = 8, batch_size: int = 128, out_dir=None
) -> pd.DataFrame:
    """Pretraining throughput (clips/s, both views, augmentation included): our loop against a
    straightforward reference with per-sample numpy augmentation in a DataLoader, float32.

    Both run the cpu model (small encoder, cpu preset) and the paper model (ResNet-18,
    ssl_paper preset) on the same clips, `steps` timed steps each after one warm-up step.
    Without `data_dir`, the built-in smoke dataset is generated in a temporary folder.
    """

    rows = []
    with built_in_data(data_dir) as root:
        for name, profile in (
            ("cpu model (small encoder)", "cpu"),
            ("paper model (ResNet-18)", "paper"),
        ):
            config = profile_config(
                "pretrain",
                profile,
                data_dir=str(root),
                subset="all",
                batch_size=batch_size,
                device="auto",
                alpha=0.5,
            )
            device = resolve_device(config.device)
            data = TrainingData.load(config, progress=False)
            # enough rows for the timed steps, sampling the clips with replacement
            needed = (steps + 1) * batch_size
            data.train_rows = np.resize(data.train_rows, max(needed, len(data.train_rows)))
            model = build_contrastive_model(config, device)
            optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9)
            objective = objectives.build(config.objective, "views", config.loss)
            plan = [1, steps]  # one warm-up step, then the timed ones
            for epoch in range(2):
                result = contrastive_epoch(
                    model, optimizer, data, config, objective, epoch, plan, device
                )
            ours = steps * batch_size / result.seconds
            reference = _reference_throughput(data, config, device, steps)
            rows.append(
                {
                    "model": name,
                    "device": device.type,
                    "batch": batch_size,
                    "ours_clips_per_s": round(ours, 1),
                    "reference_clips_per_s": round(reference, 1),
                    "speedup": round(ours / reference, 2),
                }
            )
    table = pd.DataFrame(rows)
    write_table(table, "train", out_dir)
    return table


class _PerSampleViews(torch.utils.data.Dataset):
    """The reference data path: two augmented views per clip built one sample at a time in
    numpy (mix-back, random resized crop, compander, noise, normalisation), as the original
    code's Dataset.__getitem__ does."""

    def __init__(self, data, config):
        self.data, self.config = data, config
        self.frames = data.cache.preset.patch_frames
        self.mean, self.std = float(data.mean.mean()), float(data.std.mean())

    def __len__(self):
        return len(self.data.train_rows)

    def __getitem__(self, index):
        rng = np.random.default_rng(index)
        row = self.data.train_rows[index]
        views = []
        for _ in range(2):
            patch = self.data.cache.random_patches([row], self.frames, rng=rng)[0]
            other = rng.choice(self.data.train_rows)
            bg = self.data.cache.random_patches([other], self.frames, rng=rng)[0]
            views.append(self._augment(patch, bg, rng)[None])
        return views[0], views[1]

    def _augment(self, x, bg, rng):
        from scipy.ndimage import zoom

        cfg = self.config.augment
        a = rng.uniform(0, cfg.mixback)
        fg_lin, bg_lin = 10.0**x, 10.0**bg
        mixed = (1 - a) * fg_lin + a * fg_lin.sum() / bg_lin.sum() * bg_lin
        x = np.log10(mixed)
        bands, frames = x.shape
        scale = rng.uniform(*cfg.crop_scale)
        ratio = np.exp(rng.uniform(*np.log(cfg.crop_ratio)))
        h = int(min(bands, round(bands * np.sqrt(scale / ratio))))
        w = int(min(frames, round(frames * np.sqrt(scale * ratio))))
        top, left = rng.integers(0, bands - h + 1), rng.integers(0, frames - w + 1)
        crop = x[top : top + h, left : left + w]
        x = zoom(crop, (bands / h, frames / w), order=1)[:bands, :frames]
        x = x * rng.uniform(cfg.compander, 1.0)
        x = x + rng.normal(0, rng.uniform(0, cfg.noise), x.shape)
        return ((x - self.mean) / self.std).astype(np.float32)


def _reference_throughput(data, config, device, steps: int) -> float:
    """Clips/s of the reference: DataLoader (1 worker) + float32 contiguous model."""

    plain = build_contrastive_model(dataclasses.replace(config, channels_last=False), device)
    optimizer = torch.optim.SGD(plain.parameters(), lr=config.lr, momentum=0.9)
    loader = torch.utils.data.DataLoader(
        _PerSampleViews(data, config),
        batch_size=config.batch_size,
        shuffle=True,
        num_workers=1,
        drop_last=True,
    )
    start, done = None, 0
    for step, (x1, x2) in enumerate(loader):
        if step == 1:  # the first step is warm-up (and the worker's start)
            start = time.perf_counter()
        h, z = plain(torch.cat([x1, x2]).to(device))
        h1, h2 = h.chunk(2)
        z1, z2 = z.chunk(2)
        loss = objectives.build(config.objective, "views", config.loss)(h1, h2, z1, z2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 1:
            done += len(x1)
        if step == steps:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)
