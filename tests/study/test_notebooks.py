"""Every notebook runs under papermill in the smoke profile and records sane numbers; the
notebooks in the repository carry no outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import pytest
from conftest import NOTEBOOKS, execute_smoke_notebook

from aclaudio.study import artifacts

pytestmark = pytest.mark.slow  # papermill runs every notebook: not in ./run_tests.sh --fast


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(notebook):
    content = nbformat.read(notebook, as_version=4)
    code = [cell for cell in content.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code)
    assert content.metadata["kernelspec"]["name"] == "aclaudio"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_the_smoke_profile(notebook, smoke_study):
    execute_smoke_notebook(notebook, smoke_study)
    results = smoke_study / "results" / "smoke"
    metrics_file = artifacts.Artifact(notebook.stem, "", ".metrics.json").path(results)
    metrics = json.loads(metrics_file.read_text())
    assert metrics, "the notebook recorded no metrics"
    for name, value in metrics.items():
        assert math.isfinite(value), name
        if any(word in name for word in ("accuracy", "micro", "macro")):
            assert 0 <= value <= 1, (name, value)
    assert list((results / "figures").glob(f"{notebook.stem}-*.png")), "no figure written"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_notebook_ends_on_a_conclusion_and_names_no_machine_path(notebook, smoke_study):
    executed = nbformat.read(execute_smoke_notebook(notebook, smoke_study), as_version=4)
    last = executed.cells[-1]
    assert last.cell_type == "code", "the notebook does not end on its generated conclusion"
    assert any("text/markdown" in o.get("data", {}) for o in last.outputs)
    machine = [str(Path(__file__).resolve().parents[2]), str(Path.home()), str(smoke_study)]
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            text = json.dumps(output)
            for path in machine:
                assert path not in text, (path, text[:300])


def test_the_notebooks_write_exactly_the_files_artifacts_names(smoke_study):
    """study.artifacts is the one list of what the notebooks write: every name in it is
    written, and nothing else, so a file renamed in one place only fails here."""
    assert [n.stem for n in NOTEBOOKS] == list(artifacts.NOTEBOOKS)
    for notebook in NOTEBOOKS:
        execute_smoke_notebook(notebook, smoke_study)
    results = smoke_study / "results" / "smoke"
    written = {
        p.relative_to(results)
        for folder in ("tables", "figures")
        for p in (results / folder).iterdir()
    }
    named = {a.path(results).relative_to(results) for a in artifacts.all_artifacts()}
    assert written == named
