"""Safe file updates across processes: atomic writes and inter-process locks.

A kill never leaves a half-written file that is later trusted, and two processes doing the same
work (a feature cache, a run, the results table) take turns instead of corrupting each other.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

HOST = socket.gethostname().replace(".", "_")  # one store may be shared by a cluster's machines


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
