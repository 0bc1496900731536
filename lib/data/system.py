"""What this machine offers, asked in a way that works on Linux, macOS and Windows; worker
processes that end with the process that started them; folders to write in before moving in.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from glob import escape
from pathlib import Path

import psutil

from aclaudio.data.atomic import HOST, temporary_path


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS has one, else all of them)."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def end_with_parent() -> None:
    """Initializer of a pool's worker processes: end the worker when the process that started
    it has gone, even by kill -9 (a pool's workers would otherwise work on, then wait for more
    forever). Works with every start method: the parent is watched through a pipe."""
    threading.Thread(target=_exit_when_parent_ends, daemon=True).start()


def _exit_when_parent_ends() -> None:
    multiprocessing.parent_process().join()
    os._exit(1)


@contextmanager
def work_folder(target: Path) -> Iterator[Path]:
    """A new empty folder beside `target` (on its file system, so that a rename moves what is
    written there into `target`), removed on leaving, even on an error. Named by pid and
    machine, as temporary_path names files: those that processes killed on this machine left
    beside `target` are removed on entering. Use it under the lock that guards `target`."""
    for folder in target.parent.glob(f".{escape(target.name)}.*@{HOST}.tmp"):
        pid = folder.name.removesuffix(f"@{HOST}.tmp").rsplit(".", 1)[1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    work = temporary_path(target)
    shutil.rmtree(work, ignore_errors=True)  # left by a killed process that had our pid
    work.mkdir()
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
