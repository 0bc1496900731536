"""Fetch datasets over HTTP: verified, resumable, safely unzipped, and idempotent.

A 13 GB download over a flaky link must survive interruptions (HTTP Range resume), never trust
bytes whose checksum is wrong, never write outside the target folder, and cost nothing when run
again. FSDnoisy18k comes from Zenodo here; ESC-50 (`aclaudio.data.esc50`) uses the same machinery.
Only the standard library talks HTTP; tqdm draws the progress bars.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import os
import shutil
import stat
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

from aclaudio import __version__
from aclaudio.data.layout import AUDIO_DIRS, DOC_DIR, META_DIR

#: The Zenodo record that publishes FSDnoisy18k (Fonseca et al., ICASSP 2019).
ZENODO_RECORD = 2529934

#: Where each archive lives; ``{name}`` is replaced by an archive's file name.
ZENODO_URL_PATTERN = f"https://zenodo.org/record/{ZENODO_RECORD}/files/{{name}}?download=1"

#: Archive name -> md5 as published on the record. Small archives come first so that a broken
#: connection or a bad mirror shows up in seconds, not after the 13 GB training audio.
FSDNOISY18K_FILES: dict[str, str] = {
    f"{META_DIR}.zip": "96e27a4a63b7a2870522ddcedb5d8296",
    f"{DOC_DIR}.zip": "093a1ca185ec341ca4eac14215e7f96b",
    f"{AUDIO_DIRS['test']}.zip": "1ac73d70b4ef3f81900d98c261a832de",  # about 0.45 GB
    f"{AUDIO_DIRS['train']}.zip": "34dc1d34ca44622af5bf439ceb6f0d55",  # about 13 GB
}

CHUNK_BYTES = 1 << 20
USER_AGENT = f"aclaudio/{__version__} (urllib)"
# Statuses worth another try: the server or a proxy may recover; anything else will not.
TRANSIENT_HTTP_CODES = {408, 429, 500, 502, 503, 504}
NOTHING_FETCHED = {"bytes_downloaded": 0, "bytes_resumed": 0}


class DownloadError(RuntimeError):
    """A download or extraction that cannot succeed as things stand (the message says why)."""


class ChecksumError(DownloadError):
    """Downloaded bytes whose checksum differs from the expected one."""


class UnsafeArchiveError(DownloadError):
    """An archive member that would land outside the target folder."""


def download_fsdnoisy18k(
    dest: str | Path,
    *,
    base_url: str = ZENODO_URL_PATTERN,
    files: Mapping[str, str] = FSDNOISY18K_FILES,
    keep_zips: bool = False,
    progress: bool = True,
    retries: int = 3,
    backoff_s: float = 1.0,
) -> dict:
    """Download, verify and unzip every archive of `files` into `dest`; return a JSON-able summary.

    Archives already extracted by an earlier call are skipped without any network request, so
    running it again after an interruption finishes the job and otherwise does nothing.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = []
    for name, md5 in files.items():
        if is_extracted(name, dest):
            status, transfer = "already extracted", NOTHING_FETCHED
            entries = read_marker(name, dest)["entries"]
        else:
            zip_path = dest / name
            # Room to unzip too: the wav files inside barely compress, so the archive's size again.
            transfer = fetch(
                base_url.format(name=name),
                zip_path,
                md5=md5,
                progress=progress,
                retries=retries,
                backoff_s=backoff_s,
                unpack_ratio=1.0,
            )
            entries = extract(zip_path, dest)
            if not keep_zips:
                zip_path.unlink()
            status = "extracted"
        rows.append({"name": name, "status": status, **transfer, "extracted": entries})
    return {
        "dataset": "FSDnoisy18k",
        "zenodo_record": ZENODO_RECORD,
        "dest": str(dest.resolve()),
        "files": rows,
        "bytes_downloaded": sum(row["bytes_downloaded"] for row in rows),
        "bytes_resumed": sum(row["bytes_resumed"] for row in rows),
        "seconds": round(time.perf_counter() - start, 3),
    }


def fetch(
    url: str,
    target: str | Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    retries: int = 3,
    backoff_s: float = 1.0,
    unpack_ratio: float = 0.0,
    expected_bytes: int | None = None,
    timeout_s: float = 60.0,
) -> dict[str, int]:
    """Download `url` to `target` through `target.part`, resuming a part left by an earlier try.

    Transient network errors are retried `retries` times, waiting backoff_s, 2 backoff_s, ...
    and each retry resumes where the last stopped. The file only appears under its final name
    once every digest given (md5, sha256) matches; a mismatch deletes the part so the next run
    starts afresh. With no digest a complete transfer is trusted as it is: the caller verifies.
    `unpack_ratio` asks for that fraction of the file's size free beyond the download itself;
    `expected_bytes` stands in for the size when the server does not send it.
    Returns the bytes received now and the bytes reused from an earlier part.
    """
    target = Path(target)
    expected = {name: value for name, value in (("md5", md5), ("sha256", sha256)) if value}
    if target.exists():
        if _mismatch(target, expected) is None:
            return dict(NOTHING_FETCHED)
        target.unlink()  # not what we verified before: someone changed it; fetch it again
    part = target.with_name(target.name + ".part")
    counts = {"bytes_downloaded": 0, "bytes_resumed": _size(part)}
    transfer = functools.partial(
        _transfer,
        url,
        part,
        counts=counts,
        progress=progress,
        unpack_ratio=unpack_ratio,
        expected_bytes=expected_bytes,
        timeout_s=timeout_s,
    )
    _with_retries(transfer, url, part, retries, backoff_s)
    mismatch = _mismatch(part, expected)
    if mismatch is not None:
        part.unlink()
        raise ChecksumError(
            f"{target.name}: {mismatch}; the download was deleted, run again to start over"
        )
    os.replace(part, target)
    return counts


def _with_retries(transfer, url: str, part: Path, retries: int, backoff_s: float) -> None:
    """transfer() until it succeeds, retrying transient errors after backoff_s, 2 backoff_s, ..."""
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            transfer()
            return
        except urllib.error.HTTPError as error:
            error.close()
            if error.code not in TRANSIENT_HTTP_CODES:
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
            last_error = error
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            last_error = error
    raise DownloadError(
        f"could not download {url} after {retries + 1} attempts: {last_error}; "
        f"run again to resume from the {_size(part)} bytes kept in {part}"
    )


def extract(
    zip_path: str | Path, dest: str | Path, *, record: Mapping[str, object] | None = None
) -> list[str]:
    """Unzip `zip_path` into `dest` and return the top-level entries it created.

    Every member is checked before anything is written: one that is absolute, climbs out with
    "..", or is a symbolic link is refused. Members go to a temporary folder inside `dest` first
    and are renamed into place, then a marker records the archive as done, so a killed
    extraction is redone rather than mistaken for a complete one. `record` adds facts about the
    archive to the marker (read them back with `read_marker`).
    """
    zip_path, dest = Path(zip_path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".{zip_path.name}.tmp"
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{zip_path}: not a zip archive ({error})") from error
    with archive:
        members = archive.infolist()
        for member in members:
            _check_member(member, staging, archive_name=zip_path.name)
        _require_free_space(
            dest, sum(member.file_size for member in members), what=f"unzip {zip_path.name}"
        )
        if staging.exists():
            shutil.rmtree(staging)  # left by a killed extraction
        try:
            archive.extractall(staging)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            shutil.rmtree(staging, ignore_errors=True)
            zip_path.unlink()  # damaged: the next run downloads it again instead of reusing it
            raise DownloadError(
                f"{zip_path}: damaged archive ({error}); removed, run the download again"
            ) from error
    entries = sorted(os.listdir(staging))
    for entry in entries:
        final = dest / entry
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)  # unmarked, hence incomplete: replace it whole
        elif final.exists() or final.is_symlink():
            final.unlink()
        os.replace(staging / entry, final)
    staging.rmdir()
    marker = _marker_path(zip_path.name, dest)
    unfinished = marker.with_name(marker.name + ".tmp")
    unfinished.write_text(
        json.dumps({"archive": zip_path.name, "entries": entries, **(record or {})})
    )
    os.replace(unfinished, marker)
    return entries


def _transfer(
    url: str,
    part: Path,
    *,
    counts: dict[str, int],
    progress: bool,
    unpack_ratio: float,
    expected_bytes: int | None,
    timeout_s: float,
) -> None:
    """One request: append the rest of `url` to `part`; raise ConnectionError if cut short."""
    offset = _size(part)
    label = part.name.removesuffix(".part")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left to send: the part holds the whole file
            error.close()
            return
        raise
    with response:
        if offset and response.status != 206:  # the server ignored Range: start over
            offset = counts["bytes_resumed"] = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        size = total if total is not None else expected_bytes
        from tqdm import tqdm  # the train extra's: `aclaudio --help` imports this module

        if size is not None:
            needed = max(size - offset, 0) + int(unpack_ratio * size)
            _require_free_space(part.parent, needed, what=f"download {label}")
        with (
            open(part, "ab" if offset else "wb") as out,
            tqdm(
                total=total,
                initial=offset,
                desc=label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                counts["bytes_downloaded"] += len(chunk)
                bar.update(len(chunk))
    # http.client returns a short body without complaint when the connection drops.
    if total is not None and part.stat().st_size < total:
        raise ConnectionError(f"connection closed after {part.stat().st_size} of {total} bytes")


def _check_member(member: zipfile.ZipInfo, root: Path, *, archive_name: str) -> None:
    """Refuse a member that would be written anywhere but inside `root`."""
    if stat.S_ISLNK(member.external_attr >> 16):
        reason = "it is a symbolic link"
    elif not (root / member.filename).resolve().is_relative_to(root.resolve()):
        reason = "its path leads outside the target folder"
    else:
        return
    raise UnsafeArchiveError(f"{archive_name}: refusing member {member.filename!r}: {reason}")


def _require_free_space(directory: Path, needed: int, *, what: str) -> None:
    """Fail before starting rather than on a full disk halfway through."""
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise DownloadError(
            f"not enough free space in {directory} to {what}: needs {needed / 1e9:.2f} GB, "
            f"{free / 1e9:.2f} GB free"
        )


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def file_digest(path: str | Path, algorithm: str) -> str:
    """The hex digest of a file's bytes ("md5", "sha256", ...)."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, algorithm).hexdigest()


def _mismatch(path: Path, expected: Mapping[str, str]) -> str | None:
    """What differs between the file's digests and the expected ones; None when all match."""
    for algorithm, value in expected.items():
        got = file_digest(path, algorithm)
        if got != value:
            return f"{algorithm} mismatch (expected {value}, got {got})"
    return None


def _marker_path(archive_name: str, dest: Path) -> Path:
    return dest / f".{archive_name}.extracted"


def read_marker(archive_name: str, dest: str | Path) -> dict | None:
    """What `extract` recorded about an archive it unpacked into `dest`; None if it has not."""
    marker = _marker_path(archive_name, Path(dest))
    return json.loads(marker.read_text()) if marker.exists() else None


def is_extracted(archive_name: str, dest: str | Path) -> bool:
    """True when an earlier extraction finished and what it created is still there."""
    marker = read_marker(archive_name, dest)
    return marker is not None and all((Path(dest) / entry).exists() for entry in marker["entries"])
