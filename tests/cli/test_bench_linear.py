"""bench_linear at smoke size: its two arms agree where they must, and its table."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from aclaudio.cli import bench_linear
from aclaudio.data import synth
from aclaudio.data.features import PRESETS
from aclaudio.evaluation.probe import ProbeSettings
from aclaudio.nn.models import build_contrastive_model
from aclaudio.training.batches import TrainingData
from aclaudio.training.config import profile_config


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("linear") / "data"
    synth.synthesize(root, profile="smoke", seed=0, progress=False)
    return root


class _NoNorm(nn.Module):
    """An encoder without batch norm: train and eval mode compute the same function."""

    out_dim = 16

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, self.out_dim, 8, stride=4)

    def forward(self, x):
        return self.conv(x).relu().mean((2, 3))


def test_the_loop_and_the_cache_agree_without_batch_norm(smoke_data):
    """Same draws on the same patch grid, same classifier: the same epochs, losses and report."""
    config = profile_config(
        "pretrain", "smoke", data_dir=str(smoke_data), subset="noisy", amp=False
    )
    data = TrainingData.load(config, progress=False)
    settings = ProbeSettings(epochs=8, milestones=(3, 6), seed=3)
    device = torch.device("cpu")
    cached = bench_linear.cached_protocol(_NoNorm(), data, config, device, settings)
    loop = bench_linear.encoder_loop(
        _NoNorm(), data, config, device, settings, hop=data.cache.preset.eval_hop
    )
    for key in ("loss", "select_macro", "test_macro", "test_micro"):
        np.testing.assert_allclose(
            [c[key] for c in loop["curve"]], [c[key] for c in cached["curve"]], atol=1e-4
        )
    assert loop["epoch"] == cached["epoch"]
    assert (loop["macro"], loop["micro"]) == pytest.approx((cached["macro"], cached["micro"]))
    losses = [c["loss"] for c in cached["curve"]]
    assert losses[-1] < losses[0]  # the classifier did learn: the agreement is not vacuous
    # the authors' draw (any start frame) is another optimisation: its losses differ
    anywhere = bench_linear.encoder_loop(_NoNorm(), data, config, device, settings)
    assert [c["loss"] for c in anywhere["curve"]] != pytest.approx(losses, abs=1e-4)


def test_bench_linear_writes_a_paired_table(smoke_data, tmp_path, monkeypatch):
    def encoders(config, device, runs_dir):  # two distinct encoders, without pretraining's time
        other = dataclasses.replace(config, seed=config.seed + 100)
        return {
            init: build_contrastive_model(c, device).encoder
            for init, c in (("random", config), ("pretrained", other))
        }

    monkeypatch.setattr(bench_linear, "_encoders", encoders)
    table = bench_linear.bench_linear(
        models=(bench_linear.BenchModel("small", (0, 1), 2),), data_dir=smoke_data, out_dir=tmp_path
    )
    assert list(table.columns) == [
        "model",
        "init",
        "seed",
        "epochs",
        "macro_cached",
        "macro_loop",
        "macro_diff",
        "micro_cached",
        "micro_loop",
        "micro_diff",
        "epoch_cached",
        "epoch_loop",
        "seconds_cached",
        "seconds_loop",
        "speedup",
        "loop_hop",
        "macro_diff_low",
        "macro_diff_high",
        "micro_diff_low",
        "micro_diff_high",
        "clips",
    ]
    assert list(zip(table["init"], table["seed"], strict=True)) == [
        ("random", 0),
        ("pretrained", 0),
        ("random", 1),
        ("pretrained", 1),
        ("random", "mean"),
        ("pretrained", "mean"),
    ]
    paired, summary = table.iloc[:4], table.iloc[4:].set_index("init")
    for metric in ("macro", "micro"):
        diff = paired[f"{metric}_cached"].astype(float) - paired[f"{metric}_loop"].astype(float)
        np.testing.assert_allclose(paired[f"{metric}_diff"].astype(float), diff, atol=0.011)
        assert paired[f"{metric}_diff_low"].isna().all()
        for init, rows in paired.groupby("init"):
            mean = rows[f"{metric}_diff"].mean()
            low, high = summary.loc[init, [f"{metric}_diff_low", f"{metric}_diff_high"]]
            assert summary.loc[init, f"{metric}_diff"] == pytest.approx(mean, abs=0.011)
            assert low <= mean <= high
    assert (paired[["seconds_cached", "seconds_loop"]] > 0).all().all()
    assert set(paired["epochs"]) == {2} and set(paired["model"]) == {"small"}
    assert set(paired["loop_hop"]) == {1}  # the authors' draw: any start frame
    assert (tmp_path / "linear.md").is_file()

    assert table["clips"].iat[0] == "40 train / 20 clean / 40 test"
    rows = json.loads((tmp_path / "linear.json").read_text())  # strict JSON: gaps are null
    assert rows[0]["macro_diff_low"] is None and len(rows) == 6
    assert "pretrained" in (tmp_path / "linear.md").read_text()


def test_bench_linear_on_the_grid_compares_the_pretrained_encoder_alone(
    smoke_data, tmp_path, monkeypatch
):
    """cpu-grid: the loop's patches on the cached grid, the pretrained encoder only."""

    def encoders(config, device, runs_dir):
        model = build_contrastive_model(config, device)
        return {"random": model.encoder, "pretrained": model.encoder}

    monkeypatch.setattr(bench_linear, "_encoders", encoders)

    grid = bench_linear.SIZES["cpu-grid"][0]
    table = bench_linear.bench_linear(
        models=(dataclasses.replace(grid, seeds=(0,), epochs=2),),
        data_dir=smoke_data,
        out_dir=tmp_path,
    )
    preset = PRESETS[profile_config("pretrain", "smoke", data_dir=str(smoke_data)).preset]
    assert list(table["init"]) == ["pretrained", "pretrained"]  # the seed and its summary
    assert set(table["loop_hop"]) == {preset.eval_hop}
    assert bench_linear.table_name("cpu-grid") == "linear-cpu-grid"
