"""Files of the run store damaged after they were written: the results table is rebuilt from
the run folders, a run's own files are named with what is wrong and what to do, and no
damaged file blocks a later run or loses a row."""

from __future__ import annotations

import json
import shutil

import pytest

from aclaudio.data import synth
from aclaudio.data.atomic import DamagedFileError
from aclaudio.recipes.pretrain import pretrain
from aclaudio.training import config, results, runs


def smoke(data, seed):
    return config.profile_config(
        "pretrain", "smoke", data_dir=str(data), subset="all", epochs=1, seed=seed
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two finished smoke runs and their results table, to copy and damage."""
    root = tmp_path_factory.mktemp("store")
    synth.synthesize(root / "data", profile="smoke", seed=0, progress=False)
    for seed in (0, 1):
        pretrain(smoke(root / "data", seed), runs_dir=root / "runs", progress=False)
    return root


@pytest.fixture
def copy(store, tmp_path):
    shutil.copytree(store / "runs", tmp_path / "runs")
    return tmp_path / "runs", store / "data"


def test_a_table_cut_mid_row_is_rebuilt_and_blocks_no_run(copy):
    store, data = copy
    table = store / results.RESULTS_FILE
    rows = results.load_results(store)
    text = table.read_text()
    table.write_text(text[: len(text) * 3 // 4])  # cut inside the last row
    with pytest.warns(runs.RunWarning, match=f"{table}: unreadable .*rebuilt from the run"):
        pretrain(smoke(data, 2), runs_dir=store, progress=False)  # its row goes in
    rebuilt = results.load_results(store)
    assert sorted(rebuilt["run"]) == sorted([*rows["run"], runs.find_run(smoke(data, 2), store).id])
    same = rebuilt.set_index("run").loc[rows["run"], "test_micro"]
    assert same.tolist() == rows["test_micro"].tolist()  # every earlier row kept, as it was


def test_a_table_missing_a_finished_run_gets_it_back(copy):
    store, _ = copy
    table = store / results.RESULTS_FILE
    rows = results.load_results(store)
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:-1]) + "\n")  # the last row removed
    with pytest.warns(runs.RunWarning, match="no row for 1 finished run"):
        restored = results.load_results(store)
    assert restored["run"].tolist() == rows["run"].tolist()  # in the order they finished
    assert restored["test_micro"].tolist() == rows["test_micro"].tolist()


def test_rebuild_writes_the_table_from_the_folders(copy):
    store, _ = copy
    rows = results.load_results(store)
    (store / results.RESULTS_FILE).unlink()
    rebuilt = results.rebuild_results(store)
    assert rebuilt["run"].tolist() == rows["run"].tolist()
    assert {"commit", "finished_at", "alpha", "test_micro"} <= set(rebuilt.columns)


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]"])
def test_a_damaged_marker_counts_as_unfinished_and_a_rerun_finishes_it(copy, content):
    store, data = copy
    run = runs.find_run(smoke(data, 0), store)
    summary = run.summary()
    (run.path / runs.MARKER).write_text(content)
    with pytest.warns(runs.RunWarning, match="finished.json: unreadable .*counts as unfinished"):
        assert not run.finished
    with pytest.warns(runs.RunWarning):
        again = pretrain(smoke(data, 0), runs_dir=store, progress=False)  # evaluated again
    assert again.finished and again.summary()["test_micro"] == summary["test_micro"]


def test_an_empty_metrics_file_names_itself_and_what_to_delete(copy):
    store, data = copy
    run = runs.find_run(smoke(data, 0), store)
    (run.path / "metrics.csv").write_text("")
    with pytest.raises(DamagedFileError, match="metrics.csv: unreadable .*delete it to go on"):
        run.metrics()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda v: v.pop("kind"), "config.json: lacks 'kind'; the run cannot be read"),
        (lambda v: v.update(epochs="six"), "epochs must be int, got 'six'"),
        (lambda v: v.update(batch_size=0), "batch_size must be at least 1, got 0"),
    ],
)
def test_a_damaged_config_is_named(copy, edit, message):
    store, data = copy
    run = runs.find_run(smoke(data, 0), store)
    values = json.loads((run.path / "config.json").read_text())
    edit(values)
    (run.path / "config.json").write_text(json.dumps(values))
    with pytest.raises(DamagedFileError, match=message):
        runs.load_run(run.path)


def test_a_checkpoint_of_another_model_is_named(copy, tmp_path):
    store, data = copy
    run = runs.find_run(smoke(data, 0), store)
    state = runs.find_run(smoke(data, 0), store).load_checkpoint("last")
    state["model"] = {"fc.weight": next(iter(state["model"].values()))}  # not this model
    for name in ("best", "last"):
        run.save_checkpoint(state, name)
    from aclaudio.nn.models import build_contrastive_model

    model = build_contrastive_model(run.config, "cpu")
    with pytest.raises(runs.CheckpointError, match="its checkpoint does not fit the run's model"):
        run.load_weights(model)


def test_a_table_cut_without_a_quote_is_not_read_as_a_short_row(copy):
    """Cut at a comma, pandas would read the rest of the row as missing values."""
    store, _ = copy
    table = store / results.RESULTS_FILE
    rows = results.load_results(store)
    text = table.read_text()
    table.write_text(text[: text.rindex(",", 0, len(text) - 2) + 1])
    with pytest.warns(runs.RunWarning, match="cut short: its last line has no end"):
        restored = results.load_results(store)
    assert restored["test_micro"].tolist() == rows["test_micro"].tolist()
