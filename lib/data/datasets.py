"""Read any dataset laid out like FSDnoisy18k, validate it, and select its subsets.

Layout (docs/protocol.md, FSDnoisy18k)::

    ROOT/FSDnoisy18k.audio_train/*.wav    ROOT/FSDnoisy18k.meta/train.csv
    ROOT/FSDnoisy18k.audio_test/*.wav     ROOT/FSDnoisy18k.meta/test.csv

The class list comes from train.csv, so a dataset with 13 or 50 classes works unchanged.
Problems with single clips (missing, unreadable, empty, corrupt, truncated, implausible headers,
unlabelled, duplicated, named outside their audio folder; on request NaN or silent samples) never
stop loading: each is recorded in `Dataset.bad_files` with the file and the problem, and the clip
is left out of `Dataset.clips`. A CSV name is judged as written: `..` and absolute paths that leave
the split's audio folder are refused, while a symbolic link inside the folder may point anywhere
(a folder of links into a shared store is a valid layout).
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
from typing import BinaryIO

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
UNREADABLE = "not readable as audio"  # how every problem with a file's format begins
UNKNOWN_LENGTH = 0xFFFFFFFF  # a data chunk's size when the writer could not seek back (a pipe)
# WAV encodings whose frame is the channels' samples side by side (PCM, IEEE float, A-law, mu-law,
# extensible), so that the block align is channels x bytes per sample
FRAME_ENCODINGS = {0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE}


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
        except OSError as error:  # load_dataset names the file as bad; the stamp says why
            reason = "missing" if isinstance(error, FileNotFoundError) else error.strerror
            yield f"{split}/{fname}:{reason}\n"
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
    folder = AUDIO_DIRS[split]
    table["path"] = [str(root / folder / os.path.normpath(name)) for name in table["fname"]]
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

    row_checks = [  # in this order: a later check sees only the rows that passed the earlier
        (lambda t: (t["fname"] == "") | (t["label"] == ""), "empty file name or label"),
        (lambda t: t["fname"].str.contains("\0", regex=False), "name holds a NUL character"),
        (lambda t: t["fname"].map(_leaves_folder), f"name points outside {folder}/"),
        (lambda t: t.duplicated("path", keep="first"), "duplicate row for this file, first kept"),
    ]
    bad = []
    for rows_failing, problem in row_checks:
        failing = rows_failing(table)
        bad += _bad_rows(table[failing], f"{csv.name} line {{csv_line}}: {problem}")
        table = table[~failing]
    return table.drop(columns="csv_line"), bad


def _leaves_folder(name: str) -> bool:
    """Whether a CSV name, read as written, leaves its audio folder (absolute, or `..` climbing
    out): a file there would be trained on (a test clip) or read (/etc/passwd) unnoticed."""
    relative = os.path.normpath(name)
    return os.path.isabs(relative) or relative.split(os.sep)[0] == os.pardir


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
    try:  # opening first lets the system say why the file cannot be read
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            header = _wav_header_problem(handle, size)
    except OSError as error:  # missing, a folder, a symbolic link loop, no permission, EIO
        return _system_problem(error)
    except ValueError as error:  # a NUL in the path: no file can have that name
        return f"cannot be read ({error})"
    if size == 0:
        return "empty file (0 bytes)"
    if header:
        return header
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as error:
        return f"{UNREADABLE} ({error})"
    if info.frames == 0:
        return "no audio samples (zero length)"
    if rate_problem := _sample_rate_problem(info.samplerate):
        return rate_problem
    if info.duration > MAX_SECONDS:
        return f"implausibly long for a clip: {info.duration:.0f} s (at most {MAX_SECONDS} s)"
    return None


def _sample_rate_problem(rate: int) -> str | None:
    """Why a header's sample rate cannot be true; None when it can."""
    low, high = SAMPLE_RATES
    if low <= rate <= high:
        return None
    return f"implausible sample rate in the header: {rate} Hz (expected {low} to {high} Hz)"


def _system_problem(error: OSError) -> str:
    """A data file the system will not open, in the system's words."""
    if isinstance(error, FileNotFoundError):
        return "listed in the CSV but missing"
    return f"cannot be read ({error.strerror or error})"


def _wav_header_problem(handle: BinaryIO, size: int) -> str | None:
    """What is wrong with a RIFF/WAVE file's chunks (libsndfile reads a truncated file as a
    shorter one, and some damage as fine); None when they hold, or for other formats, which
    libsndfile judges alone. Every chunk is checked against the file's `size` before use."""
    head = handle.read(12)
    if head[:4] != b"RIFF":
        return None
    if len(head) < 12:
        return f"{UNREADABLE}: truncated header, the file ends at byte {size}, in the RIFF header"
    if head[8:] != b"WAVE":
        return f"{UNREADABLE}: a RIFF file of form {head[8:]!r}, not WAVE"
    position, fmt_seen = 12, False
    while len(chunk := handle.read(8)) == 8:
        kind, length = struct.unpack("<4sI", chunk)
        left = size - position - 8
        if not all(32 <= byte < 127 for byte in kind):  # not a chunk: libsndfile stops here too
            return f"{UNREADABLE}: no chunk name at byte {position} ({kind!r})"
        if kind == b"data":
            if not fmt_seen:
                return f"{UNREADABLE}: the data chunk comes before the fmt chunk"
            if length != UNKNOWN_LENGTH and length > left:
                return (
                    f"truncated: the header declares {length} bytes of audio, the file holds {left}"
                )
            return None
        if length > left:
            return (
                f"{UNREADABLE}: truncated header, the {kind.decode()!r} chunk at byte "
                f"{position} declares {length} bytes, the file ends {left} bytes later"
            )
        if kind == b"fmt ":
            fmt_seen = True
            if problem := _fmt_problem(handle.read(min(length, 16))):
                return problem
        position += 8 + length + length % 2
        handle.seek(position)
    missing = "data" if fmt_seen else "fmt"
    return (
        f"{UNREADABLE}: truncated header, the file ends at byte {size}, before the {missing} chunk"
    )


def _fmt_problem(fmt: bytes) -> str | None:
    """What is impossible in a fmt chunk's first 16 bytes; None when they can describe audio."""
    if len(fmt) < 16:
        return f"{UNREADABLE}: the fmt chunk holds {len(fmt)} bytes, at least 16 expected"
    encoding, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt)
    if rate_problem := _sample_rate_problem(rate):  # libsndfile calls 0 "SF_INFO incomplete"
        return rate_problem
    if channels == 0:
        return f"{UNREADABLE}: the header declares zero channels"
    if block_align == 0:
        return f"{UNREADABLE}: the header declares a block align of zero"
    if encoding in FRAME_ENCODINGS and block_align != channels * -(-bits // 8):
        return (
            f"{UNREADABLE}: a block align of {block_align} bytes cannot hold "
            f"{channels} channel(s) of {bits} bits"
        )
    return None


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file to mono float32 samples (channels averaged) and their sample rate."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:  # libsndfile says only "System error"
        raise AudioError(path, _open_problem(path) or f"cannot be decoded ({error})") from None
    if len(audio) == 0:
        raise AudioError(path, "no audio samples (zero length)")
    return audio.mean(axis=1), rate


def _open_problem(path: str | Path) -> str | None:
    """Why the system will not open a file (it went bad after loading); None when it opens."""
    try:
        with open(path, "rb"):
            return None
    except OSError as error:
        return _system_problem(error)


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
