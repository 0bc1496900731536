"""Safe files across processes: atomic writes, inter-process locks, and reading back what was
written.

A kill never leaves a half-written file that is later trusted, two processes doing the same
work (a feature cache, a run, the results table) take turns instead of corrupting each other,
and a file damaged anyway (a full disk, an editor, a copy cut short) is named when read, with
what is wrong and what to do, instead of a parser's traceback.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psutil
from filelock import FileLock, Timeout

HOST = socket.gethostname().replace(".", "_")  # one store may be shared by a cluster's machines
T = TypeVar("T")


class DamagedFileError(ValueError):
    """A file this project wrote does not read back: the message names it, says what is wrong
    and what to do (a ValueError, so the command line reports it in one line)."""


def read_written(path: str | Path, parse: Callable[[Path], T], *, remedy: str) -> T:
    """`parse(path)` for a file this project wrote, or DamagedFileError: "PATH: what is wrong;
    remedy". The one place that turns a missing, empty, cut or foreign file (any OSError, or
    a ValueError, KeyError, TypeError or IndexError from the parser) into that one line.

    Example:
        >>> meta = read_written(cache / "meta.json", read_json_object, remedy="it is rebuilt")
    """
    path = Path(path)
    try:
        return parse(path)
    except FileNotFoundError:
        raise DamagedFileError(f"{path}: missing; {remedy}") from None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise DamagedFileError(f"{path}: {_what_is_wrong(error)}; {remedy}") from None


def _what_is_wrong(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"lacks {error}"
    text = str(error).partition("\n")[0] or type(error).__name__
    return text if isinstance(error, OSError | DamagedFileError) else f"unreadable ({text})"


def read_json_object(path: Path) -> dict:
    """A JSON file holding an object (a dict), else a ValueError saying what it holds."""
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"holds {type(value).__name__}, not an object")
    return value


def temporary_path(path: str | Path) -> Path:
    """A hidden sibling of `path` unique to this process: concurrent writers never share one.
    The name carries the writer's pid and machine, so that a leftover can be told stale."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}@{HOST}.tmp")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same folder, fsync, then rename over `path`."""
    tmp = temporary_path(path)
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_torch_save(state, path: str | Path, *, previous: str | Path | None = None) -> None:
    """torch.save through a temporary file, then rename over `path` (the file it replaces
    renamed to `previous` first, when given). A failed write (a full disk, a read-only folder,
    a folder where the file should be) is an OSError naming `path`, and changes nothing; torch
    itself reports some as RuntimeError "basic_ios::clear"."""
    import torch  # here: the command line reads this module without loading torch

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give the file to write")
    tmp = temporary_path(path)
    try:
        torch.save(state, tmp)
    except (OSError, RuntimeError) as error:
        tmp.unlink(missing_ok=True)
        reason = str(error).partition("\n")[0] or type(error).__name__
        raise OSError(f"{path}: could not be written ({reason})") from None
    if previous is not None and path.exists():
        os.replace(path, previous)
    os.replace(tmp, path)


@contextmanager
def exclusive(lock_file: str | Path, what: str) -> Iterator[None]:
    """Hold an inter-process lock for the block; when another process holds it, say so and wait.

    The lock is the operating system's (filelock), so a killed holder releases it at once.
    """
    lock = FileLock(lock_file)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"{what} is busy in another process: waiting for it", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete the temporary files that writers killed mid-write left in `folder`.

    A temporary file is stale when its writer, named by the pid and machine in its name, has
    gone; files written on other machines are left alone (their processes cannot be seen).
    """
    for tmp in Path(folder).glob(f".*.*@{HOST}.tmp"):
        pid = tmp.name.removesuffix(f"@{HOST}.tmp").rsplit(".", 1)[1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            tmp.unlink(missing_ok=True)
