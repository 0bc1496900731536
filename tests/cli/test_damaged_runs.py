"""Damaged checkpoints: the documented fallback (best, else last) is taken and stated; where
no checkpoint can be read, every command stops with one line naming the files and how to
retrain, and its JSON summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aclaudio import cli
from aclaudio.data import synth


def run_cli(capsys, *argv) -> tuple[int, dict, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out.strip().splitlines()[-1]), captured.err


def truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:100])


def pretrain_args(data_dir: Path, runs_dir: Path) -> list:
    """`aclaudio pretrain` of a one-epoch run whose monitor can score (so it keeps a best.pt)."""
    return [
        "pretrain",
        "--profile",
        "smoke",
        "--data-dir",
        data_dir,
        "--runs-dir",
        runs_dir,
        "--set",
        "subset=all",
        "--set",
        "monitor_subset=all",
        "--set",
        "epochs=1",
    ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run (best.pt and last.pt, no older last) and its dataset."""
    root = tmp_path_factory.mktemp("damaged").resolve()
    synth.synthesize(root / "data", profile="smoke", seed=0, progress=False)
    assert cli.main([str(a) for a in pretrain_args(root / "data", root / "runs")]) == 0
    (run_dir,) = (root / "runs").glob("pretrain-*")
    assert {f.name for f in run_dir.glob("*.pt")} == {"best.pt", "last.pt"}
    return run_dir, root / "data"


@pytest.fixture
def damaged_copy(finished, tmp_path):
    """A copy of the finished run in a store of its own, to damage, and the pretrain command."""
    run_dir, data_dir = finished
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy, pretrain_args(data_dir, copy.parent)


COMMANDS = {
    "linear-eval": lambda run_dir, pretrain: ["linear-eval", run_dir],
    "embed": lambda run_dir, pretrain: ["embed", run_dir, "--subset", "clean"],
    "pretrain": lambda run_dir, pretrain: pretrain,
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_best_falls_back_to_last_and_says_so(damaged_copy, capsys, command):
    run_dir, pretrain = damaged_copy
    truncate(run_dir / "best.pt")
    code, summary, _ = run_cli(capsys, *COMMANDS[command](run_dir, pretrain))
    assert code == 0 and summary["ok"], summary
    (warning,) = [w for w in summary["warnings"] if "best.pt" in w]
    assert "best.pt is unreadable" in warning and "using last.pt (epoch 0)" in warning
    assert str(run_dir) in warning


@pytest.mark.parametrize("command", COMMANDS)
def test_no_readable_checkpoint_stops_with_one_line(damaged_copy, capsys, command):
    run_dir, pretrain = damaged_copy
    truncate(run_dir / "best.pt")
    truncate(run_dir / "last.pt")
    code, summary, err = run_cli(capsys, *COMMANDS[command](run_dir, pretrain))
    assert code == 1 and summary["ok"] is False
    error = summary["error"]
    assert "best.pt is unreadable" in error and "last.pt is unreadable" in error
    assert f"delete {run_dir} and rerun" in error and "\n" not in error
    assert f"error: {error}" in err and "Traceback" not in err


def test_an_unfinished_run_with_a_damaged_best_finishes_on_last(damaged_copy, capsys):
    run_dir, pretrain = damaged_copy
    (run_dir / "finished.json").unlink()
    truncate(run_dir / "best.pt")
    code, summary, _ = run_cli(capsys, *pretrain)
    assert code == 0 and summary["best_epoch"] == 0 and (run_dir / "finished.json").is_file()
    assert any("best.pt is unreadable" in w and "using last.pt" in w for w in summary["warnings"])


def test_an_unfinished_run_without_a_readable_last_stops_at_once(damaged_copy, capsys):
    run_dir, pretrain = damaged_copy
    (run_dir / "finished.json").unlink()
    truncate(run_dir / "last.pt")
    metrics = (run_dir / "metrics.csv").read_text()
    code, summary, err = run_cli(capsys, *pretrain)
    assert code == 1 and "last.pt is unreadable" in summary["error"]
    assert f"delete {run_dir} and rerun" in summary["error"] and "Traceback" not in err
    assert (run_dir / "metrics.csv").read_text() == metrics and not (
        run_dir / "finished.json"
    ).exists()
