"""Benchmarks behind `aclaudio bench ...`: each returns a table and writes it to results/bench."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

BENCH_DIR = Path("results") / "bench"


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
    *, data_dir: Path | None = None, n_clips: int = 120, workers: int | None = None, out_dir=None
) -> pd.DataFrame:
    """Our ssl_paper cache build against a plain librosa loop over the same files.

    Without `data_dir`, writes `n_clips` FSDnoisy18k-like files (44.1 kHz 16-bit, 0.3-30 s,
    mean about 8 s) so that resampling is part of the work, as on the real dataset.
    """
    import tempfile

    import librosa
    import numpy as np
    import soundfile as sf

    from .datasets import load_dataset
    from .features import PRESETS, build_cache

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
                y=wave, sr=preset.sample_rate, n_fft=preset.n_fft, win_length=preset.win_length,
                hop_length=preset.hop_length, window="hamming", pad_mode="constant",
                n_mels=preset.n_mels, fmin=preset.f_min, fmax=preset.f_max, norm="slaney",
            )  # fmt: skip
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
    import numpy as np
    import soundfile as sf

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
