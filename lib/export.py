"""One file holding everything needed to use a pretraining run's encoder without its data.

The file is a torch.save of plain values and tensors only, so torch.load(weights_only=True)
reads it: the encoder (name, arguments, weights), the feature preset, the normalisation
statistics of the run's training clips, and where it came from (run, config hash, commit,
summary). lib/hear.py turns it back into a model.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from aclaudio.data.features import get_preset
from aclaudio.nn.models import build_contrastive_model
from aclaudio.training.batches import TrainingData
from aclaudio.training.config import PretrainConfig, config_hash
from aclaudio.training.runs import Run, load_results

FORMAT = "aclaudio-encoder/1"


def export_encoder(run: Run, to: str | Path, *, progress: bool = True) -> dict:
    """Write the run's encoder (its best weights, else the last) to `to`; returns a summary.

    The training data are read once, for the normalisation statistics the run trained with.
    """
    if not isinstance(run.config, PretrainConfig):
        raise ValueError(f"{run.path}: not a pretraining run, so it has no encoder to export")
    if not run.finished:
        raise ValueError(f"{run.path}: pretraining has not finished; run it first")
    config = run.config
    model = build_contrastive_model(config, torch.device("cpu"))
    epoch = run.load_weights(model)
    mean, std = TrainingData.load(config, progress=progress).normaliser(
        torch.device("cpu"), per_band=False
    )
    results = load_results(run.path.parent)
    commits = results.loc[results["run"] == run.id, "commit"] if "run" in results else []
    state = {
        "format": FORMAT,
        "encoder": {
            "name": config.encoder,
            "kwargs": {},  # build_contrastive_model builds every encoder with its defaults
            "state_dict": model.encoder.state_dict(),
        },
        "preset": asdict(get_preset(config.preset)),
        "normalisation": {"mean": float(mean), "std": float(std)},
        "run": run.id,
        "config_hash": config_hash(config),
        "epoch": epoch,
        "commit": str(commits.iloc[-1]) if len(commits) else None,
        "summary": run.summary(),
    }
    to = Path(to)
    to.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, to)
    return {
        "to": str(to),
        "run": run.id,
        "encoder": config.encoder,
        "dim": model.encoder.out_dim,
        "epoch": epoch,
        "preset": config.preset,
    }


def load_export(path: str | Path) -> dict:
    """The contents of an exported file, with a one-line error for anything else."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for files it cannot read
        reason = str(error).partition("\n")[0]
        raise ValueError(f"{path}: not an aclaudio encoder export ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not an aclaudio encoder export (format {FORMAT} expected)")
    return state
