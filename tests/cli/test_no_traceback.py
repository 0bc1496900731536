"""No traceback from any command: a damaged store, a full disk, a read-only or wrong target and
bad settings each end with the JSON summary ("ok": false, one line saying what failed), and a
failure nobody foresaw leaves its traceback in a log file that the line names."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli_bound_by_permissions

from aclaudio import cli
from aclaudio.cli import commands
from aclaudio.data import synth


def run(capsys, *argv) -> tuple[int, dict, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out.strip().splitlines()[-1]), captured.err


def pretrain_args(data: Path, store: Path, *settings: str) -> list:
    sets = [f"--set={s}" for s in ("subset=all", "epochs=1", *settings)]
    return ["pretrain", "--profile", "smoke", "--data-dir", data, "--runs-dir", store, *sets]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("store").resolve()
    synth.synthesize(root / "data", profile="smoke", seed=0, progress=False)
    assert cli.main([str(a) for a in pretrain_args(root / "data", root / "runs")]) == 0
    (run_dir,) = (root / "runs").glob("pretrain-*")
    return run_dir, root / "data"


@pytest.fixture
def store(finished, tmp_path):
    run_dir, data = finished
    shutil.copytree(run_dir.parent, tmp_path / "runs")
    return tmp_path / "runs" / run_dir.name, data


def one_line_failure(code: int, summary: dict, err: str) -> str:
    assert code == 1 and summary["ok"] is False, summary
    assert "\n" not in summary["error"] and "Traceback" not in err, err
    return summary["error"]


DAMAGE = {
    "config.json": lambda f: f.write_text("{"),
    "metrics.csv": lambda f: f.write_text(""),
    "last.pt": lambda f: f.write_bytes(f.read_bytes()[:50]),
}
COMMANDS = {
    "linear-eval": lambda run_dir, data: ["linear-eval", run_dir],
    "finetune": lambda run_dir, data: ["finetune", run_dir, "--set", "epochs=1"],
    "embed": lambda run_dir, data: ["embed", run_dir],
    "export": lambda run_dir, data: ["export", run_dir, "--to", run_dir.parent / "e.pt"],
    "pretrain": lambda run_dir, data: pretrain_args(data, run_dir.parent),
}


@pytest.mark.parametrize("damaged", DAMAGE)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_on_a_damaged_run_ends_with_its_summary(store, capsys, damaged, command):
    run_dir, data = store
    (run_dir / "finished.json").unlink()  # unfinished: every file is read
    DAMAGE[damaged](run_dir / damaged)
    code, summary, err = run(capsys, *COMMANDS[command](run_dir, data))
    if code == 1:  # the file it read and found damaged, or why it would not start
        error = one_line_failure(code, summary, err)
        assert damaged in error or "pretraining has not finished" in error, error
    assert "Traceback" not in err and summary["ok"] == (code == 0)


def test_a_full_disk_during_a_checkpoint_is_one_line(finished, tmp_path, capsys, monkeypatch):
    """A 256 kB tmpfs where the test may mount one (a real full disk), else a writer that
    fails as torch's does on one."""
    _, data = finished
    store = tmp_path / "small"
    store.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(store)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        import torch

        def full(*args, **kwargs):
            raise RuntimeError("[enforce fail at inline_container.cc:626] . basic_ios::clear")

        monkeypatch.setattr(torch, "save", full)
    try:
        code, summary, err = run(capsys, *pretrain_args(data, store))
    finally:
        if mounted:
            subprocess.run(["umount", str(store)], check=True)
    error = one_line_failure(code, summary, err)
    assert "could not be written" in error and ".pt" in error


def test_export_to_a_folder_or_a_read_only_place_is_one_line(finished, tmp_path, capsys):
    run_dir, _ = finished
    (tmp_path / "folder").mkdir()
    code, summary, err = run(capsys, "export", run_dir, "--to", tmp_path / "folder")
    assert "is a folder; give the file to write" in one_line_failure(code, summary, err)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    out = run_cli_bound_by_permissions("export", run_dir, "--to", locked / "e.pt", cwd=tmp_path)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{locked / 'e.pt'}" in summary["error"] and "\n" not in summary["error"]


def test_a_checkpoint_of_another_model_is_one_line(store, capsys):
    run_dir, _ = store
    import torch

    state = torch.load(run_dir / "last.pt", weights_only=True)
    state["model"] = {"classifier.weight": torch.zeros(3, 3)}  # a supervised run's, say
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).exists():
            torch.save(state, run_dir / name)
    code, summary, err = run(capsys, "export", run_dir, "--to", run_dir.parent / "e.pt")
    assert "does not fit the run's model" in one_line_failure(code, summary, err)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("batch_size=0", "batch_size must be at least 1, got 0"),
        ("epochs=-1", "epochs must be at least 0, got -1"),
        ("alpha=2", "alpha must lie in [0.0, 1.0], got 2.0"),
    ],
)
def test_bad_settings_fail_in_one_line_before_anything_is_written(
    finished, tmp_path, capsys, setting, message
):
    _, data = finished
    code, summary, err = run(capsys, *pretrain_args(data, tmp_path / "runs", setting))
    assert message in one_line_failure(code, summary, err)
    assert not (tmp_path / "runs").exists()


def test_a_missing_data_folder_leaves_no_run_folder(tmp_path, capsys):
    code, summary, err = run(capsys, *pretrain_args(tmp_path / "nowhere", tmp_path / "runs"))
    assert "metadata file not found" in one_line_failure(code, summary, err)
    assert not (tmp_path / "runs").exists()


def test_a_failure_nobody_foresaw_keeps_its_traceback_in_a_log(tmp_path, capsys, monkeypatch):
    def broken(args):
        return {}["missing key"]

    monkeypatch.setattr(commands, "runs_rebuild", broken)
    code, summary, err = run(capsys, "runs", "rebuild", "--runs-dir", tmp_path)
    error = one_line_failure(code, summary, err)
    assert error.startswith("KeyError: 'missing key' (the traceback is in ")
    log = Path(error.rsplit("the traceback is in ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text() and "broken" in log.read_text()
    log.unlink()


def test_a_finished_run_reads_from_a_read_only_store(finished, tmp_path):
    """No run.lock, no config.json rewritten: a finished run is reused without writing; a
    linear evaluation, which writes, says so before computing anything."""
    run_dir, data = finished
    shutil.copytree(run_dir.parent, tmp_path / "runs")
    for path in [tmp_path / "runs", *(tmp_path / "runs").rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    out = run_cli_bound_by_permissions(*pretrain_args(data, tmp_path / "runs"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-500:]
    out = run_cli_bound_by_permissions(
        "linear-eval", tmp_path / "runs" / run_dir.name, cwd=tmp_path
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 1 and "read-only, and linear-eval writes" in summary["error"]
