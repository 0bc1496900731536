"""The built-in dataset: procedurally synthesised sound events in the FSDnoisy18k layout.

Why: the study must run end to end on two CPU cores without a 13 GB download, on data that
behaves like FSDnoisy18k: 20 classes that differ in spectro-temporal structure, wide variation
within a class, confusable pairs, a small clean subset and a large noisy one whose wrong labels
lean towards the confusable partner. Written in the same layout, so one loader serves both.

Every clip draws from its own random stream, seeded by (seed, split, index): the files are
byte-identical for a seed whatever the order in which worker processes render them. One process
at a time writes a dataset beside its target, then moves it in: no half dataset is ever trusted.
"""

from __future__ import annotations

import io
import json
import numbers
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.fft import next_fast_len
from scipy.special import ndtr, ndtri
from tqdm.auto import tqdm

from aclaudio.data.atomic import atomic_write_text, exclusive, read_json_object
from aclaudio.data.layout import AUDIO_DIRS, DOC_DIR, META_DIR
from aclaudio.data.sounds import CLASS_NAMES, CLASSES, SAMPLE_RATE, coloured_noise, fade, unit
from aclaudio.data.system import end_with_parent, usable_cpus, work_folder

GENERATOR_VERSION = 2  # bump when a recipe changes: datasets made before are regenerated

WRONG_LABEL_RATE = 0.4  # share of the noisy subset whose label is wrong
PARTNER_SHARE = 0.6  # share of the wrong labels that name the confusable partner class
# Nuisances, tuned so that on the cpu profile a linear probe on clip-mean log-mel (clean subset)
# and one on a randomly initialised encoder both stay well below what self-supervised pretraining
# reaches, while models of the temporal structure do far better (test_synth).
SPEED_OCTAVES = 0.5  # each clip's event played up to this much faster or slower, like a tape
PLACED_PROB = 0.2  # chance that the event fills only part of its clip
OVERLAP_PROB = 0.3  # chance of a second, independent event of the same class on top
OVERLAP_DB = (0.0, 6.0)  # how far below the first event it sits
DISTRACTOR_PROB = 0.5  # chance of an event of another class in the background
DISTRACTOR_DB = (0.0, 12.0)  # how far below the main event it sits
SNR_DB = (0.0, 20.0)  # event level over the background noise
PEAK_DB = (-20.0, -1.0)  # peak level of the written clip
PARALLEL_MIN_SECONDS = 300.0  # below this much audio, starting worker processes costs more

MARKER = "synth.json"  # written last: its presence means the dataset is complete
PLAN_STREAM = 2  # random stream of the plan; clips use (seed, 0 = train | 1 = test, index)


@dataclass(frozen=True)
class Profile:
    """How many clips, and how long: durations follow a log-normal cut to [min, max] seconds,
    its median that of the profile times the class's relative duration."""

    train_per_class: int
    clean_per_class: int
    test_per_class: int
    median_seconds: float
    max_seconds: float
    min_seconds: float = 0.3
    log_spread: float = 0.7


PROFILES = {
    "smoke": Profile(
        train_per_class=3, clean_per_class=1, test_per_class=2, median_seconds=0.6, max_seconds=1.5
    ),
    "cpu": Profile(
        train_per_class=100,
        clean_per_class=10,
        test_per_class=20,
        median_seconds=1.2,
        max_seconds=30.0,
    ),
    # FSDnoisy18k's clip counts (15,820 noisy, 1,780 clean, 940 test), 17 h: the GPU run kit's
    "fsd": Profile(880, 89, 47, median_seconds=2.0, max_seconds=30.0),
}


# ---------------------------------------------------------------------------------------------
# Rendering one clip


def _place(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Real recordings rarely hold their event from start to end: sometimes keep only a span."""
    if rng.random() >= PLACED_PROB:
        return x
    length = max(int(rng.uniform(0.4, 1) * len(x)), 1)
    start = rng.integers(0, len(x) - length + 1)
    kept = np.zeros_like(x)
    kept[start : start + length] = x[start : start + length] * fade(length, 0.01)
    return kept


def _event(rng: np.random.Generator, class_index: int, n: int) -> np.ndarray:
    """One event of the class at unit level, played faster or slower (pitch and rate together):
    rendered to another length and resampled through the spectrum (fast lengths, no aliasing)."""
    size = next_fast_len(n, real=True)
    speed = 2 ** rng.uniform(-SPEED_OCTAVES, SPEED_OCTAVES)
    rendered = CLASSES[class_index].recipe(rng, next_fast_len(round(size * speed), real=True))
    return unit(_place(rng, np.fft.irfft(np.fft.rfft(rendered), size)[:n]))


def _render(task: tuple[str, int, float, tuple[int, ...]]) -> None:
    """Event (+ perhaps a second one, a distractor of another class) over coloured noise, peak
    level varied; to wav."""
    path, class_index, seconds, entropy = task
    rng = np.random.default_rng(entropy)
    n = round(seconds * SAMPLE_RATE)
    mix = _event(rng, class_index, n)
    if rng.random() < OVERLAP_PROB:
        mix += 10 ** (-rng.uniform(*OVERLAP_DB) / 20) * _event(rng, class_index, n)
    if rng.random() < DISTRACTOR_PROB:
        other = (class_index + rng.integers(1, len(CLASSES))) % len(CLASSES)
        mix += 10 ** (-rng.uniform(*DISTRACTOR_DB) / 20) * _event(rng, other, n)
    background = unit(coloured_noise(rng, n, tilt=rng.uniform(0, 2)))
    mix += 10 ** (-rng.uniform(*SNR_DB) / 20) * background
    peak = 10 ** (rng.uniform(*PEAK_DB) / 20)
    wav = io.BytesIO()  # one write to disk instead of soundfile's many small ones
    sf.write(wav, mix * (peak / np.abs(mix).max()), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    Path(path).write_bytes(wav.getvalue())


# ---------------------------------------------------------------------------------------------
# The plan: labels, subsets and durations, decided up front from one random stream


def _durations(rng: np.random.Generator, classes: np.ndarray, profile: Profile) -> np.ndarray:
    """Log-normal durations around each clip's class median, cut to [min, max] by inverting the
    CDF (no pile-up at the bounds), rounded to whole samples."""
    median = profile.median_seconds * np.array([CLASSES[c].duration for c in classes])
    bounds = np.log([[profile.min_seconds], [profile.max_seconds]] / median) / profile.log_spread
    u = rng.uniform(*ndtr(bounds))
    seconds = median * np.exp(profile.log_spread * ndtri(u))
    return np.round(seconds * SAMPLE_RATE) / SAMPLE_RATE


def _corrupt(rng: np.random.Generator, true: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """Given labels: WRONG_LABEL_RATE of the noisy clips relabelled, PARTNER_SHARE of those to
    the confusable partner, the rest uniformly to any class but the true one and the partner."""
    given = true.copy()
    candidates = np.flatnonzero(noisy)
    wrong = rng.choice(candidates, round(WRONG_LABEL_RATE * len(candidates)), replace=False)
    partner = np.array([CLASS_NAMES.index(c.partner) for c in CLASSES])
    for i in np.sort(wrong):
        if rng.random() < PARTNER_SHARE:
            given[i] = partner[true[i]]
        else:
            others = [c for c in range(len(CLASSES)) if c not in (true[i], partner[true[i]])]
            given[i] = rng.choice(others)
    return given


def _noisy_small(
    rng: np.random.Generator, given: np.ndarray, seconds: np.ndarray, clean: np.ndarray
) -> np.ndarray:
    """Per (given) class, random noisy clips adding up to about as long as that class's clean
    clips: the FSDnoisy18k recipe for a noisy subset the size of the clean one."""
    small = np.zeros(len(given), dtype=bool)
    for c in range(len(CLASSES)):
        target = seconds[clean & (given == c)].sum()
        pool = rng.permutation(np.flatnonzero(~clean & (given == c)))
        if len(pool) == 0:
            continue
        total = np.cumsum(seconds[pool])
        small[pool[: np.argmin(np.abs(total - target)) + 1]] = True
    return small


def _plan(profile: Profile, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test tables: fname, labels, subsets, duration and class index per clip."""
    rng = np.random.default_rng([seed, PLAN_STREAM])
    classes = np.arange(len(CLASSES))
    true = rng.permutation(np.repeat(classes, profile.train_per_class))
    clean = np.zeros(len(true), dtype=bool)
    for c in classes:
        clean[np.flatnonzero(true == c)[: profile.clean_per_class]] = True
    given = _corrupt(rng, true, ~clean)
    seconds = _durations(rng, true, profile)
    train = pd.DataFrame(
        {
            "fname": [f"{i}.wav" for i in range(len(true))],
            "label": [CLASS_NAMES[c] for c in given],
            "aso_id": [f"synth/{c:02d}" for c in given],
            "manually_verified": clean.astype(int),
            "noisy_small": _noisy_small(rng, given, seconds, clean).astype(int),
            "true_label": [CLASS_NAMES[c] for c in true],
            "seconds": seconds,
            "class_index": true,
        }
    )
    test_true = rng.permutation(np.repeat(classes, profile.test_per_class))
    test = pd.DataFrame(
        {
            "fname": [f"{len(true) + i}.wav" for i in range(len(test_true))],
            "label": [CLASS_NAMES[c] for c in test_true],
            "aso_id": [f"synth/{c:02d}" for c in test_true],
            "seconds": _durations(rng, test_true, profile),
            "class_index": test_true,
        }
    )
    return train, test


# ---------------------------------------------------------------------------------------------
# Writing the dataset


def _validate(root: Path, profile: str, seed: int) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown synth profile {profile!r}; choose one of {sorted(PROFILES)}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if root.exists() and not root.is_dir():
        raise ValueError(f"synth target {root} exists and is not a directory")
    # synth's own output, even half written, has its marker or its true_label column
    train_csv = root / META_DIR / "train.csv"
    ours = (root / DOC_DIR / MARKER).exists() or (
        train_csv.exists() and "true_label" in pd.read_csv(train_csv, nrows=0).columns
    )
    if not ours and any((root / d).exists() for d in (*AUDIO_DIRS.values(), META_DIR)):
        raise ValueError(
            f"{root} already holds an FSDnoisy18k-style dataset that synth did not make; "
            "refusing to overwrite it: choose another directory"
        )


def _is_complete(root: Path, settings: dict) -> dict | None:
    """The stored summary if root holds every file of a dataset made with these settings."""
    try:  # a marker that does not read back (cut, edited): the dataset is made again
        stored = read_json_object(root / DOC_DIR / MARKER)
    except (OSError, ValueError):
        return None
    if stored.get("settings") != settings:
        return None
    try:
        for split, folder in AUDIO_DIRS.items():
            wanted = set(pd.read_csv(root / META_DIR / f"{split}.csv")["fname"])
            if not wanted <= set(os.listdir(root / folder)):
                return None
    except FileNotFoundError:  # a table or a folder removed by hand
        return None
    return stored["summary"]


def _render_all(tasks: list[tuple], *, progress: bool) -> None:
    """Longest clips first so that the workers finish together."""
    tasks = sorted(tasks, key=lambda task: -task[2])
    total = sum(task[2] for task in tasks)
    workers = usable_cpus() if total >= PARALLEL_MIN_SECONDS else 1
    with tqdm(total=len(tasks), desc="synth", unit="clip", disable=not progress) as bar:
        if workers == 1:
            for task in tasks:
                _render(task)
                bar.update()
            return
        # forkserver: safe even when the caller has already started threads (torch does)
        context = get_context("forkserver")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=end_with_parent) as pool:
            for _ in pool.map(_render, tasks, chunksize=4):
                bar.update()


def _readme(profile: str, seed: int, summary: dict) -> str:
    settings = asdict(PROFILES[profile])
    lines = [
        "# Synthetic stand-in for FSDnoisy18k",
        "",
        f"Made by `aclaudio.data.synth` (generator version {GENERATOR_VERSION}), profile"
        f" `{profile}`, seed {seed}: the same profile and seed give byte-identical files.",
        f"Profile settings: {json.dumps(settings)}.",
        "",
        f"Clips: {json.dumps(summary['clips'])}; hours: {json.dumps(summary['hours'])}.",
        "",
        "Each clip: one event of its class, played up to "
        f"{SPEED_OCTAVES:g} octave faster or slower (over part of the clip with probability "
        f"{PLACED_PROB}); with probability {OVERLAP_PROB} a second event of its class "
        f"({OVERLAP_DB[0]:g}-{OVERLAP_DB[1]:g} dB down) and with probability {DISTRACTOR_PROB} "
        f"an event of another class ({DISTRACTOR_DB[0]:g}-{DISTRACTOR_DB[1]:g} dB down) on top; "
        f"coloured background noise at an SNR of {SNR_DB[0]:g}-{SNR_DB[1]:g} dB, peak level "
        f"{PEAK_DB[0]:g} to {PEAK_DB[1]:g} dBFS; 16-bit PCM mono at {SAMPLE_RATE} Hz. "
        "Durations depend on the class: its median is the profile's median_seconds times the "
        "relative duration in the table.",
        "",
        "Labels: train clips with manually_verified=1 (the clean subset) and all test clips are "
        f"correct. In the noisy subset {WRONG_LABEL_RATE:.0%} of the labels are wrong, "
        f"{PARTNER_SHARE:.0%} of those naming the confusable partner class. noisy_small=1 marks "
        "noisy clips adding up, per class, to about the clean subset's duration. The column "
        "true_label (absent from the real dataset) gives every train clip's real class.",
        "",
        "| aso_id | class | confusable partner | relative duration | recipe |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| synth/{i:02d} | {c.name} | {c.partner} | {c.duration:g} | {c.recipe.__doc__.strip()} |"
        for i, c in enumerate(CLASSES)
    ]
    return "\n".join(lines) + "\n"


def _summary(root: Path, profile: str, seed: int, train: pd.DataFrame, test: pd.DataFrame):
    """What was written: clips and hours per subset, the noisy subset's share of wrong labels."""
    clean = train.manually_verified == 1
    subsets = {
        "train": train,
        "clean": train[clean],
        "noisy": train[~clean],
        "noisy_small": train[train.noisy_small == 1],
        "test": test,
    }
    noisy = subsets["noisy"]
    return {
        "root": str(root),
        "profile": profile,
        "seed": seed,
        "classes": CLASS_NAMES,
        "clips": {name: len(table) for name, table in subsets.items()},
        "hours": {name: round(float(t.seconds.sum()) / 3600, 4) for name, t in subsets.items()},
        "label_noise_rate": round(float((noisy.label != noisy.true_label).mean()), 4),
    }


def synthesize(
    root: str | Path, *, profile: str = "cpu", seed: int = 0, progress: bool = True
) -> dict:
    """Write the built-in dataset under root in the FSDnoisy18k layout; return a JSON-able summary.

    Reuses root as is when it already holds the complete dataset of this profile and seed
    (summary["reused"] is then True); otherwise (re)generates it from scratch. Refuses a root
    holding an FSDnoisy18k-style dataset that synth did not make. Calls on one root take turns:
    a second one waits, then reuses. Large sets are rendered by worker processes: call it from
    a notebook, the CLI or a script's `if __name__ == "__main__"`.
    """
    started = time.perf_counter()
    root = Path(root)
    _validate(root, profile, seed)
    seed = int(seed)
    settings = {"generator_version": GENERATOR_VERSION, "profile": profile, "seed": seed}
    settings |= asdict(PROFILES[profile])
    place = root.resolve()  # the folder written beside it must be on the same file system
    stored, reused = _is_complete(place, settings), True  # read without a lock
    if stored is None:
        place.parent.mkdir(parents=True, exist_ok=True)
        # writers take turns: one writes, the others wait, then find the dataset and reuse it
        with exclusive(place.with_name(f".{place.name}.synth.lock"), f"synth into {root}"):
            stored = _is_complete(place, settings)
            if stored is None:
                stored, reused = _generate(place, settings, root, progress=progress), False
    seconds = round(time.perf_counter() - started, 3)
    return stored | {"root": str(root), "reused": reused, "seconds": seconds}


def _generate(place: Path, settings: dict, root: Path, *, progress: bool) -> dict:
    """Write the dataset in a folder of its own beside `place`, then move it in."""
    profile, seed = settings["profile"], settings["seed"]
    with work_folder(place) as work:
        for folder in (*AUDIO_DIRS.values(), META_DIR, DOC_DIR):
            (work / folder).mkdir()
        train, test = _plan(PROFILES[profile], seed)
        public = ["fname", "label", "aso_id", "manually_verified", "noisy_small", "true_label"]
        atomic_write_text(work / META_DIR / "train.csv", train[public].to_csv(index=False))
        atomic_write_text(work / META_DIR / "test.csv", test[public[:3]].to_csv(index=False))
        tables = ((0, AUDIO_DIRS["train"], train), (1, AUDIO_DIRS["test"], test))
        tasks = [
            (str(work / folder / clip.fname), clip.class_index, clip.seconds, (seed, code, i))
            for code, folder, table in tables
            for i, clip in enumerate(table.itertuples())
        ]
        _render_all(tasks, progress=progress)
        summary = _summary(root, profile, seed, train, test)
        atomic_write_text(work / DOC_DIR / "README.md", _readme(profile, seed, summary))
        marker = json.dumps({"settings": settings, "summary": summary})
        atomic_write_text(work / DOC_DIR / MARKER, marker)
        _move_into(work, place)
    return summary


def _move_into(work: Path, place: Path) -> None:
    """Move the dataset written in `work` into `place`, its marker last. A kill at any step
    leaves no marker (the next call regenerates) and synth's own train.csv (the next call does
    not take it for a dataset synth did not make). Whatever else `place` holds stays: its
    feature cache is keyed by file stamps, so it never serves the old clips' features."""
    (place / DOC_DIR / MARKER).unlink(missing_ok=True)
    tables = [f"{META_DIR}/{split}.csv" for split in AUDIO_DIRS]
    for entry in (*tables, *AUDIO_DIRS.values(), f"{DOC_DIR}/README.md", f"{DOC_DIR}/{MARKER}"):
        (place / entry).parent.mkdir(parents=True, exist_ok=True)
        if (place / entry).is_dir():  # an audio folder: no rename replaces a full one
            shutil.rmtree(place / entry)
        os.replace(work / entry, place / entry)
