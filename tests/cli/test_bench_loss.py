"""bench_loss at tiny sizes (no ResNet step), and its boolean-mask reference checked for value."""

from __future__ import annotations

import json

import pytest
import torch

from aclaudio import losses
from aclaudio.cli import bench


def test_bench_loss_writes_its_table(tmp_path):
    table = bench.bench_loss(sizes=(8, 16), dim=4, repeats=1, step_repeats=0, out_dir=tmp_path)
    assert list(table.columns) == [
        "views_2N",
        "dim",
        "loss",
        "ms",
        "x_nt_xent",
        "pct_of_paper_step",
    ]
    assert len(table) == 12 and set(table["views_2N"]) == {8, 16}
    for _, rows in table.groupby("views_2N"):
        ms = dict(zip(rows["loss"], rows["ms"], strict=True))
        assert set(ms) >= {"nt_xent", "acl", "pytorch-metric-learning NTXentLoss", "angular_margin"}
        assert ms["nt_xent + boolean-mask reference"] == pytest.approx(
            ms["nt_xent"] + ms["angular term, boolean-mask reference"], abs=2e-3
        )
        assert all(value > 0 for value in ms.values())
    assert (table.loc[table["loss"] == "nt_xent", "x_nt_xent"] == 1.0).all()
    assert table["pct_of_paper_step"].isna().all()  # the training step was skipped
    rows = json.loads((tmp_path / "loss.json").read_text())  # strict JSON: gaps are null
    assert rows[0]["pct_of_paper_step"] is None and len(rows) == 12
    assert (tmp_path / "loss.csv").exists() and "acl" in (tmp_path / "loss.md").read_text()


def test_boolean_mask_reference_computes_the_angular_term():
    g = torch.Generator().manual_seed(0)
    # 12 views on a circle: some negatives fall inside the margin
    h1, h2 = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    expected = losses.angular_margin(h1, h2, margin=0.5, reduction="sum/25")
    assert bench._masked_angular_reference(h1, h2).item() == pytest.approx(
        expected.item(), rel=1e-5
    )
