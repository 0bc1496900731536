"""Read any dataset laid out like FSDnoisy18k, validate it, and select its subsets.

Layout (docs/protocol.md, FSDnoisy18k)::

    ROOT/FSDnoisy18k.audio_train/*.wav    ROOT/FSDnoisy18k.meta/train.csv
    ROOT/FSDnoisy18k.audio_test/*.wav     ROOT/FSDnoisy18k.meta/test.csv

The class list comes from train.csv, so a dataset with 13 or 50 classes works unchanged.
Problems with single clips (missing, unreadable, empty, corrupt, truncated, implausible headers,
unlabelled, duplicated; on request NaN or silent samples) never stop loading: each is recorded in
`Dataset.bad_files` with the file and the problem, and the clip is left out of `Dataset.clips`.
Problems that make the whole dataset unusable (no CSV, no rows, missing columns) raise
`DatasetError` naming the file.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from aclaudio.data.layout import AUDIO_DIRS, META_DIR

REQUIRED_COLUMNS = {
    "train": ["fname", "label", "manually_verified", "noisy_small"],
    "test": ["fname", "label"],
}
SUBSETS = ("clean", "noisy", "noisy_small", "all", "test")
# A header outside these is lying (a corrupt file), and decoding it would be slow or huge: a 24 KB
# file at "1 Hz" lasts 3.3 hours and resamples to gigabytes.
SAMPLE_RATES = (1_000, 384_000)  # Hz
MAX_SECONDS = 600  # a clip, not a recording: a worker holds the whole clip in memory


class DatasetError(ValueError):
    """The dataset as a whole cannot be used (the message names the file and the problem)."""


class AudioError(ValueError):
    """A clip that cannot be used once decoded: the message names the file, `problem` says why."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.problem = problem


@dataclass
class Dataset:
    """A validated dataset: one row per usable clip, the classes, and what was left out and why."""

    root: Path
    classes: list[str]
    clips: pd.DataFrame
    bad_files: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["split", "fname", "path", "problem"])
    )

    def subset(self, name: str) -> pd.DataFrame:
        """The clips of one subset: clean, noisy, noisy_small, all (train) or test."""
        return self.clips[subset_mask(self.clips, name)]

    def summary(self) -> dict:
        """Classes, clip counts and hours per subset, and the bad files: JSON-able."""
        subsets = {}
        for name in SUBSETS:
            clips = self.subset(name)
            subsets[name] = {
                "clips": len(clips),
                "hours": round(float(clips["duration"].sum()) / 3600, 4),
            }
        return {
            "root": str(self.root),
            "classes": self.classes,
            "n_classes": len(self.classes),
            "subsets": subsets,
            "clips_per_class": {
                split: self.clips[self.clips["split"] == split]["label"].value_counts().to_dict()
                for split in AUDIO_DIRS
            },
            "bad_files": self.bad_files[["split", "fname", "problem"]].to_dict(orient="records"),
        }


def subset_mask(clips: pd.DataFrame, name: str) -> pd.Series:
    """Boolean mask of a subset over any table with the columns of `Dataset.clips`."""
    train = clips["split"] == "train"
    masks = {
        "clean": lambda: train & (clips["manually_verified"] == 1),
        "noisy": lambda: train & (clips["manually_verified"] == 0),
        "noisy_small": lambda: train & (clips["noisy_small"] == 1),
        "all": lambda: train,
        "test": lambda: clips["split"] == "test",
    }
    if name not in masks:
        raise ValueError(f"unknown subset {name!r}; choose one of {', '.join(SUBSETS)}")
    return masks[name]()


def load_dataset(root: str | Path, *, read_samples: bool = False) -> Dataset:
    """Read and validate the CSVs and the audio headers of a dataset in the FSDnoisy18k layout.

    `read_samples` also decodes every clip and leaves out those that the feature cache would
    reject (NaN or Inf samples, silence): slower, it reads all the audio.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    tables, bad = [], []
    for split in AUDIO_DIRS:
        table, problems = _read_split(root, split)
        tables.append(table)
        bad.extend(problems)
    clips = pd.concat(tables, ignore_index=True)

    classes = sorted(clips.loc[clips["split"] == "train", "label"].unique())
    unknown = (clips["split"] == "test") & ~clips["label"].isin(classes)
    bad.extend(_bad_rows(clips[unknown], "label {label!r} does not occur in train.csv"))
    clips = clips[~unknown]

    checks = [audio_problem, _samples_problem] if read_samples else [audio_problem]
    for check in checks:
        decoding = check is _samples_problem  # reads every clip: long enough for a progress bar
        paths = tqdm(clips["path"], desc="reading audio", unit="clip", disable=not decoding)
        problems = pd.Series([check(path) for path in paths], index=clips.index, dtype=object)
        bad.extend(_bad_rows(clips[problems.notna()], "", problems=problems))
        clips = clips[problems.isna()].copy()
    clips["duration"] = clips["path"].map(lambda p: sf.info(p).duration)
    clips["target"] = clips["label"].map({c: i for i, c in enumerate(classes)}).astype(int)
    bad_files = pd.DataFrame(bad, columns=["split", "fname", "path", "problem"])
    return Dataset(root, classes, clips.reset_index(drop=True), bad_files)


def file_stamps(clips: pd.DataFrame) -> Iterator[str]:
    """One line per clip file (split/name, size, mtime): a rewritten file reads as changed
    without being read, a copy that keeps mtimes (shutil.copytree, cp -p, a move) as the same."""
    for split, fname, path in clips[["split", "fname", "path"]].itertuples(index=False):
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            yield f"{split}/{fname}:missing\n"
            continue
        yield f"{split}/{fname}:{stat.st_size}:{stat.st_mtime_ns}\n"


def data_fingerprint(root: str | Path) -> str:
    """Sixteen hex digits naming a dataset's contents wherever its folder is: the rows of its
    CSVs (names, labels, subset flags) and the stamp of every file they list. Reads the CSVs
    only, so it is cheap enough to compute whenever a run is opened."""
    root = Path(root).expanduser()
    digest = hashlib.sha256()
    for split in AUDIO_DIRS:
        table, _ = _read_split(root, split)
        digest.update(table.drop(columns="path").to_csv(index=False).encode())
        for stamp in file_stamps(table):
            digest.update(stamp.encode())
    return digest.hexdigest()[:16]


def read_table(csv: Path, columns: list[str], *, layout: str) -> pd.DataFrame:
    """A metadata CSV as stripped strings with `columns` present, or a DatasetError naming the
    file: missing, unparsable, empty, or lacking a column (`layout` says what was expected)."""
    if not csv.is_file():
        raise DatasetError(f"{csv}: metadata file not found (expected {layout})")
    try:  # utf-8-sig strips a byte-order mark; pandas handles CRLF line ends
        table = pd.read_csv(csv, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{csv}: empty file, not even a header line") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DatasetError(f"{csv}: cannot be parsed as a UTF-8 CSV ({error})") from None
    if table.empty:
        raise DatasetError(f"{csv}: lists no clips, only the header line")
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DatasetError(f"{csv}: missing column(s) {', '.join(missing)}")
    return table.apply(lambda col: col.str.strip())


def _read_split(root: Path, split: str) -> tuple[pd.DataFrame, list[dict]]:
    """Read one CSV into clip rows (with paths), returning the rows it had to leave out."""
    csv = root / META_DIR / f"{split}.csv"
    table = read_table(csv, REQUIRED_COLUMNS[split], layout="the FSDnoisy18k layout")
    table.insert(0, "split", split)
    table["path"] = [str(root / AUDIO_DIRS[split] / name) for name in table["fname"]]
    table["csv_line"] = range(2, len(table) + 2)
    for flag in ("manually_verified", "noisy_small"):
        if flag not in table.columns:  # test.csv: every test clip is verified, none is noisy_small
            table[flag] = "1" if flag == "manually_verified" else "0"
        invalid = ~table[flag].isin(["0", "1"])
        if invalid.any():
            first = table[invalid].iloc[0]
            raise DatasetError(
                f"{csv} line {first['csv_line']}: {flag} must be 0 or 1, got {first[flag]!r}"
            )
        table[flag] = table[flag].astype(int)

    bad = []
    empty = (table["fname"] == "") | (table["label"] == "")
    bad += _bad_rows(table[empty], f"{csv.name} line {{csv_line}}: empty file name or label")
    table = table[~empty]
    repeated = table.duplicated("fname", keep="first")
    bad += _bad_rows(
        table[repeated], f"{csv.name} line {{csv_line}}: duplicate row for this file, first kept"
    )
    table = table[~repeated]
    return table.drop(columns="csv_line"), bad


def _bad_rows(rows: pd.DataFrame, template: str, problems: pd.Series | None = None) -> list[dict]:
    """Bad-file records for some rows; the problem text is a template over the row's fields."""
    return [
        {
            "split": row["split"],
            "fname": row["fname"],
            "path": row["path"],
            "problem": problems[index] if problems is not None else template.format(**row),
        }
        for index, row in rows.iterrows()
    ]


def audio_problem(path: str) -> str | None:
    """Why a listed audio file cannot be used, from its header alone; None when it looks fine."""
    file = Path(path)
    try:  # this opens the file first, so that the system says why it cannot be read
        declared = _declared_wav_frames(file)
    except FileNotFoundError:
        return "listed in the CSV but missing"
    except OSError as error:  # a folder, a symbolic link loop, no permission
        return f"cannot be read ({error.strerror})"
    if file.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as error:
        return f"not readable as audio ({error})"
    if info.frames == 0:
        return "no audio samples (zero length)"
    if declared is not None and declared > info.frames:
        return f"truncated: the header declares {declared} frames, the file holds {info.frames}"
    low, high = SAMPLE_RATES
    if not low <= info.samplerate <= high:
        return (
            f"implausible sample rate in the header: {info.samplerate} Hz "
            f"(expected {low} to {high} Hz)"
        )
    if info.duration > MAX_SECONDS:
        return f"implausibly long for a clip: {info.duration:.0f} s (at most {MAX_SECONDS} s)"
    return None


def _declared_wav_frames(file: Path) -> int | None:
    """Frames a WAV header promises (libsndfile silently reports only those present)."""
    with open(file, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while chunk := handle.read(8):
            if len(chunk) < 8:
                return None
            kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if kind == b"fmt ":
                fmt = handle.read(size + size % 2)
                block_align = struct.unpack("<H", fmt[12:14])[0]
            elif kind == b"data":
                return size // block_align if block_align else None
            else:
                handle.seek(size + size % 2, 1)
    return None


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file to mono float32 samples (channels averaged) and their sample rate."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(path, f"cannot be decoded ({error})") from None
    if len(audio) == 0:
        raise AudioError(path, "no audio samples (zero length)")
    return audio.mean(axis=1), rate


def check_samples(path: str | Path, samples: np.ndarray) -> None:
    """Raise AudioError for samples that cannot be peak-normalised: NaN or Inf, or silence."""
    if not np.isfinite(samples).all():
        raise AudioError(path, "NaN or Inf samples")
    if not samples.any():
        raise AudioError(path, "all-silent (every sample is zero)")


def _samples_problem(path: str) -> str | None:
    """Why a clip's decoded samples cannot be used (the feature cache's test); None if fine."""
    try:
        check_samples(path, read_mono(path)[0])
    except AudioError as error:
        return error.problem
    return None
