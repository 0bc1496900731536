"""The `aclaudio` command: every subcommand ends with a JSON summary line."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli, run_cli_bound_by_permissions

from aclaudio import cli
from aclaudio.data import synth
from aclaudio.recipes import pretrain, supervised
from aclaudio.study import grids
from aclaudio.training import runs
from aclaudio.training.profiles import PROFILES


def test_data_commands(tmp_path, capsys):
    """Each ends with a short line for people (run_all.sh prints it) before its JSON."""
    code, summary, text = run_cli(capsys, "synth", "--to", tmp_path, "--profile", "smoke")
    assert code == 0 and summary["ok"] and summary["clips"]["test"] == 40
    assert text.splitlines()[-1] == (
        f"made the built-in dataset (smoke, seed 0) in {tmp_path}: 20 classes, 60 training "
        f"clips ({summary['hours']['train']:g} h), 40 test clips"
    )
    (tmp_path / "FSDnoisy18k.audio_train" / "1.wav").write_bytes(b"")
    code, summary, text = run_cli(capsys, "data", "summary", tmp_path)
    assert code == 0 and summary["n_classes"] == 20
    assert summary["bad_files"] == [
        {"split": "train", "fname": "1.wav", "problem": "empty file (0 bytes)"}
    ]
    assert "train/1.wav: empty file (0 bytes)" in text
    train = summary["subsets"]["all"]
    assert text.splitlines()[-1] == (
        f"{tmp_path}: 20 classes, 59 training clips ({train['hours']:g} h), 40 test clips, "
        "1 bad files"
    )
    code, summary, text = run_cli(
        capsys, "features", tmp_path, "--preset", "cpu", "--cache-dir", tmp_path / "c"
    )
    assert code == 0 and summary["clips"] == 99 and summary["preset_name"] == "cpu"
    assert Path(summary["cache"]).parent == tmp_path / "c"
    assert text.splitlines()[-1] == (
        f"feature cache {summary['cache']}: 99 clips, {summary['frames']} frames of "
        f"{summary['preset']['n_mels']} mel bands (preset cpu), 1 bad files"
    )


def test_data_summary_reads_the_builtin_dataset_by_default(tmp_path, capsys, monkeypatch):
    """Without DIR: data/builtin-PROFILE of the current folder, or one line with the command
    that makes it (which does)."""
    monkeypatch.chdir(tmp_path)
    code, summary, _ = run_cli(capsys, "data", "summary", "--profile", "smoke")
    assert code == 1 and summary["error"] == (
        "data/builtin-smoke: no built-in dataset here; make it with: "
        "aclaudio synth --to data/builtin-smoke --profile smoke"
    )
    make = summary["error"].partition("make it with: ")[2].split()
    assert run_cli(capsys, *make[1:])[0] == 0
    code, summary, _ = run_cli(capsys, "data", "summary", "--profile", "smoke")
    assert code == 0 and summary["root"] == "data/builtin-smoke" and summary["n_classes"] == 20
    code, summary, _ = run_cli(capsys, "data", "summary")
    assert code == 1 and summary["error"].startswith("data/builtin-cpu: no built-in dataset")
    code, summary, _ = run_cli(capsys, "data", "summary", "data/builtin-smoke", "--profile", "cpu")
    assert code == 1 and summary["error"] == (
        "give DIR or --profile (the built-in dataset of a profile), not both"
    )


def test_report_prints_a_short_line(tmp_path, capsys):
    nbformat = pytest.importorskip("nbformat")
    (tmp_path / "notebooks").mkdir()
    cells = [nbformat.v4.new_markdown_cell("# A study"), nbformat.v4.new_code_cell("1 + 1")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "notebooks" / "01_a.ipynb")
    code, summary, text = run_cli(capsys, "report", "--results", tmp_path)
    assert code == 0 and summary["pages"] == ["index.html", "01_a.html"]
    size = sum(page.stat().st_size for page in (tmp_path / "report").iterdir())
    assert (
        text.splitlines()[-1] == f"report: 2 pages, {size / 1e3:,.0f} kB, in {tmp_path / 'report'}"
    )


def test_training_commands(tmp_path, capsys):
    run_cli(capsys, "synth", "--to", tmp_path / "d", "--profile", "smoke")
    common = ["--profile", "smoke", "--data-dir", tmp_path / "d", "--runs-dir", tmp_path / "r"]
    code, summary, _ = run_cli(
        capsys, "pretrain", *common, "--set", "subset=all", "--set", "epochs=1", "--seed", "3"
    )
    assert code == 0 and summary["finished_epochs"] == 1
    run_dir = summary["run_dir"]
    assert json.loads((Path(run_dir) / "config.json").read_text())["seed"] == 3
    code, again, text = run_cli(capsys, "linear-eval", run_dir)
    assert code == 0 and again["test_micro"] == summary["test_micro"]
    assert "micro accuracy" in text and "95 % CI" in text
    code, tuned, _ = run_cli(capsys, "finetune", run_dir, "--set", "epochs=2")
    assert code == 0 and tuned["kind"] == "finetune" and tuned["pretrain_run"] == Path(run_dir).name
    assert Path(tuned["run_dir"]).parent == Path(run_dir).parent
    tuning = json.loads((Path(tuned["run_dir"]) / "config.json").read_text())
    assert tuning["lr_milestones"] == [2, 4]  # the smoke profile's, its pretraining run's
    code, embedded, _ = run_cli(capsys, "embed", run_dir, "--subset", "clean")
    assert code == 0 and embedded["clips"] == 20
    code, summary, _ = run_cli(
        capsys, "supervised", *common, "--subset", "all", "--set", "epochs=1"
    )
    assert code == 0 and summary["kind"] == "supervised"


@pytest.mark.parametrize("kind", ["pretrain", "supervised"])
def test_a_profile_on_the_command_line_is_the_notebooks_run(
    kind, tiny_dataset, tmp_path, capsys, monkeypatch
):
    """`aclaudio pretrain --profile cpu` asks for the very run the notebooks' cpu profile
    trains (same config, same run folder), so either reuses the other's finished run: by
    default the paper's method, ACL at alpha 0.3 and m 0.5."""
    asked = []

    def record(config, runs_dir):
        asked.append(config)
        return runs.open_run(config, runs_dir)

    monkeypatch.setattr({"pretrain": pretrain, "supervised": supervised}[kind], kind, record)
    store = tmp_path / "runs"
    code, summary, _ = run_cli(
        capsys, kind, "--profile", "cpu", "--data-dir", tiny_dataset, "--runs-dir", store
    )
    notebooks = {
        "pretrain": grids.comparison_configs("cpu", tiny_dataset)["ACL"],
        "supervised": grids.supervised_configs("cpu", tiny_dataset),
    }[kind]
    assert code == 0 and asked[0] in notebooks
    assert summary["run_dir"] == str(runs.open_run(asked[0], store).path)
    assert runs.run_id(asked[0]) in {runs.run_id(config) for config in notebooks}


def profile_options(parser: argparse.ArgumentParser, command: str = ""):
    """(command, choices of its --profile) for every command of the parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from profile_options(sub, f"{command} {name}".strip())
        elif "--profile" in action.option_strings:
            yield command, list(action.choices)


def test_the_profile_options_are_the_table_of_profiles():
    options = dict(profile_options(cli.build_parser()))
    for command in ("synth", "data summary"):  # the built-in dataset's sizes
        assert options.pop(command) == list(synth.PROFILES)
    assert set(options) == {
        "config show",
        "pretrain",
        "supervised",
        "sweep",
        "report",
        "export",
        "runs list",
        "progress",
    }
    assert all(choices == list(PROFILES) for choices in options.values())
    assert list(grids.STUDY) == list(PROFILES)


def helps(parser: argparse.ArgumentParser, command: str = "aclaudio"):
    """(where, help text) of every argument and subcommand of the parser, all the way down."""
    for action in parser._actions:
        yield f"{command} {'/'.join(action.option_strings) or action.dest}", action.help
        if isinstance(action, argparse._SubParsersAction):
            listed = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{command} {name}", listed.get(name)
                yield from helps(sub, f"{command} {name}")


def test_every_argument_and_subcommand_says_what_it_is():
    """--help explains every argument and subcommand (-h's own text is argparse's)."""
    found = dict(helps(cli.build_parser()))
    assert [where for where, text in found.items() if not (text or "").strip()] == []
    assert len(found) > 100 and "aclaudio runs list --unfinished" in found


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "summary", "/no/such/dir"], "dataset folder not found"),
        (["pretrain", "--data-dir", ".", "--set", "alpah=1"], "unknown setting 'alpah'"),
        (["linear-eval", "/no/such/run"], "not a run folder"),
    ],
)
def test_errors_are_one_clear_line(capsys, argv, message):
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["ok"] is False and message in summary["error"]


def test_export_of_a_missing_run_is_one_line_and_writes_nothing(tmp_path, capsys):
    code, summary, _ = run_cli(capsys, "export", tmp_path / "none", "--to", tmp_path / "e.pt")
    assert code == 1 and summary["error"].startswith(f"{tmp_path / 'none'}: not a run folder")
    assert not (tmp_path / "e.pt").exists()


def test_decoded_problems_are_named_by_both_commands(tiny_dataset, tmp_path, capsys):
    train = tiny_dataset / "FSDnoisy18k.audio_train"
    sf.write(train / "1.wav", np.zeros(22050), 22050)  # 1 s of silence
    sf.write(train / "2.wav", np.full(22050, np.nan), 22050, subtype="FLOAT")
    problems = {"1.wav": "all-silent (every sample is zero)", "2.wav": "NaN or Inf samples"}
    for argv in (
        ["data", "summary", tiny_dataset],
        ["features", tiny_dataset, "--preset", "cpu", "--cache-dir", tmp_path / "c"],
    ):
        code, summary, text = run_cli(capsys, *argv)
        assert code == 0
        assert {b["fname"]: b["problem"] for b in summary["bad_files"]} == problems
        assert "train/1.wav: all-silent (every sample is zero)" in text
        assert "train/2.wav: NaN or Inf samples" in text
    code, summary, _ = run_cli(capsys, "data", "summary", tiny_dataset)
    clean = summary["subsets"]["clean"]  # 1.wav (0.5 s) and 2.wav (0.9 s) were clean clips
    assert clean["clips"] == 4 and clean["hours"] == pytest.approx(2 * 1.4 / 3600, abs=1e-4)


def test_an_unreadable_clip_is_named_with_the_reason(tiny_dataset):
    os.chmod(tiny_dataset / "FSDnoisy18k.audio_train" / "1.wav", 0)
    run = run_cli_bound_by_permissions("data", "summary", tiny_dataset, cwd=tiny_dataset)
    assert run.returncode == 0, run.stderr
    assert "train/1.wav: cannot be read (Permission denied)" in run.stdout
    bad_files = json.loads(run.stdout.splitlines()[-1])["bad_files"]
    assert bad_files == [
        {"split": "train", "fname": "1.wav", "problem": "cannot be read (Permission denied)"}
    ]


def test_a_read_only_data_folder_suggests_the_cache_variable(tiny_dataset):
    os.chmod(tiny_dataset, 0o555)
    run = run_cli_bound_by_permissions(
        "features", tiny_dataset, "--preset", "cpu", cwd=tiny_dataset
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    (error,) = run.stderr.strip().splitlines()
    assert error.startswith("aclaudio features: error: cannot create the feature cache")
    assert "Permission denied" in error and "$ACLAUDIO_CACHE" in error
    assert json.loads(run.stdout.splitlines()[-1])["ok"] is False


def test_a_finished_cache_in_a_read_only_folder_is_used(tiny_dataset, tmp_path, capsys):
    cache_dir = tmp_path / "shared-cache"
    code, built, _ = run_cli(
        capsys, "features", tiny_dataset, "--preset", "cpu", "--cache-dir", cache_dir
    )
    assert code == 0
    for folder in (cache_dir, *cache_dir.iterdir()):
        os.chmod(folder, 0o555)
    run = run_cli_bound_by_permissions(
        "features", tiny_dataset, "--preset", "cpu", "--cache-dir", cache_dir, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["cache"] == built["cache"]


def test_a_nan_loss_ends_with_one_line_and_a_json_summary(tmp_path, capsys):
    run_cli(capsys, "synth", "--to", tmp_path / "d", "--profile", "smoke")
    code, summary, _ = run_cli(
        capsys,
        "pretrain",
        "--profile",
        "smoke",
        "--data-dir",
        tmp_path / "d",
        "--runs-dir",
        tmp_path / "r",
        "--set",
        "subset=all",
        "--set",
        "lr=1e30",
    )
    assert code == 1 and not summary["ok"]
    assert "loss became nan" in summary["error"] and "last good checkpoint" in summary["error"]
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_reader_that_goes_away_gets_no_traceback(unbuffered):
    """Unbuffered, the pipe breaks inside the command's own printing: still not an error."""
    aclaudio = Path(sys.executable).parent / "aclaudio"
    out = subprocess.run(
        f"'{aclaudio}' config show --profile smoke | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": unbuffered},
    )
    assert out.returncode == 0 and out.stdout.count("\n") == 1
    assert out.stderr == "", out.stderr


def test_a_missing_optional_package_names_its_extra(tmp_path):
    """As where only the core is installed: the study's librosa cannot be imported."""
    fake = tmp_path / "librosa"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'librosa'\", name='librosa')\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "aclaudio", "bench", "features", "--out-dir", tmp_path / "b"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["error"] == (
        "this command needs the optional package 'librosa': pip install 'aclaudio[study]'"
    )


def test_help_loads_neither_torch_nor_pandas():
    """`aclaudio --help` stays well under a second: the parser needs no heavy package (measured
    0.3-0.5 s on 2 loaded cores; importing torch alone takes several seconds)."""
    script = (
        "import sys, contextlib, io\n"
        "from aclaudio import cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['--help'])\n"
        "print(sorted({'torch', 'pandas', 'numpy'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_warnings_print_as_one_line_each(tmp_path, capsys):
    """The run's warnings reach the terminal as "RunWarning: message" (no library file, line
    or source) and the JSON summary alike."""
    synth.synthesize(tmp_path / "data", profile="smoke", seed=0, progress=False)
    settings = ["subset=all", "epochs=1"]
    argv = [
        "pretrain",
        "--profile",
        "smoke",
        "--data-dir",
        tmp_path / "data",
        "--runs-dir",
        tmp_path / "runs",
    ]
    assert cli.main([str(a) for a in argv] + [f"--set={s}" for s in settings]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    lines = [line for line in re.split(r"[\r\n]", captured.err) if "Warning" in line]
    assert summary["warnings"] and lines == [f"RunWarning: {n}" for n in summary["warnings"]]
