"""docs/protocol.md quotes settings of the code: each quoted number here is read from the code,
so that the page cannot drift from the profiles, presets and recipes it describes."""

from __future__ import annotations

from pathlib import Path

import pytest

from aclaudio.data.features import PRESETS
from aclaudio.evaluation.probe import ProbeSettings
from aclaudio.training.config import profile_config

PAGE = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()


def _phrases():
    cpu, paper = profile_config("pretrain", "cpu"), profile_config("pretrain", "paper")
    tune = {p: profile_config("finetune", p) for p in ("paper", "cpu", "smoke")}
    probe = ProbeSettings()
    return {
        f"{cpu.steps:,} SGD steps": True,
        f"every {cpu.knn_every}th epoch": True,
        f"with K = {cpu.knn_k}": True,
        f"K = {paper.knn_k} unweighted": True,
        f"paper profile: {tune['paper'].epochs} epochs, ×{tune['paper'].lr_gamma:g} after "
        f"{tune['paper'].lr_milestones[0]} and {tune['paper'].lr_milestones[1]}": True,
        f"cpu: {tune['cpu'].epochs} epochs, ×0.1 after {tune['cpu'].lr_milestones[0]} and "
        f"{tune['cpu'].lr_milestones[1]}": True,
        f"smoke: {tune['smoke'].epochs} epochs, after {tune['smoke'].lr_milestones[0]} and "
        f"{tune['smoke'].lr_milestones[1]}": True,
        f"(peak + `Preset.headroom`, {PRESETS['ssl_paper'].headroom:g})": True,
        "`Preset.mel_norm = None` in every preset": all(
            p.mel_norm is None for p in PRESETS.values()
        ),
        "paper profile: `amp=False`": paper.amp is False and cpu.amp is True,
        f"batch {probe.batch_size}, {probe.epochs} epochs, lr × 0.1 after epochs "
        f"{probe.milestones[0]} and {probe.milestones[1]}": True,
        "`PretrainConfig.eval_end_patch` (False in every profile)": not any(
            profile_config("pretrain", p).eval_end_patch for p in ("smoke", "cpu", "paper")
        ),
    }


@pytest.mark.parametrize("phrase", list(_phrases()))
def test_the_protocol_page_quotes_the_code(phrase):
    assert _phrases()[phrase], f"the code no longer does what docs/protocol.md says: {phrase}"
    assert phrase in PAGE, f"docs/protocol.md no longer says {phrase!r}"
