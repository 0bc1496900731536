"""Configs, overrides and hashing; the run store, checkpoints and the results table."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from aclaudio.data import folders, layout, synth
from aclaudio.data.datasets import DatasetError
from aclaudio.recipes.pretrain import pretrain
from aclaudio.training import config, results, runs


def test_paper_profile_carries_the_paper_settings():
    paper = config.profile_config("pretrain", "paper")
    assert (paper.encoder, paper.preset, paper.epochs, paper.batch_size) == (
        "resnet18",
        "ssl_paper",
        500,
        128,
    )
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.lr_milestones) == (
        0.03,
        0.9,
        1e-4,
        (325, 425),
    )
    assert (paper.loss.temperature, paper.loss.margin, paper.loss.reduction, paper.knn_k) == (
        0.2,
        0.5,
        "sum/25",
        200,
    )
    assert (paper.augment.mixback, paper.augment.compander, paper.augment.noise) == (
        0.05,
        0.75,
        0.01,
    )
    assert paper.augment.specaugment is False
    sup = config.profile_config("supervised", "paper")
    assert (sup.preset, sup.batch_size, sup.lr, sup.weight_decay, sup.loss.reduction) == (
        "sup_paper",
        64,
        1e-3,
        1e-3,
        "sum/50",
    )
    tune = config.profile_config("finetune", "paper")
    assert (tune.epochs, tune.batch_size, tune.lr, tune.lr_milestones) == (
        200,
        128,
        0.01,
        (80, 160),
    )
    # the authors' evaluation patches: no end-aligned one, in every profile
    for profile in ("paper", "cpu", "smoke"):
        assert config.profile_config("pretrain", profile).eval_end_patch is False
        assert config.profile_config("supervised", profile).test_end_patch is False
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        config.profile_config("pretrain", "huge")


def test_overrides_are_typed_and_checked():
    base = config.profile_config("pretrain", "cpu")
    changed = config.with_overrides(
        base,
        [
            "alpha=0.3",
            "margin=1",
            "lr_milestones=[3, 4]",
            "augment.noise=0",
            "reduction=mean",
            "projection=false",
        ],
    )
    assert (
        changed.loss.alpha == 0.3
        and changed.loss.margin == 1.0
        and isinstance(changed.loss.margin, float)
    )
    assert changed.lr_milestones == (3, 4) and changed.augment.noise == 0.0
    assert changed.loss.reduction == "mean" and changed.projection is False
    with pytest.raises(ValueError, match="unknown setting 'alpah'"):
        config.with_overrides(base, ["alpah=0.3"])
    with pytest.raises(ValueError, match="epochs: expected int, got '2.5'"):
        config.with_overrides(base, ["epochs=2.5"])
    with pytest.raises(ValueError, match="projection: expected bool"):
        config.with_overrides(base, ["projection=maybe"])
    with pytest.raises(ValueError, match="unknown setting"):
        config.with_overrides(base, ["no-equals-sign"])


def test_hash_names_what_changes_the_result():
    base = config.profile_config("pretrain", "cpu", data_dir="/d")
    same = dataclasses.replace(base, device="cuda", compile=True)
    assert config.config_hash(base) == config.config_hash(same)
    assert config.config_hash(base) != config.config_hash(dataclasses.replace(base, seed=1))
    noisy = config.with_overrides(base, ["augment.noise=0.02"])
    assert config.config_hash(base) != config.config_hash(noisy)
    # a config read back from its JSON hashes the same
    values = json.loads(json.dumps(config.config_dict(base)))
    assert config.config_hash(config.make_config("pretrain", **values)) == config.config_hash(base)


def test_a_protocol_revision_renames_the_runs_of_its_kind_only(monkeypatch):
    """Supervised runs compute otherwise since revision 1 (the authors' normalisation, patches
    and initialisation) with the same settings: their ids change, so stored runs train again."""
    sup = config.profile_config("supervised", "cpu", data_dir="/d")
    pre = config.profile_config("pretrain", "cpu", data_dir="/d")
    assert config.SupervisedConfig.REVISION == 1 and not hasattr(config.PretrainConfig, "REVISION")
    revised = config.config_hash(sup), config.config_hash(pre)
    monkeypatch.setattr(config.SupervisedConfig, "REVISION", 0)
    assert config.config_hash(sup) != revised[0] and config.config_hash(pre) == revised[1]


def test_run_store_location(tmp_path, monkeypatch):
    monkeypatch.setenv(folders.RUNS_ENV, str(tmp_path / "shared"))
    assert folders.runs() == tmp_path / "shared"
    assert folders.runs(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv(folders.RUNS_ENV)
    assert folders.runs() == Path("runs")
    assert folders.runs(home=tmp_path) == tmp_path / "runs"
    assert folders.data(home="..") == Path("../data")
    assert folders.results() == Path("results")


def test_a_missing_dataset_leaves_nothing_in_the_store(tmp_path):
    cfg = config.profile_config("pretrain", "smoke", data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="nowhere/FSDnoisy18k.meta/train.csv: metadata file"):
        runs.open_run(cfg, tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_open_and_reload_run(tmp_path):
    cfg = config.profile_config("pretrain", "smoke", alpha=0.5)  # no data_dir: no fingerprint
    run = runs.open_run(cfg, tmp_path)
    assert run.path.name == f"pretrain-{config.config_hash(cfg)}" and not run.finished
    again = runs.load_run(run.path)
    assert again.config == cfg
    run.log_epoch({"epoch": 0, "loss": 3.0})
    run.log_epoch({"epoch": 1, "loss": 2.0})
    run.log_epoch({"epoch": 1, "loss": 1.5})  # the epoch redone after a resume replaces the old
    assert run.metrics()["loss"].tolist() == [3.0, 1.5]
    run.finish({"test_micro": 0.5})
    assert runs.open_run(cfg, tmp_path).finished
    assert runs.open_run(cfg, tmp_path).summary() == {"test_micro": 0.5}
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        runs.load_run(tmp_path)


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    synth.synthesize(root, profile="smoke", seed=0, progress=False)
    return root


def test_a_moved_or_copied_dataset_keeps_its_runs(smoke_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(smoke_data, data)  # as cp -p: modification times kept
    store = tmp_path / "runs"
    cfg = config.profile_config("pretrain", "smoke", data_dir=str(data))
    run = pretrain(cfg, runs_dir=store, progress=False)
    finished = (run.path / "finished.json").stat().st_mtime_ns
    moved = tmp_path / "elsewhere" / "data"
    moved.parent.mkdir()
    data.rename(moved)
    again = pretrain(dataclasses.replace(cfg, data_dir=str(moved)), runs_dir=store, progress=False)
    assert again.path == run.path  # found finished, not trained again:
    assert (again.path / "finished.json").stat().st_mtime_ns == finished
    assert runs.load_run(run.path).config.data_dir == str(moved)  # config.json follows the data
    copy = tmp_path / "copy"
    shutil.copytree(moved, copy)
    assert runs.run_id(dataclasses.replace(cfg, data_dir=str(copy))) == run.path.name


def test_changed_data_in_the_same_folder_gets_new_runs(smoke_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(smoke_data, data)
    cfg = config.profile_config("pretrain", "smoke", data_dir=str(data))
    ids = [runs.run_id(cfg)]
    csv = data / layout.META_DIR / "train.csv"
    table = pd.read_csv(csv)
    table.loc[0, "label"] = next(label for label in table.label if label != table.label[0])
    table.to_csv(csv, index=False)  # one clip relabelled
    ids.append(runs.run_id(cfg))
    clip = data / layout.AUDIO_DIRS["train"] / table.fname[0]
    wave, rate = sf.read(clip)
    sf.write(clip, np.roll(wave, 100), rate)  # one clip rewritten: other samples, same size
    ids.append(runs.run_id(cfg))
    assert len(set(ids)) == 3


def test_a_finetuning_is_named_by_its_pretraining_run_not_its_folder():
    name = "pretrain-0123456789ab"
    here, there = (
        config.make_config("finetune", pretrain_run=f"{store}/{name}")
        for store in ("/a/runs", "/b/runs")
    )
    assert runs.run_id(here) == runs.run_id(there)
    other = config.make_config("finetune", pretrain_run="/a/runs/pretrain-ba9876543210")
    assert runs.run_id(other) != runs.run_id(here)


def test_corrupt_checkpoint_falls_back_to_the_previous(tmp_path):
    run = runs.open_run(config.profile_config("pretrain", "smoke"), tmp_path)
    assert run.load_checkpoint() is None
    run.save_checkpoint({"epoch": 0, "w": torch.zeros(3)})
    run.save_checkpoint({"epoch": 1, "w": torch.ones(3)})
    assert run.load_checkpoint()["epoch"] == 1
    last = run.path / "last.pt"
    last.write_bytes(last.read_bytes()[:40])  # truncated
    with pytest.warns(runs.RunWarning, match="last.pt is unreadable.*using last.prev.pt"):
        assert run.load_checkpoint()["epoch"] == 0
    (run.path / "last.prev.pt").write_bytes(b"garbage")
    with pytest.raises(runs.CheckpointError, match="last.pt is .*; last.prev.pt is .*delete"):
        run.load_checkpoint()


def _append_rows(path, worker):
    for i in range(20):
        results.append_result({"worker": worker, "i": i}, path)


def test_results_table_appends_safely(tmp_path):
    results.append_result({"run": "a", "acc": 0.5}, tmp_path)
    results.append_result({"run": "b", "acc": 0.6, "extra": 1}, tmp_path)  # a new column
    table = results.load_results(tmp_path)
    assert table["run"].tolist() == ["a", "b"] and table["extra"].isna().tolist() == [True, False]
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_rows, args=(tmp_path, w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    table = results.load_results(tmp_path)
    assert len(table) == 2 + 60
    assert sorted(table.dropna(subset=["worker"]).groupby("worker")["i"].count()) == [20, 20, 20]


def test_the_paper_profile_trains_in_float32_and_the_cpu_profile_in_bfloat16():
    """The authors trained in float32; bfloat16 autocast is the cpu profile's measured choice."""
    for kind in ("pretrain", "supervised", "finetune"):
        assert config.profile_config(kind, "paper").amp is False
        assert config.profile_config(kind, "cpu").amp is True
