"""The feature cache: every clip's log-mel (features.py) in one float16 memmap, time-major so
that a patch is a contiguous block of rows, with an offsets table. Training then reads random
patches without any decoding. The cache is keyed by a hash of the preset and of the file list
(names, sizes, mtimes): changing either builds a new cache, and a build killed half way
continues.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from aclaudio.data.atomic import (
    DamagedFileError,
    atomic_write_text,
    exclusive,
    read_json_object,
    read_written,
    remove_stale_temporaries,
)
from aclaudio.data.audio import clip_log_mel
from aclaudio.data.datasets import AudioError, Dataset, file_stamps
from aclaudio.data.features import PRESETS, Preset, get_preset, patch_frame_index, patch_starts
from aclaudio.data.system import end_with_parent, usable_cpus

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
        remedy = f"delete {self.path} and run `aclaudio features` again"
        self.meta = read_written(meta_file, _read_meta, remedy=remedy)
        self.preset = Preset(**self.meta["preset"])
        self.clips = read_written(self.path / "clips.csv", _read_clips, remedy=remedy)
        self.bad_files = read_written(self.path / "bad_files.csv", _read_table, remedy=remedy)
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
        self,
        row: int,
        frames: int | None = None,
        hop: int | None = None,
        *,
        end_patch: bool = False,
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
                print(
                    f"feature cache {path} is damaged: {problem}; building it again",
                    file=sys.stderr,
                    flush=True,
                )
                shutil.rmtree(path)
            if problem is not None:
                _build(dataset, preset, name, path, workers=workers, progress=progress, chunk=chunk)
    return FeatureCache(path).relabel(dataset)


def _unfinished(path: Path) -> str | None:
    """Why the cache at `path` cannot be used: "" when it was never finished, the damage when
    a file does not read back or does not hold what its index says; None for a usable cache.

    The index (meta.json) records the data file's size, modification time and digest: a data
    file whose size or time changed is read through once more and must match the digest."""
    if not (path / "meta.json").is_file():
        return ""
    try:
        meta = read_written(path / "meta.json", _read_meta, remedy="")
        clips = read_written(path / "clips.csv", _read_clips, remedy="")
        read_written(path / "bad_files.csv", _read_table, remedy="")
    except DamagedFileError as error:
        return str(error).removesuffix("; ")
    data_file = path / "features.f16"
    if len(clips) != meta["clips"] or int(clips["length"].sum()) != meta["frames"]:
        return f"clips.csv lists {len(clips)} clips of {int(clips['length'].sum())} frames " + (
            f"where meta.json says {meta['clips']} of {meta['frames']}"
        )
    expected = meta["frames"] * meta["preset"]["n_mels"] * 2  # float16
    found = data_file.stat().st_size if data_file.is_file() else 0
    if found != expected:
        return f"{data_file.name} has {found} bytes where its index says {expected}"
    if (
        data_file.stat().st_mtime_ns != meta["data_mtime_ns"]
        and _digest(data_file) != meta["data_digest"]
    ):
        return f"{data_file.name} does not hold the bytes its index's digest says"
    return None


def _read_meta(path: Path) -> dict:
    """meta.json with every key the cache needs (a cache from before digests: rebuilt)."""
    meta = read_json_object(path)
    for key in ("preset", "clips", "frames", "data_digest", "data_mtime_ns"):
        meta[key]  # noqa: B018 -- a KeyError names the missing key
    return meta


def _read_clips(path: Path) -> pd.DataFrame:
    clips = pd.read_csv(path, dtype={"fname": str, "label": str}, keep_default_na=False)
    missing = {"split", "fname", "offset", "length"} - set(clips.columns)
    if missing:
        raise ValueError(f"missing column(s) {', '.join(sorted(missing))}")
    return clips


def _read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False)


def _digest(path: Path) -> str:
    """blake2b of a file's bytes, read in blocks (gigabytes in seconds)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "blake2b").hexdigest()


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
    _compute(
        dataset,
        preset,
        todo,
        done,
        data_file,
        progress_file,
        desc=f"log-mel {name}",
        workers=workers,
        progress=progress,
        chunk=chunk,
    )
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
        "data_digest": _digest(path / "features.f16"),
        "data_mtime_ns": (path / "features.f16").stat().st_mtime_ns,
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


def _compute(
    dataset, preset, todo, done, data_file, progress_file, *, desc, workers, progress, chunk
) -> None:
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
    end_with_parent()


def _features_or_error(path: str, preset: Preset) -> np.ndarray | str:
    """Worker: a file's log-mel as stored (frames, n_mels) float16, or the problem's text."""
    try:
        return clip_log_mel(path, preset).T.astype(np.float16)
    except AudioError as error:
        return error.problem
