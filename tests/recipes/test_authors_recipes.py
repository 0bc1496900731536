"""The recipes follow the authors' code where docs/protocol.md says they match: the supervised
normalisation fitted on the training patches, evaluation patches without an end-aligned one,
and the fine-tuning's step schedule and balanced-accuracy selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler

from aclaudio.data import synth
from aclaudio.data.cache import FeatureCache
from aclaudio.evaluation.monitor import knn_rows
from aclaudio.recipes import finetune as finetune_recipe
from aclaudio.recipes import supervised as supervised_recipe
from aclaudio.recipes.pretrain import pretrain
from aclaudio.training import batches, config
from aclaudio.training.loop import config_sgd


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    synth.synthesize(root, profile="smoke", seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def smoke_parent(smoke_data, tmp_path_factory):
    """A finished smoke pretraining to fine-tune."""
    cfg = config.profile_config("pretrain", "smoke", data_dir=str(smoke_data), epochs=1)
    return pretrain(cfg, runs_dir=tmp_path_factory.mktemp("runs"), progress=False)


def test_supervised_normalisation_is_a_scaler_fitted_on_the_training_patches(
    smoke_data, tmp_path, monkeypatch
):
    """SUP create_data.py: StandardScaler on the patches j * 50 .. j * 50 + patch of the training
    clips left after the validation split, applied to training and test alike."""
    seen = {}
    real_step, real_report = supervised_recipe.labelled_step, supervised_recipe.clip_report

    def step(*args, normaliser, **kwargs):
        seen["train"] = [t.numpy() for t in normaliser]
        return real_step(*args, normaliser=normaliser, **kwargs)

    def report(model, data, *args, **kwargs):
        seen["test"] = [data.mean, data.std]
        return real_report(model, data, *args, **kwargs)

    monkeypatch.setattr(supervised_recipe, "labelled_step", step)
    monkeypatch.setattr(supervised_recipe, "clip_report", report)
    cfg = config.profile_config(
        "supervised", "smoke", data_dir=str(smoke_data), subset="all", epochs=1, seed=3
    )
    supervised_recipe.supervised(cfg, runs_dir=tmp_path, progress=False)

    data = batches.TrainingData.load(cfg, progress=False)
    train_rows, _ = batches.validation_split(
        data.train_rows, data.targets(data.train_rows), cfg.val_fraction, cfg.seed
    )
    frames, hop = data.cache.preset.patch_frames, cfg.train_hop
    lengths = data.cache.clips["length"].to_numpy()
    pairs = [
        (row, j * hop)
        for row in train_rows
        for j in range(max(1, math.ceil((lengths[row] - frames) / hop)))
    ]
    stacked = np.concatenate([data.cache.patches_at([r], [s], frames)[0].T for r, s in pairs])
    scaler = StandardScaler().fit(stacked)
    for used in ("train", "test"):
        np.testing.assert_allclose(seen[used][0], scaler.mean_, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(seen[used][1], scaler.scale_, rtol=1e-5)


def grid(length: int, frames: int, hop: int, end_patch: bool) -> int:
    """How many evaluation patches a clip has, by hand: every hop frames while they fit, plus
    one aligned to the end where frames remain (end_patch), at least one."""
    whole = max(length - frames, 0) // hop + 1
    return whole + (end_patch and length > frames and (length - frames) % hop > 0)


@pytest.mark.parametrize("end_patch", [False, True])
def test_monitor_and_linear_evaluation_use_the_configured_patch_grid(
    smoke_data, tmp_path, monkeypatch, end_patch
):
    """The authors' grid (no end-aligned patch) unless eval_end_patch: in the kNN monitor and in
    the linear evaluation's training, selection and test clips."""
    counted = []
    real = FeatureCache.clip_patches

    def counting(cache, row, frames=None, hop=None, **kwargs):
        patches = real(cache, row, frames, hop, **kwargs)
        counted.append((len(patches), int(cache.clips["length"][row]), kwargs["end_patch"]))
        return patches

    monkeypatch.setattr(FeatureCache, "clip_patches", counting)
    cfg = config.profile_config(
        "pretrain",
        "smoke",
        data_dir=str(smoke_data),
        epochs=1,
        monitor_subset="all",  # three clips per class: the monitor scores every clip
        eval_end_patch=end_patch,
    )
    data = batches.TrainingData.load(cfg, progress=False)
    assert data.end_patch is end_patch
    run = pretrain(cfg, runs_dir=tmp_path, progress=False)
    assert np.isfinite(run.metrics()["knn_patch_vote_z"]).all()
    # the monitor's clips, then the linear evaluation's training, selection and test clips
    roles = (knn_rows(data), data.train_rows, data.monitor_rows, data.test_rows)
    assert len(counted) == sum(len(rows) for rows in roles) > 200
    assert {used for _, _, used in counted} == {end_patch}
    frames, hop = data.cache.preset.patch_frames, data.cache.preset.eval_hop
    for n, length, _ in counted:
        assert n == grid(length, frames, hop, end_patch), (n, length)
    extra = [grid(n, frames, hop, True) - grid(n, frames, hop, False) for _, n, _ in counted]
    assert sum(extra) > 0  # the smoke set has clips that an end-aligned patch would add to


def test_the_paper_fine_tuning_is_the_authors_recipe():
    """SSL config/params_supervised_finetune.yaml: SGD lr 0.01, momentum 0.9, wd 1e-4, batch
    128, 200 epochs (range(1, 201)), MultiStepLR [80, 160] stepped after each epoch."""
    paper = config.profile_config("finetune", "paper")
    assert (paper.epochs, paper.batch_size, paper.lr, paper.momentum, paper.weight_decay) == (
        200,
        128,
        0.01,
        0.9,
        1e-4,
    )
    assert (paper.lr_milestones, paper.lr_gamma) == ((80, 160), 0.1)
    optimizer, scheduler = config_sgd(torch.nn.Linear(2, 2).parameters(), paper)
    rates = []
    for _ in range(paper.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(rates, [0.01] * 80 + [0.001] * 80 + [0.0001] * 40, rtol=1e-9)
    for profile in ("cpu", "smoke"):  # the same shape: steps after 40 % and 80 % of the epochs
        cfg = config.profile_config("finetune", profile)
        assert cfg.lr_milestones == (round(0.4 * cfg.epochs), round(0.8 * cfg.epochs))
        assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.lr_gamma) == (0.01, 0.9, 1e-4, 0.1)


def test_fine_tuning_steps_the_rate_and_keeps_the_epoch_of_best_balanced_accuracy(
    smoke_parent, tmp_path, monkeypatch
):
    """Scripted monitor scores where micro and balanced accuracy disagree: balanced accuracy
    chooses, the first of equal epochs (SSL main_train.py: acc_val_balanced > best)."""
    macro = [0.2, 0.5, 0.4, 0.5, 0.3]
    micro = [0.9, 0.1, 0.8, 0.95, 0.2]  # micro accuracy would choose epoch 3
    real = finetune_recipe.clip_report

    def report(model, data, rows, *args, **kwargs):
        result = real(model, data, rows, *args, **kwargs)
        if rows is data.monitor_rows:
            epoch = report.calls
            report.calls += 1
            return result | {"macro": macro[epoch], "micro": micro[epoch]}
        return result

    report.calls = 0
    monkeypatch.setattr(finetune_recipe, "clip_report", report)
    cfg = config.profile_config("finetune", "smoke", pretrain_run=str(smoke_parent.path))
    run = finetune_recipe.finetune(cfg, runs_dir=tmp_path, progress=False)
    metrics = run.metrics()
    assert run.summary()["best_epoch"] == 1
    assert metrics["monitor_macro"].tolist() == macro and metrics["monitor_micro"].tolist() == micro
    # smoke: 5 epochs, x0.1 after epochs 2 and 4 (40 % and 80 %); the rate each epoch trained at
    np.testing.assert_allclose(metrics["lr"], [0.01, 0.01, 0.001, 0.001, 0.0001], rtol=1e-9)
