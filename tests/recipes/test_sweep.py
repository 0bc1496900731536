"""Grids of runs through submitit's local executor, finished runs skipped."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import warnings

import pytest

from aclaudio.data import synth
from aclaudio.recipes import sweep
from aclaudio.training import config, results, runs


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    synth.synthesize(root, profile="smoke", seed=0, progress=False)
    return root


def base(data_dir):
    return config.profile_config(
        "pretrain", "smoke", data_dir=str(data_dir), subset="all", epochs=1
    )


def seeds(config_, values: list[int]) -> list:
    return [dataclasses.replace(config_, seed=seed) for seed in values]


def test_local_executor_runs_the_grid_once(smoke_data, tmp_path, monkeypatch):
    configs = seeds(base(smoke_data), [0, 1])
    done = sweep.run_grid(configs, runs_dir=tmp_path, executor="local", parallel=2)
    assert all(run.finished for run in done)
    table = results.load_results(tmp_path)
    assert sorted(table["seed"]) == [0, 1] and set(table["run"]) == {run.id for run in done}
    assert list((tmp_path / "submitit").glob("*_log.out"))  # submitit really ran the jobs
    shared = max(1, (os.cpu_count() or 1) // 2)  # two jobs share the cores
    assert [run.summary()["threads"] for run in done] == [shared, shared]

    def no_submit(*args, **kwargs):
        raise AssertionError("a finished run was submitted again")

    monkeypatch.setattr(sweep, "_submit", no_submit)
    again = sweep.run_grid(configs, runs_dir=tmp_path, executor="local")
    assert [run.path for run in again] == [run.path for run in done]
    extended = sweep.run_grid(seeds(base(smoke_data), [0, 1, 2]), runs_dir=tmp_path)
    assert len(extended) == 3 and len(results.load_results(tmp_path)) == 3  # only seed 2 trained


def test_jobs_from_the_environment_run_each_run_once_through_the_local_executor(
    smoke_data, tmp_path, monkeypatch
):
    """`run_all.sh --jobs 2`: the notebooks' plain run_grid calls go through the local executor
    with two processes; a config listed twice is trained once."""
    monkeypatch.setenv(sweep.JOBS_ENV, "2")
    first, second = seeds(base(smoke_data), [0, 1])
    done = sweep.run_grid([first, second, first], runs_dir=tmp_path)
    assert all(run.finished for run in done) and done[0].path == done[2].path
    assert len(list((tmp_path / "submitit").glob("*_log.out"))) == 2  # one job per run
    table = results.load_results(tmp_path)
    assert sorted(table["run"]) == sorted({done[0].id, done[1].id})


def test_unknown_executor(smoke_data, tmp_path):
    with pytest.raises(ValueError, match="unknown executor 'cloud'"):
        sweep.run_grid([base(smoke_data)], runs_dir=tmp_path, executor="cloud")


def test_sweep_command(smoke_data, tmp_path, capsys):
    import json

    from aclaudio import cli

    argv = [
        "sweep",
        "supervised",
        "--profile",
        "smoke",
        "--data-dir",
        str(smoke_data),
        "--runs-dir",
        str(tmp_path),
        "--executor",
        "local",
        "--parallel",
        "2",
    ]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["grid"] == "supervised" and summary["runs"] == 4  # 2 subsets x 2 alphas
    assert len(results.load_results(tmp_path)) == 4


def test_a_failed_run_ends_the_sweep_command_with_one_line(smoke_data, tmp_path, capsys):
    """A job that fails (here: its data folder vanished after the grid was made) leaves its run
    unfinished: the command names it, the job's error and its logs, and prints ok false."""
    import json

    from aclaudio import cli

    data = tmp_path / "data"
    shutil.copytree(smoke_data, data)
    configs = seeds(base(data), [0])
    shutil.rmtree(data / "FSDnoisy18k.audio_train")
    with pytest.raises(sweep.SweepError, match="1 of 1 runs did not finish") as error:
        sweep.run_grid(configs, runs_dir=tmp_path / "r", executor="local")
    assert "first error:" in str(error.value) and "logs in" in str(error.value)

    argv = [
        "sweep",
        "supervised",
        "--profile",
        "smoke",
        "--data-dir",
        str(data),
        "--runs-dir",
        str(tmp_path / "r2"),
        "--executor",
        "local",
    ]
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert not summary["ok"] and "Traceback" not in err


def test_run_warnings_show_as_one_line_and_only_inside_the_grid(smoke_data, tmp_path, capsys):
    """A notebook's reader sees "RunWarning: message", not the library's file, line and source;
    once the grid is done, Python shows warnings as it did before."""
    before = warnings.showwarning
    sweep.run_grid([base(smoke_data)], runs_dir=tmp_path)
    err = capsys.readouterr().err
    lines = [line for line in re.split(r"[\r\n]", err) if "Warning" in line]
    assert lines and all(line.startswith("RunWarning: ") for line in lines), lines
    assert not any(".py:" in line for line in lines)
    assert warnings.showwarning is before


def test_a_failing_run_of_an_inline_grid_is_named_and_the_others_kept(
    smoke_data, tmp_path, monkeypatch
):
    real = sweep.pretrain

    def fails_on_seed_1(config, **kwargs):
        if config.seed == 1:
            raise RuntimeError("out of memory")
        return real(config, **kwargs)

    monkeypatch.setattr(sweep, "pretrain", fails_on_seed_1)
    configs = seeds(base(smoke_data), [0, 1])
    failing = runs.find_run(configs[1], tmp_path).path
    with pytest.raises(
        sweep.SweepError, match=f"run {failing} failed .RuntimeError: out of memory"
    ):
        sweep.run_grid(configs, runs_dir=tmp_path)
    assert runs.find_run(configs[0], tmp_path).finished  # kept for the rerun
