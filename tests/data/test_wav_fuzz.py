"""Thousands of damaged WAV files, seeded: each is a readable clip or a named problem, and no
exception escapes the checks that loading runs on it (a single bad clip must not stop a command).
"""

from __future__ import annotations

import io
import itertools
import struct
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf
from conftest import write_layout

from aclaudio.data import datasets

VARIANTS_PER_KIND = 2000  # five kinds: 10,000 files, about 2 s
HEAD = 64  # the bytes that hold the RIFF, fmt and data headers


def clean_wav(channels: int, subtype: str, *, list_chunk: bool = False) -> bytes:
    """A short loud tone as a WAV, with a LIST chunk between fmt and data on request."""
    wave = 0.5 * np.sin(np.arange(400) / 3)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([wave] * channels, axis=1), 8000, subtype=subtype, format="WAV")
    whole = buffer.getvalue()
    if list_chunk:
        data = whole.index(b"data")
        info = b"INFOISFT" + struct.pack("<I", 6) + b"fuzz\0\0"
        whole = whole[:data] + b"LIST" + struct.pack("<I", len(info)) + info + whole[data:]
        whole = whole[:4] + struct.pack("<I", len(whole) - 8) + whole[8:]
    assert whole.rindex(b"data") + 8 + 400 * channels * (4 if subtype == "FLOAT" else 2) == len(
        whole
    ), "the audio must end the file, so that any cut loses audio"
    return whole


KINDS = {
    "mono-pcm16": clean_wav(1, "PCM_16"),
    "stereo-pcm16": clean_wav(2, "PCM_16"),
    "mono-float32": clean_wav(1, "FLOAT"),
    "stereo-float32": clean_wav(2, "FLOAT"),
    "pcm16-with-list": clean_wav(1, "PCM_16", list_chunk=True),
}


def variants(clean: bytes, rng: np.random.Generator) -> Iterator[tuple[bytes, bool]]:
    """Damaged copies of a file, and whether each was only cut short (it must then be bad)."""
    for _ in range(VARIANTS_PER_KIND):
        damage = rng.integers(4)
        if damage == 0:  # cut anywhere, most often inside the headers
            end = rng.integers(HEAD) if rng.random() < 0.7 else rng.integers(len(clean))
            yield clean[:end], True
            continue
        data = bytearray(clean)
        for _ in range(rng.integers(1, 5)):
            where = rng.integers(HEAD) if rng.random() < 0.85 else rng.integers(len(data))
            if damage == 1:  # random bytes
                data[where] = rng.integers(256)
            elif damage == 2:  # one bit
                data[where] ^= 1 << rng.integers(8)
            else:  # a 32-bit field made extreme: sizes, rates
                start = where - where % 4
                extreme = rng.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
                data[start : start + 4] = struct.pack("<I", extreme)
        if rng.random() < 0.3:
            data = data[: rng.integers(len(data))]
        yield bytes(data), False


def checked(path: str) -> str | None:
    """What loading (with read_samples) makes of a file: its problem, or None when it is used."""
    problem = datasets.audio_problem(path)
    assert problem is None or (isinstance(problem, str) and problem)
    if problem is None:
        assert sf.info(path).duration > 0  # load_dataset's duration column
        problem = datasets._samples_problem(path)
        assert problem is None or (isinstance(problem, str) and problem)
    return problem


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_headers_are_clips_or_named_problems(tmp_path, kind):
    clean = KINDS[kind]
    (tmp_path / "clean.wav").write_bytes(clean)
    assert checked(str(tmp_path / "clean.wav")) is None
    outcomes = {"readable": 0, "bad": 0}
    rng = np.random.default_rng(list(KINDS).index(kind))
    for number, (data, only_cut) in enumerate(variants(clean, rng)):
        clip = tmp_path / f"{number}.wav"  # a new file: ext4 flushes a rewritten one on close
        clip.write_bytes(data)
        problem = checked(str(clip))
        assert problem is not None or not only_cut, f"a file cut to {len(data)} bytes passed"
        outcomes["readable" if problem is None else "bad"] += 1
        clip.unlink()
    assert min(outcomes.values()) > VARIANTS_PER_KIND / 20, outcomes  # both paths exercised


def test_a_dataset_of_damaged_clips_loads_every_one_or_names_it(tmp_path):
    train = tmp_path / "FSDnoisy18k.audio_train"
    train.mkdir()
    (tmp_path / "FSDnoisy18k.audio_test").mkdir()
    sf.write(tmp_path / "FSDnoisy18k.audio_test" / "t.wav", np.sin(np.arange(800) / 3), 8000)
    rows = ["fname,label,manually_verified,noisy_small"]
    rng = np.random.default_rng(7)
    for kind, clean in KINDS.items():
        for number, (data, _) in enumerate(itertools.islice(variants(clean, rng), 40)):
            (train / f"{kind}-{number}.wav").write_bytes(data)
            rows.append(f"{kind}-{number}.wav,{kind},1,0")
    dataset = datasets.load_dataset(
        write_layout(tmp_path, rows, ["fname,label", "t.wav,mono-pcm16"]), read_samples=True
    )
    used, bad = set(dataset.clips["fname"]), set(dataset.bad_files["fname"])
    assert used | bad == {row.split(",")[0] for row in rows[1:]} | {"t.wav"}
    assert not used & bad and used and bad
    assert (dataset.bad_files["problem"].str.len() > 0).all()
