"""Where the project's folders are unless told otherwise: the run store, the datasets and the
results.

Each is the folder of that name in the project folder `home` (by default the current one: where
`aclaudio` and run_all.sh are run); $ACLAUDIO_RUNS names another run store, so that several
checkouts or a cluster can share one. Defined here once, and never a folder inside the
installed package (after `pip install .` that is site-packages).
"""

from __future__ import annotations

import os
from pathlib import Path

RUNS_ENV = "ACLAUDIO_RUNS"


def runs(path: str | Path | None = None, *, home: str | Path = ".") -> Path:
    """The run store: `path`, else $ACLAUDIO_RUNS, else HOME/runs."""
    return Path(path or os.environ.get(RUNS_ENV) or Path(home) / "runs").expanduser()


def data(path: str | Path | None = None, *, home: str | Path = ".") -> Path:
    """The datasets' folder (the built-in ones are generated there): `path`, else HOME/data."""
    return Path(path or Path(home) / "data").expanduser()


def results(path: str | Path | None = None, *, home: str | Path = ".") -> Path:
    """The results' folder (one folder per profile beneath): `path`, else HOME/results."""
    return Path(path or Path(home) / "results").expanduser()
