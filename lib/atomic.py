"""Atomic file writes: a kill never leaves a half-written file that is later trusted."""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete the temporary files that writers killed mid-write left in `folder`.

    A temporary file is stale when its writer, named by the pid in its name, has gone.
    """
    for tmp in Path(folder).glob(".*.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            tmp.unlink(missing_ok=True)
