"""The training engine end to end on the smoke dataset: runs, reuse, kill and resume, NaN."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from aclaudio.data import synth
from aclaudio.data.cache import FeatureCache
from aclaudio.evaluation import probe
from aclaudio.nn import models
from aclaudio.nn.objectives import ACL
from aclaudio.recipes.finetune import finetune
from aclaudio.recipes.pretrain import pretrain
from aclaudio.recipes.supervised import supervised
from aclaudio.training import config, loop, results, runs


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    synth.synthesize(root, profile="smoke", seed=0, progress=False)
    return root


def smoke_pretrain(data_dir, **overrides):
    settings = dict(data_dir=str(data_dir), subset="all", epochs=3, knn_every=1) | overrides
    return config.profile_config("pretrain", "smoke", **settings)


def weights(run: runs.Run) -> dict[str, torch.Tensor]:
    return run.load_checkpoint("last")["model"]


def test_pretrain_runs_evaluates_and_is_reused(smoke_data, tmp_path):
    cfg = smoke_pretrain(smoke_data, alpha=0.5)
    run = pretrain(cfg, runs_dir=tmp_path, progress=False)
    summary = run.summary()
    assert run.finished and summary["finished_epochs"] == 3
    assert (
        0 <= summary["test_micro_low"] <= summary["test_micro"] <= summary["test_micro_high"] <= 1
    )
    assert summary["test_n"] == 40 and -4 <= summary["uniformity"] <= 0
    metrics = run.metrics()
    assert metrics["epoch"].tolist() == [0, 1, 2] and np.isfinite(metrics["loss"]).all()
    assert (run.path / "test_embeddings.npz").is_file() and (run.path / "evaluation.json").is_file()
    table = results.load_results(tmp_path)
    assert table["run"].tolist() == [run.id] and table["alpha"].tolist() == [0.5]

    stamp = (run.path / "finished.json").stat().st_mtime_ns
    again = pretrain(cfg, runs_dir=tmp_path, progress=False)  # finished: nothing to do
    assert again.path == run.path and (run.path / "finished.json").stat().st_mtime_ns == stamp
    assert len(results.load_results(tmp_path)) == 1


def test_a_step_budget_trains_exactly_that_many_steps_and_snapshots(smoke_data, tmp_path):
    cfg = smoke_pretrain(smoke_data, alpha=0.3, steps=7, snapshot_steps=(5,))
    run = pretrain(cfg, runs_dir=tmp_path, progress=False)  # 3 steps an epoch
    assert run.summary()["finished_steps"] == 7 and run.summary()["finished_epochs"] == 3
    metrics = run.metrics()
    assert metrics["steps"].tolist() == [3, 6, 7]  # the last epoch cut short
    assert (metrics[["grad_ntxent", "grad_angular"]] > 0).all(axis=None)
    assert sorted(p.name for p in run.path.glob("step-*.pt")) == ["step-6.pt"]  # epoch's end
    curve = probe.curve(run, progress=False)
    assert curve["step"].tolist() == [6] and 0 <= curve["test_micro"].item() <= 1
    with pytest.raises(ValueError, match="steps must be 0"):
        smoke_pretrain(smoke_data, epochs=0, steps=5)  # random init cannot have a budget


def test_every_loss_starts_from_the_same_weights(smoke_data):
    device = torch.device("cpu")
    a = models.build_contrastive_model(smoke_pretrain(smoke_data, alpha=1.0), device)
    b = models.build_contrastive_model(smoke_pretrain(smoke_data, alpha=0.0, margin=1.0), device)
    c = models.build_contrastive_model(smoke_pretrain(smoke_data, seed=1), device)
    for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(wa, wb), name
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters(), strict=True))


RESUMABLE = """
import sys, time
from aclaudio.training import config
from aclaudio.recipes import pretrain
if len(sys.argv) > 3:  # slow each step down so that the kill surely lands mid-epoch
    step = pretrain.contrastive_step
    pretrain.contrastive_step = lambda *a, **k: (time.sleep(0.2), step(*a, **k))[1]
cfg = config.profile_config("pretrain", "smoke", data_dir=sys.argv[1], subset="all", epochs=6,
                            knn_every=2)
pretrain.pretrain(cfg, runs_dir=sys.argv[2], progress=False)
"""


def test_killed_pretraining_resumes_to_the_same_weights(smoke_data, tmp_path):
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-c", RESUMABLE, str(smoke_data), str(killed_dir), "slow"]
    )
    deadline = time.monotonic() + 120
    while not list(killed_dir.glob("*/last.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # inside the second epoch (3 steps of at least 0.2 s each)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    (run_dir,) = killed_dir.glob("pretrain-*")
    assert not (run_dir / "finished.json").exists()
    assert runs.load_run(run_dir).load_checkpoint()["epoch"] == 0  # killed during epoch 1

    subprocess.run([sys.executable, "-c", RESUMABLE, str(smoke_data), str(killed_dir)], check=True)
    straight_dir = tmp_path / "straight"
    subprocess.run(
        [sys.executable, "-c", RESUMABLE, str(smoke_data), str(straight_dir)], check=True
    )
    resumed, straight = (
        runs.load_run(run_dir),
        runs.load_run(next(straight_dir.glob("pretrain-*"))),
    )
    assert resumed.finished and straight.finished
    for (name, a), b in zip(weights(resumed).items(), weights(straight).values(), strict=True):
        assert torch.equal(a, b), name
    assert resumed.metrics()["epoch"].tolist() == list(range(6))
    assert resumed.summary()["test_micro"] == straight.summary()["test_micro"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(smoke_data, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_terms = ACL.terms

    def terms_that_explode(self, *args):
        calls["n"] += 1
        terms = real_terms(self, *args)
        return {k: t * torch.nan for k, t in terms.items()} if calls["n"] > 4 else terms

    monkeypatch.setattr(ACL, "terms", terms_that_explode)  # epoch 0 has 3 steps
    cfg = smoke_pretrain(smoke_data)
    with pytest.raises(loop.TrainingError, match="loss became nan at epoch 1, step 1"):
        pretrain(cfg, runs_dir=tmp_path, progress=False)
    run = runs.open_run(cfg, tmp_path)
    assert run.load_checkpoint()["epoch"] == 0 and not run.finished
    monkeypatch.setattr(ACL, "terms", real_terms)
    assert pretrain(cfg, runs_dir=tmp_path, progress=False).finished  # resumes from epoch 1


def test_supervised_runs_with_validation_split(smoke_data, tmp_path):
    cfg = config.profile_config(
        "supervised", "smoke", data_dir=str(smoke_data), subset="all", alpha=0.7, epochs=3
    )
    run = supervised(cfg, runs_dir=tmp_path, progress=False)
    summary, metrics = run.summary(), run.metrics()
    assert run.finished and summary["test_n"] == 40
    assert summary["best_val_loss"] == pytest.approx(metrics["val_loss"].min())
    assert summary["best_epoch"] == int(metrics["val_loss"].idxmin())
    assert 0 <= summary["test_micro"] <= 1


@pytest.mark.parametrize("end_patch", [False, True])
def test_supervised_test_drops_the_remainder_as_the_authors_do(
    smoke_data, tmp_path, monkeypatch, end_patch
):
    """The authors test on length // patch non-overlapping patches; test_end_patch adds one
    aligned to the clip's end where a remainder is left."""
    counted = {}
    real = FeatureCache.clip_patches

    def counting(cache, row, frames=None, hop=None, **kwargs):
        patches = real(cache, row, frames, hop, **kwargs)
        counted[row] = (len(patches), int(cache.clips["length"][row]), cache.preset.patch_frames)
        return patches

    monkeypatch.setattr(FeatureCache, "clip_patches", counting)
    cfg = config.profile_config(
        "supervised",
        "smoke",
        data_dir=str(smoke_data),
        subset="all",
        epochs=1,
        test_end_patch=end_patch,
    )
    supervised(cfg, runs_dir=tmp_path, progress=False)
    assert len(counted) == 40  # every test clip, once
    with_remainder = 0
    for n, length, frames in counted.values():
        whole, rest = divmod(length, frames)
        assert n == max(whole, 1) + (end_patch and whole >= 1 and rest > 0), (n, length, frames)
        with_remainder += whole >= 1 and rest > 0
    assert with_remainder > 0  # the smoke set has clips whose remainder the test drops


@pytest.mark.parametrize("alpha", [1.0, 0.7])
def test_supervised_validation_loss_is_on_the_training_scale(smoke_data, tmp_path, alpha):
    """The angular term is a sum over a batch's pairs: measured in batches larger than the
    training ones, it grows with the square of their size.

    Batches of 4 and patches every 16 frames make the validation set a few batches long; a
    margin of 2 rad counts nearly every different-label pair, as the paper's scale does the
    same-label ones (the smoke validation set holds one clip per class).
    """
    cfg = config.profile_config(
        "supervised",
        "smoke",
        data_dir=str(smoke_data),
        subset="all",
        alpha=alpha,
        epochs=2,
        margin=2.0,
        batch_size=4,
        train_hop=16,
    )
    metrics = supervised(cfg, runs_dir=tmp_path, progress=False).metrics()
    assert (metrics["val_loss"] / metrics["loss"]).between(1 / 3, 3).all(), metrics


def test_bad_configs_fail_clearly(smoke_data, tmp_path):
    with pytest.raises(ValueError, match="no data_dir"):
        pretrain(config.profile_config("pretrain", "smoke"), runs_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size 512 exceeds the 60 training clips"):
        pretrain(smoke_pretrain(smoke_data, batch_size=512), runs_dir=tmp_path)


def test_finetune_trains_all_layers_and_resumes(smoke_data, tmp_path):
    parent = pretrain(smoke_pretrain(smoke_data, epochs=1), runs_dir=tmp_path, progress=False)
    tune = config.make_config("finetune", pretrain_run=str(parent.path), epochs=3, batch_size=16)
    run = finetune(tune, runs_dir=tmp_path, progress=False)
    summary, metrics = run.summary(), run.metrics()
    assert run.finished and summary["pretrain_run"] == parent.id and summary["test_n"] == 40
    assert summary["best_epoch"] == int(metrics["monitor_macro"].idxmax())  # balanced accuracy
    tuned = run.load_checkpoint("last")["model"]
    pretrained = parent.weights()["model"]
    first_conv = next(k for k in pretrained if k.startswith("encoder.") and k.endswith("weight"))
    assert not torch.equal(tuned[first_conv], pretrained[first_conv])  # the encoder trained
    unfinished = config.make_config("finetune", pretrain_run=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        finetune(unfinished, runs_dir=tmp_path)
