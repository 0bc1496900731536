"""Reading the FSDnoisy18k layout: subsets, class lists, and every kind of bad input."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import CLASSES, tone, write_layout

from aclaudio.data import datasets
from aclaudio.data.cache import build_cache

TRAIN_DIR = "FSDnoisy18k.audio_train"
TEST_DIR = "FSDnoisy18k.audio_test"


def problems_of(dataset: datasets.Dataset) -> dict[str, str]:
    return dict(zip(dataset.bad_files["fname"], dataset.bad_files["problem"], strict=True))


def test_subsets_and_classes(tiny_dataset):
    dataset = datasets.load_dataset(tiny_dataset)
    assert dataset.classes == CLASSES
    assert dataset.bad_files.empty
    counts = {name: len(dataset.subset(name)) for name in datasets.SUBSETS}
    assert counts == {"clean": 6, "noisy": 6, "noisy_small": 3, "all": 12, "test": 3}
    assert set(dataset.subset("noisy_small")["fname"]) <= set(dataset.subset("noisy")["fname"])
    assert dataset.clips["target"].tolist()[:4] == [0, 0, 0, 0]
    assert dataset.subset("test")["label"].tolist() == CLASSES
    summary = dataset.summary()
    assert summary["subsets"]["test"]["hours"] == pytest.approx(3 * 1.2 / 3600, rel=1e-3)
    assert summary["clips_per_class"]["train"] == {c: 4 for c in CLASSES}
    with pytest.raises(ValueError, match="unknown subset 'dirty'"):
        dataset.subset("dirty")


@pytest.mark.parametrize("n_classes", [13, 50])
def test_class_list_comes_from_the_csv(tmp_path, n_classes):
    (tmp_path / TRAIN_DIR).mkdir()
    (tmp_path / TEST_DIR).mkdir()
    train, test = ["fname,label,aso_id,manually_verified,noisy_small"], ["fname,label,aso_id"]
    for k in range(n_classes):
        sf.write(tmp_path / TRAIN_DIR / f"{k}.wav", tone(100 + 10 * k, 0.3), 22050)
        sf.write(tmp_path / TEST_DIR / f"t{k}.wav", tone(100 + 10 * k, 0.3), 22050)
        train.append(f"{k}.wav,class_{k:02d},x,1,0")
        test.append(f"t{k}.wav,class_{k:02d},x")
    dataset = datasets.load_dataset(write_layout(tmp_path, train, test))
    assert len(dataset.classes) == n_classes
    assert sorted(dataset.clips["target"].unique()) == list(range(n_classes))


def test_extra_files_and_columns_are_ignored(tiny_dataset):
    (tiny_dataset / TRAIN_DIR / "notes.txt").write_text("hello")
    sf.write(tiny_dataset / TRAIN_DIR / "unlisted.wav", tone(100, 0.5), 22050)
    csv = tiny_dataset / "FSDnoisy18k.meta" / "train.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0] + ",true_label"] + [r + ",x" for r in lines[1:]]) + "\n")
    dataset = datasets.load_dataset(tiny_dataset)
    assert len(dataset.clips) == 15 and dataset.bad_files.empty
    assert "unlisted.wav" not in set(dataset.clips["fname"])
    assert (dataset.subset("all")["true_label"] == "x").all()


def test_bom_crlf_and_non_ascii_names(tiny_dataset):
    sf.write(tiny_dataset / TRAIN_DIR / "pluie_été_雨.wav", tone(700, 0.7), 22050)
    csv = tiny_dataset / "FSDnoisy18k.meta" / "train.csv"
    text = csv.read_text() + "pluie_été_雨.wav,Chirp,/m/2,1,0\n"
    csv.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    dataset = datasets.load_dataset(tiny_dataset)
    assert dataset.bad_files.empty
    assert "pluie_été_雨.wav" in set(dataset.subset("clean")["fname"])
    assert list(dataset.clips.columns[:3]) == ["split", "fname", "label"]
    assert dataset.clips["manually_verified"].isin([0, 1]).all()


def test_bad_clips_are_reported_with_the_problem(tiny_dataset):
    train = tiny_dataset / TRAIN_DIR
    (train / "1.wav").write_bytes(b"")  # empty file
    (train / "2.wav").write_bytes(b"RIFF" + bytes(range(256)) * 2)  # corrupt
    whole = (train / "3.wav").read_bytes()
    (train / "3.wav").write_bytes(whole[: len(whole) // 2])  # truncated download
    sf.write(train / "4.wav", np.zeros(0), 22050)  # zero-length audio
    (train / "6.wav").unlink()  # listed but missing
    csv = tiny_dataset / "FSDnoisy18k.meta" / "train.csv"
    csv.write_text(
        csv.read_text()
        + "7.wav,Buzz,/m/1,0,0\n"  # duplicate row
        + "8.wav,,/m/1,0,0\n"  # empty label
    )
    test_csv = tiny_dataset / "FSDnoisy18k.meta" / "test.csv"
    test_csv.write_text(test_csv.read_text() + "gong.wav,Gong,/m/9\n")  # unknown label
    sf.write(tiny_dataset / TEST_DIR / "gong.wav", tone(50, 0.5), 22050)

    dataset = datasets.load_dataset(tiny_dataset)
    problems = problems_of(dataset)
    assert problems["1.wav"] == "empty file (0 bytes)"
    assert problems["2.wav"].startswith("not readable as audio")
    assert problems["3.wav"].startswith("truncated: the header declares")
    assert problems["4.wav"] == "no audio samples (zero length)"
    assert problems["6.wav"] == "listed in the CSV but missing"
    assert "duplicate row" in problems["7.wav"] and "line 14" in problems["7.wav"]
    assert "empty file name or label" in problems["8.wav"]
    assert problems["gong.wav"] == "label 'Gong' does not occur in train.csv"
    # every bad clip is out of the usable table, every good one is in: nothing silently lost
    assert set(dataset.clips["fname"]).isdisjoint({"1.wav", "2.wav", "3.wav", "4.wav", "6.wav"})
    assert len(dataset.subset("all")) == 12 - 5
    assert (dataset.clips["fname"] == "7.wav").sum() == 1
    assert len(dataset.subset("test")) == 3
    summary_bad = {b["fname"] for b in dataset.summary()["bad_files"]}
    assert summary_bad == set(problems)


def test_implausible_headers_are_bad_files_never_decoded(tiny_dataset, tmp_path):
    train = tiny_dataset / TRAIN_DIR
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 12000)
    sf.write(train / "1.wav", noise, 1, subtype="PCM_16")  # 24 KB "lasting" 3.3 h at 1 Hz
    sf.write(train / "2.wav", tone(440, 1.1), 1_000_000)  # 1.1 s of audio declared at 1 MHz
    sf.write(train / "3.wav", np.resize(noise, 601 * 8000), 8000, subtype="PCM_U8")  # 10 min 1 s
    dataset = datasets.load_dataset(tiny_dataset)
    problems = problems_of(dataset)
    assert problems == {
        "1.wav": "implausible sample rate in the header: 1 Hz (expected 1000 to 384000 Hz)",
        "2.wav": "implausible sample rate in the header: 1000000 Hz (expected 1000 to 384000 Hz)",
        "3.wav": "implausibly long for a clip: 601 s (at most 600 s)",
    }
    start = time.perf_counter()  # before the fix: 11 s and 4 GB to resample the 1 Hz clip
    cache = build_cache(dataset, "cpu", cache_dir=tmp_path, workers=1, progress=False)
    assert time.perf_counter() - start < 8
    assert len(cache) == 12 and set(cache.bad_files["fname"]) == set(problems)


def test_unreadable_entries_say_why(tiny_dataset):
    train = tiny_dataset / TRAIN_DIR
    (train / "1.wav").unlink()
    (train / "1.wav").mkdir()  # a folder named like a clip
    (train / "2.wav").unlink()
    (train / "2.wav").symlink_to("2.wav")  # a symbolic link to itself
    problems = problems_of(datasets.load_dataset(tiny_dataset))
    assert problems == {
        "1.wav": "cannot be read (Is a directory)",
        "2.wav": "cannot be read (Too many levels of symbolic links)",
    }


def test_other_rates_depths_and_channels_are_handled(tiny_dataset, tmp_path):
    train = tiny_dataset / TRAIN_DIR
    sf.write(train / "1.wav", tone(440, 1.0, 44100, channels=2), 44100, subtype="PCM_24")
    sf.write(train / "2.wav", tone(440, 1.0, 8000), 8000, subtype="PCM_U8")
    sf.write(train / "3.wav", tone(440, 1.0, 48000), 48000, subtype="FLOAT")
    dataset = datasets.load_dataset(tiny_dataset)
    assert dataset.bad_files.empty
    cache = build_cache(dataset, "cpu", cache_dir=tmp_path, progress=False)
    assert len(cache) == 15
    for name in ("1.wav", "2.wav", "3.wav"):
        row = int(np.flatnonzero(cache.clips["fname"] == name)[0])
        assert cache.clips["length"][row] == 101  # 1 s at the preset's 10 ms hop
        loudest_band = int(np.argmax(cache.clip(row).mean(axis=1)))
        assert loudest_band == int(np.argmax(cache.clip(0).mean(axis=1)))  # 300 Hz tone, clip 0
        # the 440 Hz tone lands in the band just above the 300 Hz one, whatever the format
    assert not cache.bad_files.size


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: (m / "train.csv").unlink(), r"train.csv: metadata file not found"),
        (
            lambda m: (m / "train.csv").write_text("fname,label\n1.wav,Bell\n"),
            r"train.csv: missing column\(s\) manually_verified, noisy_small",
        ),
        (
            lambda m: (m / "train.csv").write_text(
                "fname,label,aso_id,manually_verified,noisy_small\n1.wav,Bell,x,yes,0\n"
            ),
            r"train.csv line 2: manually_verified must be 0 or 1, got 'yes'",
        ),
        (
            lambda m: (m / "test.csv").write_bytes(b"fname,label\n\xff\xfe.wav,Bell\n"),
            r"test.csv: cannot be parsed as a UTF-8 CSV",
        ),
        (lambda m: (m / "train.csv").write_bytes(b""), r"train.csv: empty file, not even a header"),
        (
            lambda m: (m / "train.csv").write_text(
                "fname,label,aso_id,manually_verified,noisy_small\n"
            ),
            r"train.csv: lists no clips, only the header",
        ),
    ],
)
def test_unusable_metadata_raises_naming_the_file(tiny_dataset, edit, message):
    edit(tiny_dataset / "FSDnoisy18k.meta")
    with pytest.raises(datasets.DatasetError, match=message):
        datasets.load_dataset(tiny_dataset)


def test_missing_root():
    with pytest.raises(datasets.DatasetError, match="dataset folder not found"):
        datasets.load_dataset("/nonexistent/fsd")


def riff(*chunks: bytes, form: bytes = b"WAVE") -> bytes:
    body = form + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def chunk(kind: bytes, body: bytes, size: int | None = None) -> bytes:
    declared = len(body) if size is None else size
    return kind + struct.pack("<I", declared) + body + b"\0" * (len(body) % 2)


def fmt(*, encoding=1, channels=1, rate=8000, block_align=2, bits=16) -> bytes:
    fields = (encoding, channels, rate, rate * block_align, block_align, bits)
    return chunk(b"fmt ", struct.pack("<HHIIHH", *fields))


SAMPLES = chunk(b"data", (np.sin(np.arange(800) / 5) * 9000).astype("<i2").tobytes())


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(
            riff(fmt(), SAMPLES)[:30],
            ": truncated header, the 'fmt ' chunk at byte 12 declares 16 bytes, "
            "the file ends 10 bytes later",
            id="cut-in-fmt",
        ),
        pytest.param(
            b"RIFF\x10\x00",
            ": truncated header, the file ends at byte 6, in the RIFF header",
            id="cut-in-riff",
        ),
        pytest.param(
            riff(fmt()),
            ": truncated header, the file ends at byte 36, before the data chunk",
            id="no-data",
        ),
        pytest.param(
            riff(chunk(b"LIST", b"INFO")),
            ": truncated header, the file ends at byte 24, before the fmt chunk",
            id="no-fmt",
        ),
        pytest.param(
            riff(chunk(b"LIST", b"INFO", size=0xFFFFFFF0), fmt(), SAMPLES),
            ": truncated header, the 'LIST' chunk at byte 12 declares 4294967280 bytes, "
            "the file ends 1636 bytes later",
            id="absurd-chunk-size",
        ),
        pytest.param(
            riff(fmt(), bytes(8), SAMPLES),
            ": no chunk name at byte 36 (b'\\x00\\x00\\x00\\x00')",
            id="zeros-for-a-chunk",
        ),
        pytest.param(
            riff(SAMPLES, fmt()), ": the data chunk comes before the fmt chunk", id="data-first"
        ),
        pytest.param(
            riff(chunk(b"fmt ", bytes(8)), SAMPLES),
            ": the fmt chunk holds 8 bytes, at least 16 expected",
            id="short-fmt",
        ),
        pytest.param(
            riff(fmt(channels=0), SAMPLES), ": the header declares zero channels", id="no-channels"
        ),
        pytest.param(
            riff(fmt(block_align=0), SAMPLES),
            ": the header declares a block align of zero",
            id="zero-block-align",
        ),
        pytest.param(
            riff(fmt(channels=2, block_align=2), SAMPLES),
            ": a block align of 2 bytes cannot hold 2 channel(s) of 16 bits",
            id="block-align-too-small",
        ),
        pytest.param(
            riff(fmt(), SAMPLES, form=b"AVI "),
            ": a RIFF file of form b'AVI ', not WAVE",
            id="not-wave",
        ),
        pytest.param(
            riff(fmt(encoding=0x1234), SAMPLES),
            " (Error opening",  # libsndfile names what it cannot decode
            id="unknown-encoding",
        ),
        pytest.param(b"\x00" * 30, " (Error opening", id="not-riff"),
    ],
)
def test_malformed_wav_headers_are_named_problems(tmp_path, content, problem):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(riff(fmt(), SAMPLES))
    assert datasets.audio_problem(str(clip)) is None  # the hand-made file itself is fine
    clip.write_bytes(content)
    assert datasets.audio_problem(str(clip)).startswith(f"not readable as audio{problem}")


def test_a_cut_fmt_chunk_is_a_bad_file_not_a_crash(tiny_dataset):
    (tiny_dataset / TRAIN_DIR / "2.wav").write_bytes(riff(fmt(), SAMPLES)[:30])
    problems = problems_of(datasets.load_dataset(tiny_dataset, read_samples=True))
    assert problems == {
        "2.wav": "not readable as audio: truncated header, the 'fmt ' chunk at byte 12 "
        "declares 16 bytes, the file ends 10 bytes later"
    }


def test_wav_of_unknown_length_is_read_to_its_end(tiny_dataset):
    """Recorders and pipes that cannot seek back write 0xFFFFFFFF as the data chunk's size."""
    train = tiny_dataset / TRAIN_DIR
    for name in ("1.wav", "2.wav"):
        whole = bytearray((train / name).read_bytes())
        assert whole[36:40] == b"data"
        whole[4:8] = whole[40:44] = b"\xff\xff\xff\xff"
        (train / name).write_bytes(whole if name == "1.wav" else whole[:44])
    dataset = datasets.load_dataset(tiny_dataset, read_samples=True)
    assert problems_of(dataset) == {"2.wav": "no audio samples (zero length)"}
    streamed = dataset.clips[dataset.clips["fname"] == "1.wav"].iloc[0]
    assert streamed["duration"] == pytest.approx(0.5, abs=1e-4)
    assert len(datasets.read_mono(streamed["path"])[0]) == int(0.5 * 22050)


def test_unreadable_files_do_not_stop_the_fingerprint_or_the_cache(tiny_dataset, tmp_path):
    train = tiny_dataset / TRAIN_DIR
    intact = datasets.data_fingerprint(tiny_dataset)
    (train / "2.wav").unlink()
    (train / "2.wav").symlink_to("2.wav")  # a loop: every system call on it fails (ELOOP)
    looped = datasets.data_fingerprint(tiny_dataset)
    assert looped != intact and len(looped) == 16
    dataset = datasets.load_dataset(tiny_dataset)
    assert problems_of(dataset) == {"2.wav": "cannot be read (Too many levels of symbolic links)"}

    dataset = datasets.load_dataset(tiny_dataset.parent / tiny_dataset.name)
    (train / "3.wav").unlink()  # goes bad after loading: the cache names it too
    (train / "3.wav").symlink_to("3.wav")
    cache = build_cache(dataset, "cpu", cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert dict(zip(cache.bad_files["fname"], cache.bad_files["problem"], strict=True)) == {
        "2.wav": "cannot be read (Too many levels of symbolic links)",
        "3.wav": "cannot be read (Too many levels of symbolic links)",
    }


def test_names_outside_the_audio_folder_are_refused(tiny_dataset, tmp_path):
    train, meta = tiny_dataset / TRAIN_DIR, tiny_dataset / "FSDnoisy18k.meta"
    (train / "sub").mkdir()
    sf.write(train / "sub" / "deep.wav", tone(300, 0.5), 22050)
    store = tmp_path / "shared-store"  # links inside the folder may point anywhere
    store.mkdir()
    sf.write(store / "kept.wav", tone(300, 0.5), 22050)
    (train / "linked.wav").symlink_to(store / "kept.wav")
    rows = [
        "../FSDnoisy18k.audio_test/5.wav",  # a test clip trained on
        "/etc/passwd",
        "sub/../../FSDnoisy18k.audio_test/10.wav",
        "sub/deep.wav",
        "linked.wav",
        "./1.wav",  # the same file as 1.wav
        "bad\0name.wav",
    ]
    with open(meta / "train.csv", "a") as csv:
        csv.writelines(f"{name},Bell,/m/0,1,0\n" for name in rows)
    with open(meta / "test.csv", "a") as csv:
        csv.write("../FSDnoisy18k.audio_train/1.wav,Bell,/m/0\n")
    dataset = datasets.load_dataset(tiny_dataset, read_samples=True)
    outside = "name points outside FSDnoisy18k.audio_{}/"
    assert problems_of(dataset) == {
        rows[0]: f"train.csv line 14: {outside.format('train')}",
        rows[1]: f"train.csv line 15: {outside.format('train')}",
        rows[2]: f"train.csv line 16: {outside.format('train')}",
        rows[5]: "train.csv line 19: duplicate row for this file, first kept",
        rows[6]: "train.csv line 20: name holds a NUL character",
        "../FSDnoisy18k.audio_train/1.wav": f"test.csv line 5: {outside.format('test')}",
    }
    assert {"sub/deep.wav", "linked.wav"} <= set(dataset.subset("clean")["fname"])
    assert len(dataset.subset("all")) == 14 and len(dataset.subset("test")) == 3
    assert len(datasets.data_fingerprint(tiny_dataset)) == 16
    # other callers (hear, esc50) hand audio_problem paths straight from their own CSVs
    assert datasets.audio_problem(str(train / rows[6])) == "cannot be read (embedded null byte)"
