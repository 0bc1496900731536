"""The FSDnoisy18k downloader against a real HTTP server on 127.0.0.1 serving zips made here."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import socket
import stat
import zipfile
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import FileServer, serving, zip_bytes

from aclaudio.data import download
from aclaudio.data.download import (
    FSDNOISY18K_FILES,
    ZENODO_URL_PATTERN,
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    download_fsdnoisy18k,
    extract,
    fetch,
)

TRAIN = "FSDnoisy18k.audio_train.zip"
META = "FSDnoisy18k.meta.zip"
FAST = {"progress": False, "backoff_s": 0.0}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# What each archive holds, in the real layout; the audio is incompressible so cuts land mid-file.
rng = random.Random(0)
CONTENTS = {
    "FSDnoisy18k.meta.zip": {
        "FSDnoisy18k.meta/train.csv": b"fname,label,aso_id,manually_verified,noisy_small\n"
        b"1.wav,Walk_or_footsteps,/m/07pbtc8,1,0\n2.wav,Rain,/m/06mb1,0,1\n",
        "FSDnoisy18k.meta/test.csv": b"fname,label,aso_id\n3.wav,Walk_or_footsteps,/m/07pbtc8\n",
    },
    "FSDnoisy18k.doc.zip": {"FSDnoisy18k.doc/README.md": b"FSDnoisy18k, CC-BY\n"},
    "FSDnoisy18k.audio_test.zip": {"FSDnoisy18k.audio_test/3.wav": rng.randbytes(20_000)},
    TRAIN: {
        "FSDnoisy18k.audio_train/1.wav": rng.randbytes(30_000),
        "FSDnoisy18k.audio_train/2.wav": rng.randbytes(25_000),
    },
}
ARCHIVES = {name: zip_bytes(members) for name, members in CONTENTS.items()}
FILES = {name: md5(data) for name, data in ARCHIVES.items()}


@pytest.fixture
def server():
    with serving(ARCHIVES) as server:
        yield server


def run(server: FileServer, dest: Path, **kwargs) -> dict:
    return download_fsdnoisy18k(dest, base_url=server.url(), files=FILES, **{**FAST, **kwargs})


def assert_layout(dest: Path) -> None:
    for members in CONTENTS.values():
        for member, data in members.items():
            assert (dest / member).read_bytes() == data
    assert not list(dest.glob("*.part")) and not list(dest.glob("*.tmp"))


def test_constants_match_the_zenodo_record():
    assert ZENODO_URL_PATTERN.format(name=META) == (
        "https://zenodo.org/record/2529934/files/FSDnoisy18k.meta.zip?download=1"
    )
    assert FSDNOISY18K_FILES == {
        "FSDnoisy18k.audio_train.zip": "34dc1d34ca44622af5bf439ceb6f0d55",
        "FSDnoisy18k.audio_test.zip": "1ac73d70b4ef3f81900d98c261a832de",
        "FSDnoisy18k.meta.zip": "96e27a4a63b7a2870522ddcedb5d8296",
        "FSDnoisy18k.doc.zip": "093a1ca185ec341ca4eac14215e7f96b",
    }


@pytest.mark.parametrize("keep_zips", [False, True])
def test_downloads_verifies_and_extracts_the_layout(server, tmp_path, keep_zips):
    summary = run(server, tmp_path / "data", keep_zips=keep_zips, progress=True)
    assert_layout(tmp_path / "data")
    for name, data in ARCHIVES.items():
        kept = tmp_path / "data" / name
        assert kept.exists() == keep_zips
        assert not keep_zips or kept.read_bytes() == data
    assert server.requests == [(name, None) for name in FILES]
    assert json.loads(json.dumps(summary)) == summary
    assert summary["bytes_downloaded"] == sum(map(len, ARCHIVES.values()))
    assert summary["bytes_resumed"] == 0
    assert summary["dest"] == str((tmp_path / "data").resolve())
    train = next(row for row in summary["files"] if row["name"] == TRAIN)
    assert train["status"] == "extracted" and train["extracted"] == ["FSDnoisy18k.audio_train"]


def test_second_call_makes_no_requests_and_redoes_only_what_went_missing(server, tmp_path):
    run(server, tmp_path)
    server.requests.clear()
    summary = run(server, tmp_path)
    assert server.requests == []
    assert {row["status"] for row in summary["files"]} == {"already extracted"}
    assert summary["bytes_downloaded"] == 0
    shutil.rmtree(tmp_path / "FSDnoisy18k.meta")
    run(server, tmp_path)
    assert server.requests == [(META, None)]
    assert_layout(tmp_path)


def test_interrupted_transfer_is_retried_from_where_it_stopped(server, tmp_path):
    server.cut_after[TRAIN] = 12_345
    summary = run(server, tmp_path, retries=2)
    assert [r for r in server.requests if r[0] == TRAIN] == [
        (TRAIN, None),
        (TRAIN, "bytes=12345-"),
    ]
    assert_layout(tmp_path)
    train = next(row for row in summary["files"] if row["name"] == TRAIN)
    assert train["bytes_downloaded"] == len(ARCHIVES[TRAIN])  # nothing fetched twice


def test_part_left_by_a_failed_run_is_resumed_by_the_next(server, tmp_path):
    server.cut_after[TRAIN] = 12_345
    with pytest.raises(DownloadError, match="after 1 attempts.*run again to resume from the 12345"):
        run(server, tmp_path, retries=0)
    part = tmp_path / (TRAIN + ".part")
    assert part.read_bytes() == ARCHIVES[TRAIN][:12_345]
    assert not (tmp_path / TRAIN).exists() and not (tmp_path / "FSDnoisy18k.audio_train").exists()
    server.requests.clear()
    summary = run(server, tmp_path, retries=0)
    assert server.requests == [(TRAIN, "bytes=12345-")]  # finished archives are not fetched again
    assert_layout(tmp_path)
    assert summary["bytes_resumed"] == 12_345
    assert summary["bytes_downloaded"] == len(ARCHIVES[TRAIN]) - 12_345


def test_range_survives_a_redirect(server, tmp_path):
    target = tmp_path / TRAIN
    Path(f"{target}.part").write_bytes(ARCHIVES[TRAIN][:7000])
    counts = fetch(server.url(f"record/{TRAIN}"), target, md5=FILES[TRAIN], **FAST)
    assert server.requests == [(f"record/{TRAIN}", "bytes=7000-"), (TRAIN, "bytes=7000-")]
    assert target.read_bytes() == ARCHIVES[TRAIN]
    assert counts == {"bytes_downloaded": len(ARCHIVES[TRAIN]) - 7000, "bytes_resumed": 7000}


def test_server_ignoring_range_restarts_the_file_cleanly(server, tmp_path):
    server.honor_range = False
    target = tmp_path / TRAIN
    Path(f"{target}.part").write_bytes(b"\xff" * 5000)  # garbage: appending to it would show
    counts = fetch(server.url(TRAIN), target, md5=FILES[TRAIN], **FAST)
    assert server.requests == [(TRAIN, "bytes=5000-")]
    assert target.read_bytes() == ARCHIVES[TRAIN]
    assert counts == {"bytes_downloaded": len(ARCHIVES[TRAIN]), "bytes_resumed": 0}


def test_complete_part_is_verified_without_downloading_again(server, tmp_path):
    target = tmp_path / TRAIN
    size = len(ARCHIVES[TRAIN])
    Path(f"{target}.part").write_bytes(ARCHIVES[TRAIN])
    counts = fetch(server.url(TRAIN), target, md5=FILES[TRAIN], **FAST)
    assert server.requests == [(TRAIN, f"bytes={size}-")]  # answered 416
    assert target.read_bytes() == ARCHIVES[TRAIN]
    assert counts == {"bytes_downloaded": 0, "bytes_resumed": size}
    assert not Path(f"{target}.part").exists()


def test_bad_checksum_is_a_clear_error_and_leaves_nothing_trusted(server, tmp_path):
    corrupted = bytearray(ARCHIVES[META])
    corrupted[len(corrupted) // 2] ^= 0xFF
    server.blobs[META] = bytes(corrupted)
    expected = f"{META}: md5 mismatch \\(expected {FILES[META]}, got {md5(corrupted)}\\)"
    with pytest.raises(ChecksumError, match=expected):
        run(server, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # meta is the first archive
    server.blobs[META] = ARCHIVES[META]
    server.requests.clear()
    run(server, tmp_path)
    assert server.requests[0] == (META, None)  # started over, nothing resumed
    assert_layout(tmp_path)


def symlink_member() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("FSDnoisy18k.doc/passwd")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    "evil", ["../evil.txt", "FSDnoisy18k.doc/../../evil.txt", "ABSOLUTE", "SYMLINK"]
)
def test_members_escaping_the_target_are_refused_before_anything_is_written(tmp_path, evil):
    outside = tmp_path / "evil.txt"
    member = {"ABSOLUTE": str(outside), "SYMLINK": symlink_member()}.get(evil, evil)
    zip_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("FSDnoisy18k.doc/README.md", b"harmless, and first")
        archive.writestr(member, b"/etc/passwd")
    name = member.filename if isinstance(member, zipfile.ZipInfo) else member
    with pytest.raises(UnsafeArchiveError, match=f"evil.zip: refusing member '{name}'"):
        extract(zip_path, tmp_path / "data")
    assert not outside.exists()
    assert list((tmp_path / "data").rglob("*")) == []


def test_killed_extraction_is_redone_not_trusted(server, tmp_path):
    (tmp_path / f".{META}.tmp").mkdir()
    (tmp_path / f".{META}.tmp" / "junk").write_text("half written")
    (tmp_path / "FSDnoisy18k.meta").mkdir()
    (tmp_path / "FSDnoisy18k.meta" / "train.csv").write_text("fname,lab")  # cut short, no marker
    run(server, tmp_path)
    assert (META, None) in server.requests
    assert_layout(tmp_path)
    tops = {member.split("/")[0] for members in CONTENTS.values() for member in members}
    markers = {f".{name}.extracted" for name in FILES}
    assert {path.name for path in tmp_path.iterdir()} == tops | markers  # the junk went too


def test_not_enough_disk_space_fails_before_downloading(server, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: usage(100, 90, 10))
    with pytest.raises(DownloadError, match=f"not enough free space .* to download {TRAIN}"):
        fetch(server.url(TRAIN), tmp_path / TRAIN, md5=FILES[TRAIN], **FAST)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_fails_at_once_and_unreachable_server_after_retries(server, tmp_path):
    with pytest.raises(DownloadError, match="nothing.zip.*HTTP 404"):
        fetch(server.url("nothing.zip"), tmp_path / "x.zip", md5="0" * 32, retries=3, **FAST)
    assert len(server.requests) == 1  # a 404 will not change: no retry
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match="after 3 attempts"):
        fetch(
            f"http://127.0.0.1:{closed_port}/x.zip", tmp_path / "x.zip", md5="0", retries=2, **FAST
        )


def test_a_file_that_is_not_a_zip_is_a_clear_error(tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"<html>rate limited</html>")
    with pytest.raises(DownloadError, match="broken.zip: not a zip archive"):
        extract(tmp_path / "broken.zip", tmp_path / "data")


def test_sha256_is_verified_like_md5(server, tmp_path):
    digest = hashlib.sha256(ARCHIVES[META]).hexdigest()
    wrong = "0" * 64
    with pytest.raises(ChecksumError, match=f"{META}: sha256 mismatch \\(expected {wrong}, got"):
        fetch(server.url(META), tmp_path / META, sha256=wrong, **FAST)
    assert list(tmp_path.iterdir()) == []
    fetch(server.url(META), tmp_path / META, sha256=digest, md5=FILES[META], **FAST)
    assert (tmp_path / META).read_bytes() == ARCHIVES[META]


def test_without_a_length_the_expected_size_guards_the_disk(server, tmp_path, monkeypatch):
    server.send_length = False
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: usage(10**6, 0, 10**6))
    with pytest.raises(DownloadError, match=f"not enough free space .* to download {TRAIN}"):
        fetch(server.url(TRAIN), tmp_path / TRAIN, expected_bytes=2 * 10**6, **FAST)
    assert list(tmp_path.iterdir()) == []
    counts = fetch(server.url(TRAIN), tmp_path / TRAIN, expected_bytes=1000, **FAST)
    assert (tmp_path / TRAIN).read_bytes() == ARCHIVES[TRAIN]  # no digest: trusted as received
    assert counts == {"bytes_downloaded": len(ARCHIVES[TRAIN]), "bytes_resumed": 0}


def test_a_damaged_archive_is_removed_with_one_clear_error(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data/a.txt", "some text that compresses " * 200)
    damaged = bytearray(buffer.getvalue())
    damaged[60:80] = b"\xff" * 20  # inside the compressed stream; the directory stays readable
    zip_path = tmp_path / "data.zip"
    zip_path.write_bytes(bytes(damaged))
    with pytest.raises(download.DownloadError, match="data.zip: damaged archive"):
        download.extract(zip_path, tmp_path / "out")
    assert not zip_path.exists() and not list((tmp_path / "out").iterdir())
