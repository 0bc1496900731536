"""The main job's progress: the study's runs from the run store, a line per run that finishes,
and the last words, in the library and through `aclaudio progress` beside a training."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aclaudio.recipes.pretrain import pretrain
from aclaudio.study import grids, progress
from aclaudio.training.config import config_hash
from aclaudio.training.runs import find_run, open_run, run_id


@pytest.fixture
def study(smoke_study, tmp_path):
    """The smoke study's dataset with an empty run store of this test's own."""
    return smoke_study / "data", tmp_path / "runs"


def random_init(data: Path):
    """The study's quickest run: random init at seed 0 (a linear evaluation, no training)."""
    return grids.comparison_configs("smoke", data)["random init"][0]


def test_the_study_is_every_run_the_notebooks_ask_for_once(study):
    data, store = study
    runs = progress.StudyRuns.of("smoke", data, store)
    configs = grids.all_configs("smoke", data)
    assert len(runs.runs) == len({config_hash(c) for c in configs}) < len(configs)
    assert runs.finished_at_start == frozenset() and not store.exists()  # nothing written
    assert runs.counts() == {
        "runs": len(runs.runs),
        "trained": 0,
        "reused": 0,
        "unfinished": len(runs.runs),
    }


def test_a_run_finished_before_is_reused_and_one_finished_meanwhile_is_reported(study):
    data, store = study
    first = pretrain(random_init(data), runs_dir=store, progress=False)
    runs = progress.StudyRuns.of("smoke", data, store)
    assert runs.finished_at_start == {first.id}
    second = grids.comparison_configs("smoke", data)["NT-Xent"][0]  # smoke has one seed
    looks = []

    def stop():  # the second run trains between the watcher's first and second look
        looks.append(1)
        if len(looks) == 2:
            pretrain(second, runs_dir=store, progress=False)
        return len(looks) > 3

    lines = list(progress.watch(runs, every=0.0, stop=stop))
    assert len(lines) == 1
    assert lines[0].startswith("finished pretrain, acl alpha 1 margin 0.5, seed 0 in ")
    counts = runs.counts()
    assert (counts["trained"], counts["reused"]) == (1, 1)
    assert progress.summary(runs, 75.4) == (
        f"{counts['runs']} runs in the study: 1 trained now, 1 reused, "
        f"{counts['runs'] - 2} unfinished; 1 min 15 s in all"
    )


def test_the_command_watches_until_stopped_and_then_says_what_ran(study):
    data, store = study
    command = [
        Path(sys.executable).parent / "aclaudio",
        "progress",
        "--profile",
        "smoke",
        "--data-dir",
        data,
        "--runs-dir",
        store,
        "--every",
        "0.2",
    ]
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # the watcher has read the store: the run below is trained "now"
    run = pretrain(random_init(data), runs_dir=store, progress=False)
    time.sleep(2)
    watcher.send_signal(signal.SIGTERM)
    out, err = watcher.communicate(timeout=60)
    lines = out.splitlines()
    assert watcher.returncode == 0, err
    assert lines[0].startswith("finished pretrain, random init, seed 0 in ")
    summary = json.loads(lines[-1])
    assert summary["ok"] and (summary["trained"], summary["reused"]) == (1, 0)
    assert lines[-2].startswith(f"{summary['runs']} runs in the study: 1 trained now, 0 reused")
    assert "study runs" in err  # the bar, on stderr
    assert run.finished


def test_the_time_left_counts_each_run_at_the_pace_of_its_kind(study):
    """Random-init runs (seconds) must not make the pretraining runs (minutes) look quick."""
    data, store = study
    configs = grids.comparison_configs("smoke", data)
    runs = progress.StudyRuns.of("smoke", data, store).runs
    of_kind = {progress.pace(r): r for r in runs}
    random, training = of_kind[("pretrain", False)], of_kind[("pretrain", True)]
    supervised = of_kind[("supervised", True)]
    assert random.config == configs["random init"][0]
    seconds = {("pretrain", False): [4.0, 6.0], ("pretrain", True): [100.0, 120.0]}
    # two pretraining runs at 110 s, one random init at 5 s, a supervised run (none finished
    # yet) at the mean of all four finished runs, 57.5 s
    left = progress.time_left([training, training, random, supervised], seconds)
    assert left == pytest.approx(2 * 110 + 5 + 57.5)


def test_only_some_notebooks_watches_their_runs_alone(study):
    """run_all.sh --only 03 trains notebook 03's runs: the bar must not wait for the others."""
    data, store = study
    supervised = progress.StudyRuns.of("smoke", data, store, ("03",))
    assert {progress.pace(r)[0] for r in supervised.runs} == {"supervised"}
    assert len(supervised.runs) == len(
        {config_hash(c) for c in grids.supervised_configs("smoke", data)}
    )
    both = progress.StudyRuns.of("smoke", data, store, ("02", "04"))
    every = progress.StudyRuns.of("smoke", data, store)
    assert {r.id for r in both.runs} < {r.id for r in every.runs}
    margins = progress.StudyRuns.of("smoke", data, store, ("07",))
    parts = (both, supervised, margins)
    assert set.union(*({r.id for r in part.runs} for part in parts)) == {r.id for r in every.runs}


def test_the_study_follows_07s_sweep_to_the_margins_it_chose(study):
    """Before the sweep, the first swept margin holds the place of the choice; once the sweep
    has finished, a refresh lists the chosen margin's runs instead (the bar's total unchanged)."""
    data, store = study
    swept = grids.settings("cpu").softmax_margins
    sweep = grids.margin_sweep_configs("cpu", data)
    sweep_ids = {run_id(c) for configs in sweep.values() for c in configs}
    watched = progress.StudyRuns.of("cpu", data, store, ("07",))

    def cosface_margins() -> set[float]:
        return {
            r.config.loss.margin
            for r in watched.runs
            if r.config.objective == "ntxent_cosface" and r.id not in sweep_ids
        }

    assert cosface_margins() == {swept[0]}
    for configs in sweep.values():
        for config in configs:  # the largest margin is best on the clean subset
            open_run(config, store).finish({"probe_select_macro": config.loss.margin})
    total = len(watched.runs)
    watched.refresh()
    assert cosface_margins() == {max(swept)} and len(watched.runs) == total


def test_a_label_tells_apart_the_runs_of_one_cell(study):
    """The reduction control and the length curve share the ACL cell of the comparison."""
    data, store = study
    acl = grids.comparison_configs("smoke", data)["ACL"][0]
    control = grids.control_configs("smoke", data)[0]
    curve = grids.length_curve_config("smoke", data)
    labels = [progress.label(find_run(c, store)) for c in (acl, control, curve)]
    assert labels == [
        "pretrain, acl alpha 0.3 margin 0.5, seed 0",
        "pretrain, acl alpha 0.3 margin 0.5 reduction mean, seed 0",
        "pretrain, acl alpha 0.3 margin 0.5, 6 steps, seed 0",
    ]


def test_the_watcher_lists_the_runs_again_only_when_one_has_finished(study, monkeypatch):
    """Listing the study's runs fingerprints the dataset for each: seconds of CPU on the
    built-in cpu set, which polling every 5 s took from the training beside it."""
    data, store = study
    watched = progress.StudyRuns.of("smoke", data, store, ("02",))
    refreshes, polls = [], itertools.count()
    monkeypatch.setattr(watched, "refresh", lambda: refreshes.append(True))
    assert list(progress.watch(watched, every=0, stop=lambda: next(polls) >= 5)) == []
    assert refreshes == []
    pretrain(random_init(data), runs_dir=store, progress=False)
    polls = itertools.count()
    lines = list(progress.watch(watched, every=0, stop=lambda: next(polls) >= 3))
    assert len(lines) == 1 and refreshes == [True]
