"""Warnings as one line each, "Category: message": the file and line of the library that
raised one, and its source line, tell the reader of a notebook or a terminal nothing. Only
where asked (`warnings_as_lines`, the command line): nothing changes for the whole process.
Imports nothing outside the core install: every command, `aclaudio --help` included, uses it.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


def show_as_lines(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning's signature: one line, written above any progress bar."""
    from tqdm.auto import tqdm  # the train extra's; a warning comes after the command started

    tqdm.write(f"{category.__name__}: {message}", file=file or sys.stderr)


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Within the block, warnings show as `show_as_lines` does; as before after it."""
    with warnings.catch_warnings():
        warnings.showwarning = show_as_lines
        yield
