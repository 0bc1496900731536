"""Every notebook runs under papermill in the smoke profile and records sane numbers; the
notebooks in the repository carry no outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import papermill
import pytest

from aclaudio import synth

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """One smoke dataset, run store and results folder shared by every notebook (as run_all)."""
    root = tmp_path_factory.mktemp("study")
    synth.synthesize(root / "data", profile="smoke", seed=0, progress=False)
    return root


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(notebook):
    content = nbformat.read(notebook, as_version=4)
    code = [cell for cell in content.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code)
    assert content.metadata["kernelspec"]["name"] == "aclaudio"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_the_smoke_profile(notebook, smoke_study):
    executed = smoke_study / "executed" / notebook.name
    executed.parent.mkdir(exist_ok=True)
    papermill.execute_notebook(
        notebook, executed, kernel_name="aclaudio", cwd=notebook.parent, progress_bar=False,
        parameters={"profile": "smoke", "data_dir": str(smoke_study / "data"),
                    "runs_dir": str(smoke_study / "runs"),
                    "results_root": str(smoke_study / "results")},
    )  # fmt: skip
    results = smoke_study / "results" / "smoke"
    metrics = json.loads((results / "tables" / f"{notebook.stem}.metrics.json").read_text())
    assert metrics, "the notebook recorded no metrics"
    for name, value in metrics.items():
        assert math.isfinite(value), name
        if any(word in name for word in ("accuracy", "micro", "macro")):
            assert 0 <= value <= 1, (name, value)
    assert list((results / "figures").glob(f"{notebook.stem}-*.png")), "no figure written"
