"""ESC-50: the download against a local HTTP server serving a small fake archive made here, and
the conversion to the FSDnoisy18k layout (subsets by fold, exact and seeded label noise)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from conftest import run_cli, serving, tone, zip_bytes

from aclaudio.data.datasets import DatasetError, load_dataset, subset_mask
from aclaudio.data.download import ChecksumError, DownloadError, read_marker
from aclaudio.data.esc50 import ARCHIVE_NAME, convert_esc50, download_esc50, read_esc50

# 5 classes (targets not contiguous, as in ESC-10) x 5 folds x 2 clips, the real csv's columns.
CATEGORIES = {0: "dog", 1: "rooster", 10: "rain", 11: "sea_waves", 12: "crackling_fire"}
HEADER = "filename,fold,target,category,esc10,src_file,take"
ROWS = [
    f"{fold}-{1000 * fold + 10 * target + take}-A-{target}.wav,{fold},{target},{category},"
    f"True,{1000 * fold + 10 * target + take},A"
    for fold in range(1, 6)
    for target, category in CATEGORIES.items()
    for take in range(2)
]
TOP = "ESC-50-master"
NAME = "master.zip"


def wav(freq: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(freq, 0.25, 8000), 8000, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def members(rows: list[str] = ROWS, license_text: bytes = b"clip attributions\n") -> dict:
    csv = ("\n".join([HEADER, *rows]) + "\n").encode()
    audio = {f"{TOP}/audio/{row.split(',')[0]}": wav(200 + 37 * i) for i, row in enumerate(ROWS)}
    return {f"{TOP}/meta/esc50.csv": csv, **audio, f"{TOP}/LICENSE": license_text}


MEMBERS = members()
ARCHIVE = zip_bytes(MEMBERS)
CSV_MD5 = hashlib.md5(MEMBERS[f"{TOP}/meta/esc50.csv"]).hexdigest()
SHA256 = hashlib.sha256(ARCHIVE).hexdigest()


@pytest.fixture
def server():
    with serving({NAME: ARCHIVE}) as server:
        yield server


def download(server, dest: Path, **kwargs) -> dict:
    options = {"csv_md5": CSV_MD5, "progress": False, "backoff_s": 0.0, **kwargs}
    return download_esc50(dest, url=server.url(NAME), **options)


def write(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root / TOP


@pytest.fixture
def source(tmp_path) -> Path:
    """The fake ESC-50 folder, unpacked."""
    return write(tmp_path / "src", MEMBERS)


def tables(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    meta = root / "FSDnoisy18k.meta"
    return pd.read_csv(meta / "train.csv"), pd.read_csv(meta / "test.csv")


# ---------------------------------------------------------------------------------------------
# Download


def test_download_verifies_unzips_and_records_the_archive(server, tmp_path):
    summary = download(server, tmp_path)
    for name, data in MEMBERS.items():
        assert (tmp_path / name).read_bytes() == data
    assert not (tmp_path / ARCHIVE_NAME).exists() and not list(tmp_path.glob("*.part"))
    assert read_marker(ARCHIVE_NAME, tmp_path)["sha256"] == SHA256
    assert json.loads(json.dumps(summary)) == summary
    assert summary["source"] == str((tmp_path / TOP).resolve())
    assert summary["status"] == "extracted" and summary["licence"] == "CC BY-NC 3.0"
    assert summary["sha256"] == SHA256 and summary["previous_sha256"] is None
    assert summary["csv_md5"] == CSV_MD5 and summary["bytes_downloaded"] == len(ARCHIVE)
    assert summary["clips"] == 50 and summary["classes"] == 5
    assert summary["clips_per_fold"] == {str(fold): 10 for fold in range(1, 6)}

    server.requests.clear()
    again = download(server, tmp_path)
    assert server.requests == []  # verified again from the files, no request
    assert again["status"] == "already verified" and again["bytes_downloaded"] == 0
    assert again["sha256"] == again["previous_sha256"] == SHA256


def test_a_cut_transfer_is_resumed_where_it_stopped(server, tmp_path):
    server.cut_after[NAME] = 20_000
    summary = download(server, tmp_path, retries=1)
    assert server.requests == [(NAME, None), (NAME, "bytes=20000-")]
    assert summary["bytes_downloaded"] == len(ARCHIVE) and summary["sha256"] == SHA256
    assert (tmp_path / TOP / "meta" / "esc50.csv").read_bytes() == MEMBERS[f"{TOP}/meta/esc50.csv"]


def test_a_damaged_extraction_is_downloaded_again(server, tmp_path, capsys):
    download(server, tmp_path)
    clip = tmp_path / TOP / "audio" / ROWS[7].split(",")[0]
    clip.unlink()
    server.requests.clear()
    summary = download(server, tmp_path)
    assert f"no longer verifies ({clip}: listed in the CSV but missing)" in capsys.readouterr().err
    assert server.requests == [(NAME, None)] and summary["status"] == "extracted"
    assert clip.read_bytes() == MEMBERS[f"{TOP}/audio/{clip.name}"]


def test_a_pinned_sha256_is_verified(server, tmp_path):
    wrong = "ab" * 32
    with pytest.raises(ChecksumError, match=f"{ARCHIVE_NAME}: sha256 mismatch .*expected {wrong}"):
        download(server, tmp_path, sha256=wrong)
    assert list(tmp_path.iterdir()) == []  # nothing unverified kept
    assert download(server, tmp_path, sha256=SHA256.upper())["sha256"] == SHA256
    server.requests.clear()
    download(server, tmp_path, sha256=SHA256)
    assert server.requests == []  # the extraction is the pinned archive's
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        download(server, tmp_path, sha256=wrong)  # another pin: fetched again, and refused
    with pytest.raises(ValueError, match="sha256 must be 64 hexadecimal digits, got 'abc'"):
        download(server, tmp_path, sha256="abc")


def test_a_changed_archive_is_reported(server, tmp_path, capsys):
    download(server, tmp_path)
    changed = zip_bytes(members(license_text=b"attributions, updated\n"))
    server.blobs[NAME] = changed
    shutil.rmtree(tmp_path / TOP)
    summary = download(server, tmp_path)
    new = hashlib.sha256(changed).hexdigest()
    assert summary["sha256"] == new and summary["previous_sha256"] == SHA256
    assert f"differs from the one downloaded into {tmp_path} before" in capsys.readouterr().err


def test_labels_other_than_the_published_ones_are_refused(server, tmp_path):
    csv = tmp_path / TOP / "meta" / "esc50.csv"
    with pytest.raises(ChecksumError, match=f"{csv}: md5 mismatch .*not the published ESC-50"):
        download(server, tmp_path, csv_md5="0" * 32)
    assert not (tmp_path / ARCHIVE_NAME).exists()  # the archive failed: not kept


def test_an_archive_without_esc50_is_refused(server, tmp_path):
    server.blobs[NAME] = zip_bytes({"something/README.md": b"not ESC-50"})
    with pytest.raises(DownloadError, match="expected one top folder holding meta/esc50.csv"):
        download(server, tmp_path)


# ---------------------------------------------------------------------------------------------
# Conversion


def test_conversion_makes_a_dataset_split_by_fold(source, tmp_path, capsys):
    before = {path: path.read_bytes() for path in source.rglob("*") if path.is_file()}
    dest = tmp_path / "esc50"
    summary = convert_esc50(source, dest)
    assert summary["clips"] == {
        "train": 40,
        "clean": 10,
        "noisy": 30,
        "noisy_small": 10,
        "test": 10,
    }
    assert summary["classes"] == 5 and summary["wrong_labels"] == 0
    assert summary["hard_links"] == 50 and summary["copies"] == 0
    assert summary["published_csv"] is False and summary["csv_md5"] == CSV_MD5

    dataset = load_dataset(dest)
    assert dataset.bad_files.empty and sorted(dataset.classes) == sorted(CATEGORIES.values())
    fold = dataset.clips["fname"].str[0].astype(int)  # ESC-50 names start with the fold
    assert set(fold[dataset.clips["split"] == "test"]) == {5}
    assert set(fold[dataset.clips["split"] == "train"]) == {1, 2, 3, 4}
    for subset, folds in (("clean", {1}), ("noisy", {2, 3, 4}), ("noisy_small", {2})):
        assert set(fold[subset_mask(dataset.clips, subset)]) == folds
    train = dataset.subset("all")
    assert (train["label"] == train["true_label"]).all()  # no label noise asked for
    for split in ("train", "test"):
        counts = dataset.clips[dataset.clips["split"] == split]["label"].value_counts()
        assert set(counts) == {8 if split == "train" else 2}

    linked = dest / "FSDnoisy18k.audio_test" / ROWS[-1].split(",")[0]
    assert os.stat(linked).st_ino == os.stat(source / "audio" / linked.name).st_ino
    assert {path: path.read_bytes() for path in before} == before  # the source untouched
    doc = dest / "FSDnoisy18k.doc"
    assert (doc / "ESC-50-LICENSE").read_bytes() == MEMBERS[f"{TOP}/LICENSE"]
    readme = (doc / "README.md").read_text()
    assert "Licence CC BY-NC 3.0" in readme and "FSDnoisy18k.doc/ESC-50-LICENSE" in readme
    assert "Injected label noise: 0.0 of the noisy subset, seed 0: 0 clips" in readme

    code, checked, _ = run_cli(capsys, "data", "summary", dest)
    assert code == 0 and checked["n_classes"] == 5 and checked["bad_files"] == []
    assert checked["subsets"]["test"]["clips"] == 10


def test_clips_are_copied_where_hard_links_are_refused(source, tmp_path, monkeypatch):
    def cross_device(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    summary = convert_esc50(source, tmp_path / "esc50")
    assert summary["hard_links"] == 0 and summary["copies"] == 50
    copied = tmp_path / "esc50" / "FSDnoisy18k.audio_train" / ROWS[0].split(",")[0]
    assert copied.read_bytes() == (source / "audio" / copied.name).read_bytes()
    assert os.stat(copied).st_ino != os.stat(source / "audio" / copied.name).st_ino


def test_label_noise_is_exact_and_deterministic(source, tmp_path):
    def noisy_labels(rate: float, seed: int, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        convert_esc50(source, tmp_path / name, label_noise=rate, seed=seed)
        return tables(tmp_path / name)

    train, test = noisy_labels(0.5, 0, "a")
    wrong = train["label"] != train["true_label"]
    assert wrong.sum() == 15  # exactly half of the 30 noisy clips
    assert not wrong[train["manually_verified"] == 1].any()  # clean stays clean
    assert train["label"].isin(CATEGORIES.values()).all()
    targets = {category: target for target, category in CATEGORIES.items()}
    assert (train["aso_id"] == [f"esc50/{targets[label]:02d}" for label in train["label"]]).all()
    assert set(test["fname"].str[0]) == {"5"}
    assert (test["label"] == [CATEGORIES[int(f[:-4].split("-")[3])] for f in test["fname"]]).all()

    again, _ = noisy_labels(0.5, 0, "b")
    assert again.equals(train)
    assert (tmp_path / "a" / "FSDnoisy18k.meta" / "train.csv").read_bytes() == (
        tmp_path / "b" / "FSDnoisy18k.meta" / "train.csv"
    ).read_bytes()
    other, _ = noisy_labels(0.5, 1, "c")
    assert (other["label"] != other["true_label"]).sum() == 15
    assert not other["label"].equals(train["label"])
    for rate, count in ((0.1, 3), (1.0, 30)):
        train, _ = noisy_labels(rate, 0, f"rate{rate}")
        assert (train["label"] != train["true_label"]).sum() == count


def test_conversion_replaces_its_own_output_and_refuses_other_data(source, tmp_path, tiny_dataset):
    dest = tmp_path / "esc50"
    convert_esc50(source, dest, label_noise=1.0)
    (dest / "FSDnoisy18k.audio_train" / "stray.wav").write_bytes(b"left from before")
    summary = convert_esc50(source, dest, label_noise=0.0)
    assert summary["wrong_labels"] == 0
    assert not (dest / "FSDnoisy18k.audio_train" / "stray.wav").exists()
    with pytest.raises(ValueError, match="already holds an FSDnoisy18k-style dataset that no"):
        convert_esc50(source, tiny_dataset)
    for rate in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="label noise must be between 0 and 1"):
            convert_esc50(source, dest, label_noise=rate)


def in_line(index: int, old: str, new: str):
    """An edit of the csv's lines: `old` replaced by `new` once in line `index` (0: the header)."""
    return lambda lines: [*lines[:index], lines[index].replace(old, new, 1), *lines[index + 1 :]]


FIRST = ROWS[0].split(",")[0]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (in_line(0, ",fold,", ",fld,"), r"esc50.csv: missing column\(s\) fold"),
        (in_line(2, ",1,", ",6,"), "esc50.csv line 3: fold must be 1 to 5, got '6'"),
        (in_line(1, ",0,dog", ",x,dog"), "line 2: target must be a class number, got 'x'"),
        (in_line(1, FIRST, "../evil.wav"), "line 2: filename must name a file inside audio/"),
        (lambda lines: [*lines, lines[1]], f"esc50.csv line 52: {FIRST} is listed twice"),
        (
            in_line(1, ",dog,", ",cat,"),
            "esc50.csv: target 0 goes with more than one category: cat, dog",
        ),
        (lambda lines: [x for x in lines if x[:2] != "4-"], r"esc50.csv: no clip in fold\(s\) 4"),
        (lambda lines: lines[:1], "esc50.csv: lists no clips, only the header line"),
    ],
)
def test_a_malformed_csv_is_named_with_the_problem(source, edit, message):
    csv = source / "meta" / "esc50.csv"
    csv.write_text("\n".join(edit(csv.read_text().splitlines())) + "\n")
    with pytest.raises(DatasetError, match=message):
        read_esc50(source)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda clip: clip.unlink(), "listed in the CSV but missing"),
        (lambda clip: clip.write_bytes(b"RIFF....WAVEjunk"), "not readable as audio"),
    ],
)
def test_a_missing_or_broken_wav_is_named(source, tmp_path, capsys, damage, problem):
    clip = source / "audio" / ROWS[12].split(",")[0]
    damage(clip)
    with pytest.raises(DatasetError, match=f"{clip}: {problem}"):
        convert_esc50(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before anything is written
    code, summary, _ = run_cli(capsys, "convert", "esc50", source, "--to", tmp_path / "out")
    assert code == 1 and summary["ok"] is False and problem in summary["error"]


def test_the_commands(source, tmp_path, capsys):
    code, summary, _ = run_cli(
        capsys,
        "convert",
        "esc50",
        source,
        "--to",
        tmp_path / "d",
        "--label-noise",
        "0.2",
        "--seed",
        "7",
    )
    assert code == 0 and summary["ok"] and summary["wrong_labels"] == 6 and summary["seed"] == 7
    code, summary, _ = run_cli(
        capsys, "download", "fsdnoisy18k", "--to", tmp_path / "f", "--sha256", "0" * 64
    )
    assert code == 1 and "--sha256 pins the ESC-50 archive" in summary["error"]
    assert not (tmp_path / "f").exists()
