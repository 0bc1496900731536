"""Small and lopsided subsets: every class with two clips or more is trained and validated, each
class left out of either is named in a warning and the JSON summary, and a monitor with nothing
to score keeps the last epoch, saying so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import tone, write_layout

from aclaudio import cli
from aclaudio.training import batches, runs


def labelled_dataset(root: Path, clean: dict[str, int], noisy: int = 1) -> Path:
    """`clean[label]` clean clips and `noisy` noisy clips of each class, two test clips each."""
    train_rows = ["fname,label,aso_id,manually_verified,noisy_small"]
    test_rows = ["fname,label,aso_id"]
    for folder in ("audio_train", "audio_test"):
        (root / f"FSDnoisy18k.{folder}").mkdir(parents=True)
    for k, (label, n_clean) in enumerate(clean.items()):
        for j in range(n_clean + noisy):
            name = f"{label}-{j}.wav"
            sf.write(root / "FSDnoisy18k.audio_train" / name, tone(200 * (k + 1), 0.7), 22050)
            train_rows.append(f"{name},{label},/m/{k},{int(j < n_clean)},0")
        for j in range(2):
            name = f"{label}-{j}.wav"
            sf.write(root / "FSDnoisy18k.audio_test" / name, tone(200 * (k + 1), 0.7), 22050)
            test_rows.append(f"{name},{label},/m/{k}")
    return write_layout(root, train_rows, test_rows)


def run_cli(capsys, kind: str, data_dir: Path, *settings: str) -> dict:
    argv = [kind, "--profile", "smoke", "--data-dir", data_dir, "--runs-dir", data_dir / "runs"]
    argv += [item for setting in settings for item in ("--set", setting)]
    code = cli.main([str(a) for a in argv])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["ok"], summary
    return summary


def test_the_validation_split_trains_and_validates_every_class_it_can():
    labels = np.repeat(np.arange(5), [1, 2, 3, 20, 100])
    rows = np.arange(len(labels)) * 10
    train_rows, val_rows = batches.validation_split(rows, labels, 0.15, seed=0)
    assert sorted([*train_rows, *val_rows]) == rows.tolist()
    assert np.bincount(labels[val_rows // 10]).tolist() == [0, 1, 1, 3, 15]
    assert np.bincount(labels[train_rows // 10]).tolist() == [1, 1, 2, 17, 85]


def test_whole_batches_drop_the_partial_one_but_keep_a_set_smaller_than_a_batch():
    """As the authors' drop_last, except that a validation set smaller than one batch is still
    measured (in one smaller batch) rather than not at all."""
    rng = np.random.default_rng(0)
    kept = batches.whole_batches(np.arange(10), 4, rng)
    assert len(kept) == 8 and len(set(kept)) == 8 and set(kept) <= set(range(10))
    assert sorted(batches.whole_batches(np.arange(3), 4, rng)) == [0, 1, 2]
    assert len(batches.whole_batches(np.arange(0), 4, rng)) == 0


def test_a_subset_smaller_than_its_classes_over_the_fraction_trains(tmp_path, capsys):
    """13 classes of 5 clean clips: 15 % is 10 clips, fewer than the classes."""
    data_dir = labelled_dataset(tmp_path, {f"C{k}": 5 for k in range(13)})
    summary = run_cli(capsys, "supervised", data_dir, "epochs=1")
    assert summary["warnings"] == [] and summary["best_val_loss"] is not None


def test_classes_never_trained_or_never_validated_are_named(tmp_path, capsys):
    data_dir = labelled_dataset(tmp_path, {"Lone": 1, "Absent": 0, "Pair": 2, "Many": 7})
    summary = run_cli(capsys, "supervised", data_dir, "epochs=1")
    assert [note.split(": ", 1)[1] for note in summary["warnings"]] == [
        "1 of 4 classes have no training clip and are never trained: Absent",
        "1 of 4 classes lack a validation clip: Lone",
    ]


def test_without_validation_clips_the_last_epoch_is_kept(tmp_path, capsys):
    data_dir = labelled_dataset(tmp_path, {"A": 1, "B": 1, "C": 1})
    summary = run_cli(capsys, "supervised", data_dir, "epochs=2")
    assert summary["best_epoch"] == 1 and summary["best_val_loss"] is None
    assert "no class has a validation clip" in summary["warnings"][-1]
    assert "the last one is kept" in summary["warnings"][-1]


@pytest.mark.parametrize(
    ("clean", "warnings", "best_kept"),
    [
        (
            {"A": 1, "B": 1},
            [
                "2 of 2 classes lack two 'clean' clips for the kNN monitor: A, B",
                "no class has two 'clean' clips for the kNN monitor, so the monitor "
                "cannot choose an epoch: the last one is kept",
            ],
            False,
        ),
        ({"A": 1, "B": 10}, ["1 of 2 classes lack two 'clean' clips for the kNN monitor: A"], True),
    ],
)
def test_the_knn_monitor_scores_what_it_can_else_keeps_the_last_epoch(
    tmp_path, capsys, clean, warnings, best_kept
):
    data_dir = labelled_dataset(tmp_path, clean, noisy=4)
    summary = run_cli(capsys, "pretrain", data_dir, "epochs=2", "batch_size=4")
    assert [note.split(": ", 1)[1] for note in summary["warnings"]] == warnings
    run = runs.load_run(summary["run_dir"])
    assert (run.path / "best.pt").exists() == best_kept
    assert np.isfinite(run.metrics()["knn_balanced_acc"]).all() == best_kept
    if not best_kept:
        assert summary["best_epoch"] == 1


def test_few_monitor_clips_warn_and_monitor_last_keeps_the_last_epoch(tmp_path, capsys):
    """Two classes of 3 clean clips: the monitor's choice would be chance, and a warning says
    so; with monitor=last the last epoch is evaluated, both kNN scores still logged."""
    data_dir = labelled_dataset(tmp_path, {"A": 3, "B": 3}, noisy=4)
    settings = ("epochs=3", "batch_size=4")
    summary = run_cli(capsys, "pretrain", data_dir, *settings)
    (note,) = summary["warnings"]
    assert "3.0 'clean' clips per class, fewer than 5" in note and "monitor=last" in note

    summary = run_cli(capsys, "pretrain", data_dir, *settings, "monitor=last")
    run = runs.load_run(summary["run_dir"])
    assert summary["warnings"] == [] and summary["best_epoch"] == 2
    assert not (run.path / "best.pt").exists()
    metrics = run.metrics()
    assert np.isfinite(metrics[["knn_patch_vote_z", "knn_clip_mean_h"]]).all(axis=None)
    assert "knn_balanced_acc" not in metrics
