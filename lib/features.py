"""Log-mel features: the presets of the paper, the torchaudio front end, and the feature cache.

Every clip is decoded once (soundfile), downmixed, resampled, peak-normalised and turned into
a log-mel spectrogram; the whole dataset goes into one float16 memmap (time-major, so a patch is
a contiguous block of rows) with an offsets table. Training then reads random patches without
any decoding. The cache is keyed by a hash of the preset and of the file list (names, sizes,
mtimes): changing either builds a new cache, and a build killed half way continues.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import soxr
import torch
import torchaudio
from tqdm.auto import tqdm

from .atomic import atomic_write_text, exclusive, remove_stale_temporaries
from .datasets import AudioError, Dataset, check_samples, file_stamps, read_mono
from .system import usable_cpus


@dataclass(frozen=True)
class Preset:
    """Front-end parameters; `patch_frames` and `eval_hop` say how models consume the result."""

    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    f_min: float
    f_max: float
    log_offset: float = 1.1e-8
    patch_frames: int = 101
    eval_hop: int = 50


PRESETS = {
    # the authors' (docs/protocol.md): 30 ms Hamming window, 10 ms hop, 96 mels 50 Hz-10.5 kHz,
    # ~1 s patches
    "ssl_paper": Preset(22050, 2048, 660, 220, 96, 50.0, 10500.0, patch_frames=101, eval_hop=50),
    # the authors' (docs/protocol.md): 40 ms window, 20 ms hop, 96 mels over the full band,
    # 2 s patches, log10(mel + float64's machine epsilon)
    "sup_paper": Preset(
        44100, 2048, 1764, 882, 96, 0.0, 22050.0, 2.220446049250313e-16, patch_frames=100
    ),
    # ours: 16 kHz, 25 ms window, 10 ms hop, 64 mels, 0.64 s patches: fast on 2 CPU cores
    "cpu": Preset(16000, 512, 400, 160, 64, 50.0, 8000.0, patch_frames=64, eval_hop=32),
}


def get_preset(preset: str | Preset) -> Preset:
    """A preset by name (or the preset itself), with a clear error for unknown names."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown feature preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Decode a file to mono float32 at `sample_rate`, peak-normalised to 1.

    Stereo (or more) is averaged to mono and other rates are resampled: documented handling,
    not errors. A clip without a finite, non-zero peak to normalise by (NaN or Inf samples,
    silence) raises AudioError.
    """
    wave, rate = read_mono(path)
    if rate != sample_rate:  # soxr (librosa's default resampler): high quality and fast
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ")
    check_samples(path, wave)
    wave = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    return wave / wave.abs().max()


@lru_cache(maxsize=8)
def _front_end(preset: Preset) -> tuple[torch.Tensor, torch.Tensor, slice]:
    """The analysis window, the mel filterbank as a sparse (n_mels, bins) matrix, and its bins.

    The filterbank is torchaudio's (slaney scale and norm, i.e. librosa's filters). Each FFT bin
    feeds at most two mel bands, so a sparse product is about 10x cheaper than a dense one.
    """
    fbanks = torchaudio.functional.melscale_fbanks(
        preset.n_fft // 2 + 1, preset.f_min, preset.f_max, preset.n_mels, preset.sample_rate,
        norm="slaney", mel_scale="slaney",
    )  # fmt: skip
    used = fbanks.sum(dim=1).nonzero()
    bins = slice(int(used.min()), int(used.max()) + 1)
    return torch.hamming_window(preset.win_length), fbanks[bins].T.to_sparse(), bins


def log_mel(wave: torch.Tensor, preset: str | Preset, *, chunk: int = 128) -> torch.Tensor:
    """(..., samples) waveform -> (..., n_mels, frames) log10 mel power spectrogram.

    Equal to torchaudio's MelSpectrogram (Hamming window, centred frames zero-padded as in
    librosa >= 0.10, power 2, slaney mels) followed by log10(x + offset), computed faster:
    `chunk` frames at a time, so that the frames, their spectra and powers stay in the CPU's
    cache (twice as fast on 30 s clips), with a sparse mel product.
    """
    preset = get_preset(preset)
    window, fbanks, bins = _front_end(preset)
    batch, hop = wave.shape[:-1], preset.hop_length
    padded = torch.nn.functional.pad(
        wave.reshape(-1, wave.shape[-1]), (preset.n_fft // 2, preset.n_fft // 2)
    )
    n_frames = 1 + wave.shape[-1] // hop
    mels = []
    with torch.no_grad():
        for first in range(0, n_frames, chunk):
            last = min(first + chunk, n_frames)
            spec = torch.stft(
                padded[:, first * hop : (last - 1) * hop + preset.n_fft], preset.n_fft, hop,
                preset.win_length, window, center=False, return_complex=True,
            )[:, bins]  # fmt: skip
            power = spec.real.square() + spec.imag.square()  # much faster than abs() ** 2
            mel = torch.sparse.mm(fbanks, power.transpose(0, 1).reshape(power.shape[1], -1))
            mels.append(mel.reshape(-1, power.shape[0], last - first))
        mel = torch.cat(mels, dim=2).transpose(0, 1)
        return torch.log10(mel + preset.log_offset).reshape(*batch, preset.n_mels, n_frames)


def clip_log_mel(path: str | Path, preset: str | Preset) -> np.ndarray:
    """The (n_mels, frames) log-mel of one file, float32."""
    preset = get_preset(preset)
    return log_mel(load_audio(path, preset.sample_rate), preset).numpy()


def patch_starts(length: int, frames: int, hop: int, *, end_patch: bool = True) -> np.ndarray:
    """First frames of a clip's evaluation patches: 0, hop, 2*hop, ... while they fit, then
    (end_patch) one aligned to the clip's end for any remainder; a clip shorter than a patch
    gives one."""
    starts = list(range(0, max(length - frames, 0) + 1, hop))
    if end_patch and length > frames and starts[-1] + frames < length:
        starts.append(length - frames)
    return np.array(starts)


def patch_frame_index(starts: np.ndarray, frames: int, lengths) -> np.ndarray:
    """(patches, frames) frame indices of patches; a clip shorter than a patch is repeated to
    fill it (modulo indexing), as the authors do."""
    return (np.asarray(starts)[:, None] + np.arange(frames)) % lengths


# ----------------------------------------------------------------------------- the cache

CACHE_ENV = "ACLAUDIO_CACHE"


def default_cache_dir(dataset: Dataset) -> Path:
    """$ACLAUDIO_CACHE when set (shared between checkouts), else beside the dataset."""
    return Path(os.environ.get(CACHE_ENV) or dataset.root / ".aclaudio-cache")


def cache_key(dataset: Dataset, preset: Preset) -> str:
    """Hash of the preset and of every file's name, size and mtime: any change, a new cache."""
    digest = hashlib.sha256(json.dumps(asdict(preset), sort_keys=True).encode())
    for stamp in file_stamps(dataset.clips):
        digest.update(stamp.encode())
    return digest.hexdigest()[:16]


class FeatureCache:
    """Read side of a finished cache: per-clip log-mels and patches straight from the memmap."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{self.path}: not a finished feature cache (no meta.json)")
        self.meta = json.loads(meta_file.read_text())
        self.preset = Preset(**self.meta["preset"])
        self.clips = pd.read_csv(
            self.path / "clips.csv", dtype={"fname": str, "label": str}, keep_default_na=False
        )
        self.bad_files = pd.read_csv(self.path / "bad_files.csv", keep_default_na=False)
        total = int(self.clips["length"].sum())
        self.data = np.memmap(
            self.path / "features.f16",
            dtype=np.float16,
            mode="r",
            shape=(total, self.preset.n_mels),
        )
        self._offsets = self.clips["offset"].to_numpy()
        self._lengths = self.clips["length"].to_numpy()

    def __len__(self) -> int:
        return len(self.clips)

    def relabel(self, dataset: Dataset) -> FeatureCache:
        """Take labels, targets and subset flags from the dataset as it is now.

        The cache key covers the audio files only, so an edited train.csv (a corrected label)
        reuses the features but must not reuse the old labels.
        """
        stored = self.clips[["split", "fname", "offset", "length"]]
        current = dataset.clips.drop(columns=["offset", "length"], errors="ignore")
        self.clips = stored.merge(current, on=["split", "fname"], how="left", validate="1:1")
        return self

    def clip(self, row: int) -> np.ndarray:
        """The (n_mels, frames) log-mel of clip `row` (row of `self.clips`), float32."""
        start = self._offsets[row]
        return np.asarray(self.data[start : start + self._lengths[row]], np.float32).T

    def random_patches(
        self, rows: np.ndarray, frames: int | None = None, *, rng: np.random.Generator
    ) -> np.ndarray:
        """One random (n_mels, frames) patch per clip in `rows`, as (B, n_mels, frames) float32.

        Clips shorter than a patch are repeated to fill it (modulo indexing), as the authors do.
        """
        frames = frames or self.preset.patch_frames
        rows = np.asarray(rows)
        lengths = self._lengths[rows]
        starts = rng.integers(0, np.maximum(lengths - frames, 0) + 1)
        return self._gather(rows, starts, frames)

    def clip_patches(
        self, row: int, frames: int | None = None, hop: int | None = None, *, end_patch: bool = True
    ):
        """All patches of one clip with a hop (see patch_starts), (P, n_mels, frames) float32,
        for evaluation."""
        frames = frames or self.preset.patch_frames
        hop = hop or self.preset.eval_hop
        starts = patch_starts(self._lengths[row], frames, hop, end_patch=end_patch)
        return self._gather(np.full(len(starts), row), starts, frames)

    def patches_at(self, rows: np.ndarray, starts: np.ndarray, frames: int) -> np.ndarray:
        """(B, n_mels, frames) float32 patches of clips `rows` starting at frames `starts`."""
        return self._gather(np.asarray(rows), np.asarray(starts), frames)

    def _gather(self, rows: np.ndarray, starts: np.ndarray, frames: int) -> np.ndarray:
        offsets = patch_frame_index(starts, frames, self._lengths[rows][:, None])
        patches = self.data[self._offsets[rows][:, None] + offsets]  # (B, frames, n_mels)
        return np.ascontiguousarray(patches.transpose(0, 2, 1), dtype=np.float32)


def build_cache(
    dataset: Dataset,
    preset: str | Preset,
    *,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    chunk: int = 64,
) -> FeatureCache:
    """Compute (or find, or finish) the cache of every clip's log-mel for a dataset.

    Work is committed in chunks: features are appended to a partial file and `progress.json`
    records what is safely on disk, so a killed build continues where it stopped. Clips that
    fail to decode go into the cache's bad_files.csv together with the dataset's own.
    """
    preset = get_preset(preset)
    name = next((k for k, v in PRESETS.items() if v == preset), "custom")
    path = Path(cache_dir or default_cache_dir(dataset)) / f"{name}-{cache_key(dataset, preset)}"
    # A finished cache is read without a lock (its folder may be read-only). Builders take turns:
    # one builds, the others wait, then find the finished cache.
    if _unfinished(path) is not None:
        _make_cache_folder(path.parent)
        with exclusive(path.with_name(f".{path.name}.lock"), f"feature cache {path}"):
            problem = _unfinished(path)
            if problem:
                print(f"feature cache {path} is damaged: {problem}; building it again",
                      file=sys.stderr, flush=True)  # fmt: skip
                shutil.rmtree(path)
            if problem is not None:
                _build(dataset, preset, name, path, workers=workers, progress=progress,
                       chunk=chunk)  # fmt: skip
    return FeatureCache(path).relabel(dataset)


def _unfinished(path: Path) -> str | None:
    """Why the cache at `path` cannot be used: "" when it was never finished, the damage when
    its data file does not hold exactly what its index says; None for a usable cache."""
    if not (path / "meta.json").is_file():
        return ""
    meta = json.loads((path / "meta.json").read_text())
    data_file = path / "features.f16"
    expected = meta["frames"] * meta["preset"]["n_mels"] * 2  # float16
    found = data_file.stat().st_size if data_file.is_file() else 0
    if found == expected:
        return None
    return f"{data_file.name} has {found} bytes where its index says {expected}"


def _build(
    dataset: Dataset, preset: Preset, name: str, path: Path, *, workers, progress, chunk
) -> None:
    """Compute the cache into `path`, continuing a killed build from its last commit."""
    path.mkdir(exist_ok=True)
    remove_stale_temporaries(path)  # under the lock: no live writer here
    data_file, progress_file = path / "features.f16.partial", path / "progress.json"
    done = {"rows": [], "lengths": [], "bad": []}
    if progress_file.is_file() and data_file.is_file():
        done = json.loads(progress_file.read_text())
    with open(data_file, "ab") as out:
        out.truncate(sum(done["lengths"]) * preset.n_mels * 2)  # drop what followed the commit
    start_time = time.perf_counter()
    todo = list(range(len(done["rows"]) + len(done["bad"]), len(dataset.clips)))
    _compute(dataset, preset, todo, done, data_file, progress_file,
             desc=f"log-mel {name}", workers=workers, progress=progress, chunk=chunk)  # fmt: skip
    seconds = time.perf_counter() - start_time

    clips = dataset.clips.iloc[done["rows"]].copy()
    clips["length"] = done["lengths"]
    clips["offset"] = np.concatenate([[0], np.cumsum(done["lengths"])[:-1]]).astype(np.int64)
    decode_bad = dataset.clips.iloc[[r for r, _ in done["bad"]]][["split", "fname", "path"]]
    decode_bad = decode_bad.assign(problem=[p for _, p in done["bad"]])
    clips.to_csv(path / "clips.csv", index=False)
    pd.concat([dataset.bad_files, decode_bad], ignore_index=True).to_csv(
        path / "bad_files.csv", index=False
    )
    os.replace(data_file, path / "features.f16")
    audio_seconds = float(dataset.clips.iloc[todo]["duration"].sum()) if todo else 0.0
    meta = {
        "preset_name": name,
        "preset": asdict(preset),
        "dataset": str(dataset.root),
        "clips": len(clips),
        "frames": int(clips["length"].sum()),
        "build_seconds": round(seconds, 3),
        "x_realtime": round(audio_seconds / seconds, 1) if seconds > 0 and todo else None,
    }
    atomic_write_text(path / "meta.json", json.dumps(meta, indent=1))  # written last: the marker
    progress_file.unlink(missing_ok=True)  # absent when there was nothing to commit


def _compute(dataset, preset, todo, done, data_file, progress_file, *, desc, workers, progress,
             chunk) -> None:  # fmt: skip
    """Log-mels of the `todo` rows in worker processes, appended to `data_file` and committed
    (fsync, then `done` in `progress_file`) every `chunk` clips."""
    paths = dataset.clips["path"].tolist()
    total = len(dataset.clips)
    bar = tqdm(total=total, initial=total - len(todo), desc=desc, unit="clip", disable=not progress)
    pool = ProcessPoolExecutor(workers or min(usable_cpus(), 8), initializer=_worker_init)
    try:
        with open(data_file, "ab") as out:
            # every clip is queued at once (no idle worker waiting for a slow one); results come
            # back in order and are committed every `chunk` clips
            results = pool.map(
                _features_or_error, [paths[r] for r in todo], [preset] * len(todo), chunksize=2
            )
            for count, (row, result) in enumerate(zip(todo, results, strict=True), start=1):
                if isinstance(result, str):
                    done["bad"].append([row, result])
                else:
                    out.write(result.tobytes())
                    done["rows"].append(row)
                    done["lengths"].append(result.shape[0])
                if count % chunk == 0 or count == len(todo):
                    out.flush()
                    os.fsync(out.fileno())
                    atomic_write_text(progress_file, json.dumps(done))
                    bar.update(count - bar.n + total - len(todo))
    finally:  # on an error (a full disk), the queued clips are dropped, not computed first
        pool.shutdown(cancel_futures=True)
        bar.close()


def _make_cache_folder(folder: Path) -> None:
    """Create the folder of the caches, or say where else it can go (a read-only dataset)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"cannot create the feature cache in {folder} ({error.strerror}): "
            f"point ${CACHE_ENV} or --cache-dir at a writable folder"
        ) from None


def _worker_init() -> None:
    torch.set_num_threads(1)  # one process per core beats threads inside small FFTs
    threading.Thread(target=_exit_with_parent, daemon=True).start()


def _exit_with_parent() -> None:
    """Worker thread: end the worker when the build's process has gone, even by kill -9
    (the pool's workers would otherwise work on, then wait for more forever)."""
    multiprocessing.parent_process().join()
    os._exit(1)


def _features_or_error(path: str, preset: Preset) -> np.ndarray | str:
    """Worker: a file's log-mel as stored (frames, n_mels) float16, or the problem's text."""
    try:
        return clip_log_mel(path, preset).T.astype(np.float16)
    except AudioError as error:
        return error.problem
