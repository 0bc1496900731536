"""ESC-50, a second real dataset: downloaded, verified, and converted to the FSDnoisy18k layout.

ESC-50 (Piczak, ACM Multimedia 2015): 2,000 five-second clips (44.1 kHz mono WAV) of 50
environmental sound classes, 40 a class, in 5 folds that keep the fragments of one Freesound
recording together. Licence CC BY-NC 3.0: it is downloaded from its public archive, never
redistributed. Converted, every command and notebook of the study runs on it unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from aclaudio.data.atomic import atomic_write_text
from aclaudio.data.datasets import DatasetError, audio_problem, read_table
from aclaudio.data.download import (
    NOTHING_FETCHED,
    ChecksumError,
    DownloadError,
    extract,
    fetch,
    file_digest,
    is_extracted,
    read_marker,
)
from aclaudio.data.layout import AUDIO_DIRS, DOC_DIR, META_DIR

#: The archive ESC-50's README links to. GitHub builds it on request, so its bytes (and so its
#: checksum) are not guaranteed to stay the same, and none is published.
ESC50_URL = "https://github.com/karolpiczak/ESC-50/archive/master.zip"
ARCHIVE_NAME = "ESC-50.zip"
ARCHIVE_BYTES = 700_000_000  # about 0.6 GB: the disk check's guess, as GitHub sends no length
#: md5 of meta/esc50.csv (dataset version 2.0.0) as listed in the soundata project's ESC-50
#: index: it pins every file name, label and fold, whatever the archive around it.
ESC50_CSV_MD5 = "54a0d0055a10bb7df84ad340a148722e"
LICENCE = "CC BY-NC 3.0"

CSV = Path("meta") / "esc50.csv"
AUDIO = "audio"
COLUMNS = ["filename", "fold", "target", "category"]  # the others (esc10, src_file, take) unused
FOLDS = (1, 2, 3, 4, 5)
# Whole folds, so that fragments of one recording never sit in two subsets.
TEST_FOLD, CLEAN_FOLD, NOISY_SMALL_FOLD = 5, 1, 2
MARKER = "esc50.json"  # written first into DOC_DIR: this folder holds a conversion


def read_esc50(root: str | Path) -> pd.DataFrame:
    """Every clip of an ESC-50 folder (meta/esc50.csv and audio/), checked before any use.

    Any problem raises DatasetError naming the file (and line), unlike loading a dataset, which
    leaves bad clips out: a clip missing here would silently unbalance the folds. Checked: the
    columns; every row (a plain file name, fold 1 to 5, an integer target, a category); unique
    file names; one category per target and one target per category; all five folds; every
    listed wav present and readable as audio (its header). Returns filename, fold, target,
    category and path, sorted by file name.
    """
    root = Path(root)
    csv = root / CSV
    table = read_table(csv, COLUMNS, layout="ESC-50's meta/esc50.csv")
    for line, row in enumerate(table.itertuples(index=False), start=2):
        problem = _row_problem(row)
        if problem is not None:
            raise DatasetError(f"{csv} line {line}: {problem}")
    repeated = table["filename"].duplicated()
    if repeated.any():
        line = int(np.flatnonzero(repeated)[0]) + 2
        raise DatasetError(f"{csv} line {line}: {table['filename'][line - 2]} is listed twice")
    pairs = table.drop_duplicates(["target", "category"])
    for column, other in (("target", "category"), ("category", "target")):
        repeated = pairs[column][pairs[column].duplicated()]
        if not repeated.empty:
            value = repeated.iloc[0]
            raise DatasetError(
                f"{csv}: {column} {value} goes with more than one {other}: "
                f"{', '.join(pairs.loc[pairs[column] == value, other])}"
            )
    table = table[COLUMNS].astype({"fold": int, "target": int})
    empty = sorted(set(FOLDS) - set(table["fold"]))
    if empty:
        raise DatasetError(f"{csv}: no clip in fold(s) {', '.join(map(str, empty))}")
    table["path"] = [str(root / AUDIO / name) for name in table["filename"]]
    for path in table["path"]:
        problem = audio_problem(path)
        if problem is not None:
            raise DatasetError(f"{path}: {problem}")
    return table.sort_values("filename", ignore_index=True)


def _row_problem(row) -> str | None:
    """Why one row of esc50.csv cannot be used; None when it can."""
    if not row.filename or Path(row.filename).name != row.filename or row.filename in ("..", "."):
        return f"filename must name a file inside audio/, got {row.filename!r}"
    if row.fold not in {str(fold) for fold in FOLDS}:
        return f"fold must be 1 to 5, got {row.fold!r}"
    if not row.target.isdigit():
        return f"target must be a class number, got {row.target!r}"
    if not row.category:
        return "empty category"
    return None


def download_esc50(
    dest: str | Path,
    *,
    url: str = ESC50_URL,
    sha256: str | None = None,
    csv_md5: str = ESC50_CSV_MD5,
    keep_zips: bool = False,
    progress: bool = True,
    retries: int = 3,
    backoff_s: float = 1.0,
) -> dict:
    """Download ESC-50's archive into `dest`, unzip it safely, verify it; return a JSON-able
    summary whose "source" is the ESC-50 folder to give `convert_esc50`.

    Verified: meta/esc50.csv has the published md5 `csv_md5` (so the 2,000 file names, labels
    and folds are ESC-50's), and `read_esc50` accepts the folder (every listed clip present and
    readable). The archive's own bytes are verified only against `sha256` when given: GitHub
    publishes no checksum. Its sha256 is recorded (in the extraction marker and the summary)
    to pin later downloads with, and a download whose sha256 differs from the one made here
    before says so. A verified extraction (matching `sha256` if given) is reused without any
    request; one that no longer verifies is downloaded again. Resuming a cut transfer needs a
    server that honours HTTP Range; GitHub's archive server may not, and a retry then restarts.
    """
    sha256 = _pinned(sha256)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    earlier = read_marker(ARCHIVE_NAME, dest)
    clips = _reusable(dest, sha256, csv_md5)
    status, transfer = "already verified", NOTHING_FETCHED
    if clips is None:
        zip_path = dest / ARCHIVE_NAME
        transfer = fetch(
            url,
            zip_path,
            sha256=sha256,
            progress=progress,
            retries=retries,
            backoff_s=backoff_s,
            unpack_ratio=1.0,  # wav barely compresses: the archive's size again to unzip it
            expected_bytes=ARCHIVE_BYTES,
        )
        digest = sha256 or file_digest(zip_path, "sha256")
        try:
            extract(zip_path, dest, record={"url": url, "sha256": digest})
            clips = _verified(dest, csv_md5)
        except (DatasetError, DownloadError):
            zip_path.unlink()  # unverified bytes that failed: never reused
            raise
        if not keep_zips:
            zip_path.unlink()
        if earlier is not None and earlier["sha256"] != digest:
            print(
                f"the ESC-50 archive differs from the one downloaded into {dest} before "
                f"(sha256 {digest}, was {earlier['sha256']})",
                file=sys.stderr,
            )
        status = "extracted"
    summary = _summary(dest, clips, csv_md5, earlier, status, transfer)
    return summary | {"seconds": round(time.perf_counter() - start, 3)}


def _pinned(sha256: str | None) -> str | None:
    """The archive's expected sha256 in lower case (None: not pinned); a malformed one is a
    ValueError."""
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256.lower()):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return sha256 and sha256.lower()


def _reusable(dest: Path, sha256: str | None, csv_md5: str) -> pd.DataFrame | None:
    """The clips of an earlier extraction in `dest` that still verifies and comes from the
    pinned archive, if one is pinned; None when there is no such extraction."""
    marker = read_marker(ARCHIVE_NAME, dest)
    if not is_extracted(ARCHIVE_NAME, dest) or sha256 not in (None, marker["sha256"]):
        return None
    try:
        return _verified(dest, csv_md5)
    except (DatasetError, DownloadError) as error:
        print(
            f"ESC-50 in {dest} no longer verifies ({error}): downloading it again", file=sys.stderr
        )
        return None


def _source(dest: Path) -> Path:
    """The folder of the extracted archive that holds meta/esc50.csv."""
    entries = read_marker(ARCHIVE_NAME, dest)["entries"]
    roots = [dest / entry for entry in entries if (dest / entry / CSV).is_file()]
    if len(roots) != 1:
        raise DownloadError(
            f"{dest / ARCHIVE_NAME}: expected one top folder holding {CSV.as_posix()}, "
            f"found {len(roots)} among {entries}"
        )
    return roots[0]


def _verified(dest: Path, csv_md5: str) -> pd.DataFrame:
    """The clips of the extracted archive, once its csv has the published md5."""
    source = _source(dest)
    got = file_digest(source / CSV, "md5")
    if got != csv_md5:
        raise ChecksumError(
            f"{source / CSV}: md5 mismatch (expected {csv_md5}, got {got}): not the published "
            "ESC-50 labels and folds"
        )
    return read_esc50(source)


def _summary(
    dest: Path, clips: pd.DataFrame, csv_md5: str, earlier: dict | None, status: str, transfer
) -> dict:
    """What was downloaded (as the marker records it), from where, and what it holds."""
    marker = read_marker(ARCHIVE_NAME, dest)
    return {
        "dataset": "ESC-50",
        "licence": LICENCE,
        "url": marker["url"],
        "dest": str(dest.resolve()),
        "source": str(_source(dest).resolve()),
        "status": status,
        **transfer,
        "sha256": marker["sha256"],
        "previous_sha256": earlier["sha256"] if earlier is not None else None,
        "csv_md5": csv_md5,
        "clips": len(clips),
        "classes": clips["category"].nunique(),
        "clips_per_fold": {
            str(k): int(v) for k, v in clips["fold"].value_counts().sort_index().items()
        },
    }


def convert_esc50(
    src: str | Path, dest: str | Path, *, label_noise: float = 0.0, seed: int = 0
) -> dict:
    """Write the ESC-50 folder `src` in the FSDnoisy18k layout under `dest`; return a summary.

    Fold 5 is the test set, folds 1 to 4 train: fold 1 the clean subset (manually_verified=1),
    folds 2 to 4 the noisy subset, fold 2 also noisy_small. Exactly round(label_noise x the noisy
    clips) of those, drawn with `seed`, get another class, drawn uniformly; true_label and fold
    keep ESC-50's. The same source, rate and seed give the same tables, byte for byte. Audio is
    hard-linked (copied where links are impossible), so nothing in `src` is ever written.
    Replaces an earlier conversion in `dest`; refuses a folder holding other FSDnoisy18k-style
    data. FSDnoisy18k.doc/README.md in `dest` records all of this.
    """
    if not 0 <= label_noise <= 1:
        raise ValueError(f"label noise must be between 0 and 1, got {label_noise}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    src, dest = Path(src), Path(dest)
    clips = read_esc50(src)
    _empty_layout(dest)
    settings = {"source": str(src.resolve()), "label_noise": label_noise, "seed": seed}
    atomic_write_text(dest / DOC_DIR / MARKER, json.dumps(settings))

    train, test = _plan(clips, label_noise, seed)
    linked = 0
    for split, table in (("train", train), ("test", test)):
        for name, path in zip(table["fname"], table["path"], strict=True):
            linked += _link_or_copy(Path(path), dest / AUDIO_DIRS[split] / name)
    columns = ["fname", "label", "aso_id", "manually_verified", "noisy_small", "true_label", "fold"]
    atomic_write_text(dest / META_DIR / "train.csv", train[columns].to_csv(index=False))
    atomic_write_text(dest / META_DIR / "test.csv", test[columns[:3]].to_csv(index=False))
    attributions = None  # ESC-50's LICENSE credits every clip, as CC BY-NC requires
    if (src / "LICENSE").is_file():
        attributions = f"{DOC_DIR}/ESC-50-LICENSE"
        shutil.copyfile(src / "LICENSE", dest / attributions)

    noisy = train[train["manually_verified"] == 0]
    csv_md5 = file_digest(src / CSV, "md5")
    summary = {
        "dest": str(dest.resolve()),
        **settings,
        "licence": LICENCE,
        "attributions": attributions,
        "csv_md5": csv_md5,
        "published_csv": csv_md5 == ESC50_CSV_MD5,
        "classes": clips["category"].nunique(),
        "clips": {
            "train": len(train),
            "clean": len(train) - len(noisy),
            "noisy": len(noisy),
            "noisy_small": int(train["noisy_small"].sum()),
            "test": len(test),
        },
        "wrong_labels": int((noisy["label"] != noisy["true_label"]).sum()),
        "hard_links": linked,
        "copies": len(clips) - linked,
    }
    atomic_write_text(dest / DOC_DIR / "README.md", _readme(summary))
    return summary


def _empty_layout(dest: Path) -> None:
    """dest's FSDnoisy18k folders, emptied; refused when they hold data no conversion made."""
    layout = [*AUDIO_DIRS.values(), META_DIR, DOC_DIR]
    if not (dest / DOC_DIR / MARKER).exists() and any((dest / d).exists() for d in layout):
        raise ValueError(
            f"{dest} already holds an FSDnoisy18k-style dataset that no ESC-50 conversion made; "
            "refusing to overwrite it: choose another folder"
        )
    for folder in layout:
        shutil.rmtree(dest / folder, ignore_errors=True)
        (dest / folder).mkdir(parents=True)


def _plan(clips: pd.DataFrame, label_noise: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and test tables: subsets by fold, then the injected label noise."""
    classes = sorted(clips["target"].unique())
    names = dict(zip(clips["target"], clips["category"], strict=True))
    table = clips.assign(fname=clips["filename"], true_label=clips["category"])
    table["manually_verified"] = (table["fold"] == CLEAN_FOLD).astype(int)
    table["noisy_small"] = (table["fold"] == NOISY_SMALL_FOLD).astype(int)
    train = table[table["fold"] != TEST_FOLD].reset_index(drop=True)  # sorted by file name
    given = train["target"].map(classes.index).to_numpy(copy=True)
    rng = np.random.default_rng(seed)
    noisy = np.flatnonzero(train["manually_verified"] == 0)
    wrong = rng.choice(noisy, round(label_noise * len(noisy)), replace=False)
    # a shift of 1 to n-1 classes: uniform over the classes other than the true one
    given[wrong] = (given[wrong] + rng.integers(1, len(classes), len(wrong))) % len(classes)
    train["target"] = [classes[c] for c in given]
    test = table[table["fold"] == TEST_FOLD].reset_index(drop=True)
    for split in (train, test):
        split["label"] = split["target"].map(names)
        split["aso_id"] = [f"esc50/{target:02d}" for target in split["target"]]
    return train, test


def _link_or_copy(source: Path, target: Path) -> bool:
    """Hard-link `target` to `source` (no space used, the source untouched), or copy it where
    the file system refuses links (another device, no link support). True when linked."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        return False
    return True


def _readme(summary: dict) -> str:
    clips = summary["clips"]
    lines = [
        "# ESC-50 in the FSDnoisy18k layout",
        "",
        f"Converted by `aclaudio convert esc50` from {summary['source']} (meta/esc50.csv md5 "
        f"{summary['csv_md5']}, {'the' if summary['published_csv'] else 'NOT the'} published "
        "version). The same source, label noise and seed give the same tables.",
        "",
        "ESC-50: K. J. Piczak, ESC: Dataset for Environmental Sound Classification, ACM "
        f"Multimedia 2015. Licence {LICENCE}: non-commercial use, do not redistribute. The "
        "attribution of every clip: "
        + (summary["attributions"] or "in ESC-50's LICENSE file (the source had none)")
        + ".",
        "",
        f"Test: fold {TEST_FOLD} ({clips['test']} clips, ESC-50's labels). Train: the other folds "
        f"({clips['train']} clips). Clean subset (manually_verified=1): fold {CLEAN_FOLD} "
        f"({clips['clean']} clips, ESC-50's labels). Noisy subset: the other train folds "
        f"({clips['noisy']} clips); noisy_small=1 marks fold {NOISY_SMALL_FOLD} "
        f"({clips['noisy_small']} clips). Whole folds keep the fragments of one recording in "
        "one subset.",
        "",
        f"Injected label noise: {summary['label_noise']} of the noisy subset, seed "
        f"{summary['seed']}: {summary['wrong_labels']} clips, chosen at random, carry another "
        "class drawn uniformly. Columns true_label and fold give ESC-50's class and fold; "
        "aso_id is esc50/NN with NN ESC-50's target number of the given label.",
        "",
        f"Audio: {summary['hard_links']} hard links to the source clips, {summary['copies']} "
        "copies. A hard link shares its bytes with the source: never edit these files in place.",
    ]
    return "\n".join(lines) + "\n"
