"""The paper profile end to end at toy size, so that its path keeps working while no GPU runs
it: ResNet-18 pretraining with the ssl_paper preset (22.05 kHz audio), its fine-tuning, and
the baseline CNN with the sup_paper preset (44.1 kHz audio), each through its real recipe with
the profile's settings, only the number of epochs and the batch size made small."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
from conftest import tone, write_layout

from aclaudio.recipes.finetune import finetune
from aclaudio.recipes.pretrain import pretrain
from aclaudio.recipes.supervised import supervised
from aclaudio.training import config

CLASSES = ["Bell", "Buzz", "Chirp"]


def paper_dataset(root: Path, rate: int, seconds: tuple[float, ...]) -> Path:
    """FSDnoisy18k's layout at `rate` Hz: per class two clean and three noisy training clips
    (durations cycling through `seconds`) and two test clips, tones of the class's pitch."""
    train = ["fname,label,aso_id,manually_verified,noisy_small"]
    test = ["fname,label,aso_id"]
    for folder in ("audio_train", "audio_test"):
        (root / f"FSDnoisy18k.{folder}").mkdir(parents=True)
    for k, label in enumerate(CLASSES):
        for j in range(7):
            split = "train" if j < 5 else "test"
            name = f"{label}-{j}.wav"
            wave = tone(300 * (k + 1) * (1 + 0.05 * j), seconds[j % len(seconds)], rate)
            sf.write(root / f"FSDnoisy18k.audio_{split}" / name, wave, rate)
            if split == "train":
                train.append(f"{name},{label},/m/{k},{int(j < 2)},0")
            else:
                test.append(f"{name},{label},/m/{k}")
    return write_layout(root, train, test)


@pytest.mark.slow  # 17 s on two busy cores: ResNet-18's steps and embeddings
def test_resnet18_pretraining_and_fine_tuning_with_the_paper_settings(tmp_path):
    data = paper_dataset(tmp_path / "ssl", 22050, (1.3, 2.1, 0.8))  # 101-frame patches: ~1 s
    cfg = config.profile_config("pretrain", "paper", data_dir=str(data), epochs=2, batch_size=8)
    assert (cfg.encoder, cfg.preset, cfg.subset, cfg.monitor, cfg.knn_k, cfg.amp) == (
        "resnet18",
        "ssl_paper",
        "noisy",
        "patch_vote_z",
        200,
        False,  # float32, as the authors trained
    )
    run = pretrain(cfg, runs_dir=tmp_path / "runs", progress=False)
    summary, metrics = run.summary(), run.metrics()
    assert run.finished and summary["finished_epochs"] == 2 and summary["test_n"] == 6
    assert metrics["knn_patch_vote_z"].notna().all()  # two clean clips per class: monitored
    assert 0 <= summary["test_micro"] <= 1 and summary["test_patch_weighted"] is not None
    encoder = {k: v for k, v in run.weights()["model"].items() if k.startswith("encoder.")}
    assert encoder["encoder.stem.0.weight"].shape == (64, 1, 7, 7)  # ResNet-18's stem

    tune_cfg = config.profile_config(
        "finetune", "paper", pretrain_run=str(run.path), epochs=2, batch_size=8
    )
    assert tune_cfg.lr_milestones == (80, 160)
    tuned = finetune(tune_cfg, runs_dir=tmp_path / "runs", progress=False)
    assert tuned.finished and tuned.summary()["test_n"] == 6
    assert tuned.metrics()["lr"].tolist() == [0.01, 0.01]


def test_baseline_cnn_with_the_paper_settings(tmp_path):
    data = paper_dataset(tmp_path / "sup", 44100, (3.1, 4.3, 1.5))  # 100-frame patches: 2 s
    cfg = config.profile_config("supervised", "paper", data_dir=str(data), epochs=2, batch_size=4)
    assert (cfg.preset, cfg.subset, cfg.objective, cfg.loss.reduction) == (
        "sup_paper",
        "clean",
        "supervised_acl",
        "sum/50",
    )
    run = supervised(cfg, runs_dir=tmp_path / "runs", progress=False)
    summary, metrics = run.summary(), run.metrics()
    assert run.finished and summary["test_n"] == 6 and len(metrics) == 2
    assert metrics["val_loss"].notna().all() and summary["best_epoch"] in (0, 1)
    assert run.weights()["model"]["head.2.weight"].shape == (64, 6912)  # 96 x 100 patches
