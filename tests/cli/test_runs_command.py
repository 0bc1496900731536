"""`aclaudio runs list` and `runs show` on a real store, and `aclaudio export` of a run named by
its id, a prefix of it, or the settings it was trained with."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from aclaudio.data import synth
from aclaudio.recipes.pretrain import pretrain
from aclaudio.training import config, runs

HEADER = ["run", "kind", "profile", "objective", "settings", "seed", "length", "test", "micro"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two finished smoke pretrainings (alpha 0.3 seed 0, alpha 0.7 seed 1), and a pretraining
    and a supervised run only begun (their folders as a run killed at its start leaves them)."""
    root = tmp_path_factory.mktemp("store")
    synth.synthesize(root / "data", profile="smoke", seed=0, progress=False)
    data = {"data_dir": str(root / "data")}

    def settings(**values):
        return config.profile_config("pretrain", "smoke", subset="all", epochs=1, **data, **values)

    finished = [
        pretrain(settings(alpha=alpha, seed=seed), runs_dir=root / "runs", progress=False)
        for alpha, seed in ((0.3, 0), (0.7, 1))
    ]
    begun = [
        runs.open_run(settings(alpha=0.3, seed=2), root / "runs"),
        runs.open_run(config.profile_config("supervised", "smoke", **data), root / "runs"),
    ]
    return root, finished, begun


def listed(capsys, store_dir: Path, *options: str) -> set[str]:
    code, summary, _ = run_cli(capsys, "runs", "list", "--runs-dir", store_dir, *options)
    assert code == 0, summary
    return {row["run"] for row in summary["runs"]}


def files_and_times(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*")}


def test_list_shows_every_run_finished_or_not(store, capsys):
    root, finished, begun = store
    before = files_and_times(root / "runs")
    code, summary, text = run_cli(capsys, "runs", "list", "--runs-dir", root / "runs")
    assert code == 0 and files_and_times(root / "runs") == before  # listing writes nothing
    rows = {row["run"]: row for row in summary["runs"]}
    assert set(rows) == {run.id for run in finished + begun} and summary["count"] == 4
    header, *lines, last = text.splitlines()
    assert header.split() == [*HEADER, "finished"]
    assert last == f"4 runs in {root / 'runs'} (2 finished, 2 not)"
    line_of = {line.split()[0]: line.split() for line in lines}
    for run in finished:
        accuracy = run.summary()["test_micro"]
        assert rows[run.id]["finished"] and rows[run.id]["test_micro"] == accuracy
        assert rows[run.id]["alpha"] == run.config.loss.alpha
        assert line_of[run.id] == [
            run.id,
            "pretrain",
            "smoke",
            "acl",
            f"alpha={run.config.loss.alpha}",
            "margin=0.5",
            str(run.config.seed),
            "1",
            "epoch",
            f"{accuracy:.2%}",
            "yes",
        ]
    pretraining, supervised = begun
    assert line_of[pretraining.id][-4:] == ["1", "epoch", "-", "no"]
    assert line_of[supervised.id][1:5] == ["supervised", "smoke", "supervised_acl", "alpha=0.7"]
    assert not rows[supervised.id]["finished"] and rows[supervised.id]["test_micro"] is None


def test_list_filters_combine(store, capsys):
    root, (a, b), (c, supervised) = store
    store_dir = root / "runs"
    assert listed(capsys, store_dir, "--kind", "supervised") == {supervised.id}
    assert listed(capsys, store_dir, "--unfinished") == {c.id, supervised.id}
    assert listed(capsys, store_dir, "--seed", "0") == {a.id, supervised.id}
    assert listed(capsys, store_dir, "--objective", "acl") == {a.id, b.id, c.id}
    assert listed(capsys, store_dir, "--objective", "acl", "--unfinished") == {c.id}
    assert listed(capsys, store_dir, "--kind", "pretrain", "--seed", "1") == {b.id}
    assert listed(capsys, store_dir, "--profile", "paper") == set()
    assert listed(capsys, store_dir, "--profile", "smoke") == {a.id, b.id, c.id, supervised.id}


def test_a_finetuning_is_listed_by_the_run_it_starts_from(store, tmp_path, capsys):
    _, (run, _), _ = store
    tuning = runs.open_run(config.make_config("finetune", pretrain_run=str(run.path)), tmp_path)
    code, summary, text = run_cli(capsys, "runs", "list", "--runs-dir", tmp_path)
    assert code == 0 and summary["runs"][0]["pretrain_run"] == run.id
    line = [tuning.id, "finetune", "-", "-", "of", run.id, "0", "30", "epochs", "-", "no"]
    assert text.splitlines()[1].split() == line


def test_damaged_files_are_named_and_never_stop_the_list(store, tmp_path, capsys):
    """A config that does not read back leaves its run out; a cut finished.json lists its run
    as unfinished; each with a warning naming the file."""
    root, (a, _), (c, _) = store
    shutil.copytree(root / "runs", tmp_path / "runs", ignore=shutil.ignore_patterns("*.pt"))
    (tmp_path / "runs" / c.id / "config.json").write_text("{")
    marker = tmp_path / "runs" / a.id / "finished.json"
    marker.write_text(marker.read_text()[:20])
    code, summary, _ = run_cli(capsys, "runs", "list", "--runs-dir", tmp_path / "runs")
    rows = {row["run"]: row for row in summary["runs"]}
    assert code == 0 and c.id not in rows and len(rows) == 3
    assert rows[a.id]["finished"] is False and rows[a.id]["test_micro"] is None
    (config_warning,) = [w for w in summary["warnings"] if "config.json" in w]
    assert config_warning.endswith("left out of the list") and c.id in config_warning
    assert any(str(marker) in w for w in summary["warnings"])


def test_show_finds_a_run_by_its_folder_id_or_a_prefix(store, capsys):
    root, (run, _), _ = store
    digits = run.id.partition("-")[2]
    for which in (run.path, run.id, f"pretrain-{digits[:6]}", digits[:6]):
        code, summary, text = run_cli(capsys, "runs", "show", which, "--runs-dir", root / "runs")
        assert code == 0 and summary["run"] == run.id and summary["finished"]
    assert summary["summary"] == run.summary()
    assert summary["settings"] == json.loads(json.dumps(config.settable(run.config)))
    names = {f["name"]: f["bytes"] for f in summary["files"]}
    assert names == {p.name: p.stat().st_size for p in run.path.iterdir()}
    assert {"config.json", "finished.json", "metrics.csv"} <= set(names)
    lines = text.splitlines()
    assert lines[0] == f"{run.id}: pretrain, finished, in {run.path}"
    assert ["loss.alpha=0.3", "float"] in [line.split() for line in lines]
    (mask,) = [line for line in lines if "augment.freq_mask=" in line]
    assert mask.split()[1:] == ["int", *"unused: augment.specaugment is false".split()]
    assert summary["overridden"]["augment.freq_mask"] == "unused: augment.specaugment is false"
    assert f"  test_micro: {run.summary()['test_micro']:.6g}" in lines
    assert f"  config.json  {names['config.json']:,} bytes".split() in [x.split() for x in lines]


def test_show_of_an_unfinished_run(store, capsys):
    root, _, (run, _) = store
    code, summary, text = run_cli(capsys, "runs", "show", run.id, "--runs-dir", root / "runs")
    assert code == 0 and not summary["finished"] and summary["summary"] == {}
    assert text.splitlines()[0] == f"{run.id}: pretrain, unfinished, in {run.path}"
    assert "summary: none (no readable finished.json yet)" in text


@pytest.mark.parametrize("command", ["show", "export"])
def test_a_prefix_of_several_runs_is_one_line_naming_them(store, capsys, command):
    root, finished, begun = store
    pretrainings = sorted(run.id for run in [*finished, begun[0]])
    argv = ["runs", "show"] if command == "show" else ["export", "--to", root / "e.pt"]
    code, summary, _ = run_cli(capsys, *argv, "pretrain", "--runs-dir", root / "runs")
    assert code == 1 and summary["error"] == (
        f"pretrain: matches 3 runs in {root / 'runs'} ({', '.join(pretrainings)}); "
        "give more of the id"
    )
    code, summary, _ = run_cli(capsys, *argv, "nosuchrun", "--runs-dir", root / "runs")
    assert code == 1 and summary["error"].startswith(
        f"nosuchrun: no such run folder, and no run id in {root / 'runs'} starts with it"
    )
    assert not (root / "e.pt").exists()


def test_export_by_id_prefix_or_training_settings(store, tmp_path, capsys):
    root, (_, run), _ = store
    common = ["--runs-dir", root / "runs"]
    code, by_prefix, _ = run_cli(
        capsys, "export", run.id.partition("-")[2][:6], *common, "--to", tmp_path / "a.pt"
    )
    assert code == 0 and by_prefix["run"] == run.id
    settings = ["--profile", "smoke", "--data-dir", root / "data", "--seed", "1"]
    settings += ["--set", "subset=all", "--set", "epochs=1", "--set", "alpha=0.7"]
    code, by_settings, _ = run_cli(capsys, "export", *settings, *common, "--to", tmp_path / "b.pt")
    assert code == 0 and by_settings["run"] == run.id
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True)["encoder"] for n in "ab")
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())


def test_export_of_untrained_settings_names_the_command_that_trains_them(store, tmp_path, capsys):
    """The command the error gives trains the very run asked for; export then writes it."""
    root = store[0]
    settings = ["--profile", "smoke", "--data-dir", root / "data", "--seed", "4"]
    settings += ["--set", "subset=all", "--set", "epochs=1", "--runs-dir", tmp_path / "r"]
    code, refused, _ = run_cli(capsys, "export", *settings, "--to", tmp_path / "e.pt")
    assert code == 1 and not (tmp_path / "e.pt").exists()
    assert "has not finished in" in refused["error"] and "\n" not in refused["error"]
    command = shlex.split(refused["error"].partition("; train it with: ")[2])
    assert command[:2] == ["aclaudio", "pretrain"]
    code, trained, _ = run_cli(capsys, *command[1:])
    assert code == 0
    code, exported, _ = run_cli(capsys, "export", *settings, "--to", tmp_path / "e.pt")
    assert code == 0 and exported["run"] == Path(trained["run_dir"]).name
    assert f"({exported['run']})" in refused["error"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["some-run", "--seed", "1"], "give RUN or the settings of a run"),
        (["--seed", "1"], "export which run? give RUN (its folder, id or id prefix), or"),
    ],
)
def test_export_needs_a_run_or_its_settings_not_both(tmp_path, capsys, argv, message):
    code, summary, _ = run_cli(capsys, "export", *argv, "--to", tmp_path / "e.pt")
    assert code == 1 and summary["error"].startswith(message)
