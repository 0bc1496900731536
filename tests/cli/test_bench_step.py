"""bench step: the parts of a pretraining step add up to the step, in both precisions, and the
operator families' shares to the whole."""

from __future__ import annotations

import pandas as pd
import pytest

from aclaudio.cli import bench_step as bench


def test_the_parts_of_a_step_add_up_to_it(tmp_path):
    table = bench.bench_step(steps=2, batch_size=16, out_dir=tmp_path)
    assert list(table["precision"].unique()) == ["bfloat16", "float32"]
    for _, rows in table.groupby("precision"):
        parts = rows[rows["part"].isin(bench.STEP_PARTS)]
        assert list(parts["part"]) == list(bench.STEP_PARTS)
        assert (rows["ms"] > 0).all()
        step = rows[rows["part"].str.startswith("step: ")].iloc[0]
        assert parts["ms"].sum() == pytest.approx(step["ms"], abs=0.1 * len(parts))
        assert parts["share_of_step"].sum() == pytest.approx(1.0, abs=0.01)
        clips_per_s = float(step["part"].split()[1])
        assert clips_per_s == pytest.approx(16 / (step["ms"] / 1000), rel=0.02)
        assert rows.loc[rows["part"] == "measure", "share_of_step"].isna().all()
    assert (tmp_path / "step.md").is_file()
    ops = pd.read_csv(tmp_path / "step-ops.csv")
    assert list(ops["family"]) == [*bench.OP_FAMILIES, "other"]
    assert ops["share_of_step"].sum() == pytest.approx(1.0, abs=0.01)
    assert (ops["share_of_step"] >= 0).all() and ops.loc[0, "share_of_step"] > 0  # convolutions
