"""The first cell of every notebook: where its results go, its dataset, its run store and the
study's grids for its profile."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from aclaudio.data import folders
from aclaudio.data.synth import synthesize
from aclaudio.study.artifacts import results_dir
from aclaudio.study.grids import StudySettings, settings

#: The project folder as a notebook sees it: Jupyter and run_all.sh run a notebook in its own
#: folder, notebooks/, so the project's data/, runs/ and results/ are one level up.
NOTEBOOK_HOME = ".."


class Setup(NamedTuple):
    results: Path
    data_dir: str
    runs_dir: Path
    settings: StudySettings


def setup(
    profile: str,
    data_dir: str = "",
    runs_dir: str = "",
    results_root: str = "",
    *,
    needs_data: bool = True,
    home: str | Path = NOTEBOOK_HOME,
) -> Setup:
    """What a notebook works with, from its papermill parameters; an empty one takes the
    default of data.folders in the project folder `home`.

    The dataset defaults to the profile's built-in one, generated on first use (not for a
    notebook that reads no dataset: needs_data=False).

    Example (the first cell of a notebook in notebooks/):
        >>> results, data_dir, runs_dir, settings = setup("smoke", needs_data=False)
    """
    grids = settings(profile)
    data = data_dir or (builtin_data(profile, folders.data(home=home)) if needs_data else "")
    return Setup(
        results=results_dir(profile, folders.results(results_root or None, home=home).resolve()),
        data_dir=data,
        runs_dir=folders.runs(runs_dir or None, home=home).resolve(),
        settings=grids,
    )


def builtin_data(profile: str, root: str | Path) -> str:
    """The built-in dataset of a profile (smoke for smoke, cpu otherwise) under root, generated
    if missing."""
    size = "smoke" if profile == "smoke" else "cpu"
    path = Path(root) / f"builtin-{size}"
    synthesize(path, profile=size, seed=0, progress=False)
    return str(path)
