"""One file holding everything needed to use a pretraining run's encoder without its data, and
its model card beside it.

The file is a torch.save of plain values and tensors only, so torch.load(weights_only=True)
reads it: the encoder (name, arguments, weights), the feature preset, the normalisation
statistics of the run's training clips, and where it came from (run, config hash, commit,
summary). lib/hear.py turns it back into a model. The card (the same name, .md) says in words
what the encoder was trained on and how, how well it does and how to load it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from aclaudio.data.atomic import atomic_torch_save, atomic_write_text
from aclaudio.data.features import get_preset
from aclaudio.hear import FORMAT
from aclaudio.nn.models import build_contrastive_model
from aclaudio.training.batches import TrainingData
from aclaudio.training.config import PretrainConfig, config_hash
from aclaudio.training.runs import Run


def export_encoder(run: Run, to: str | Path, *, progress: bool = True) -> dict:
    """Write the run's encoder (its best weights, else the last) to `to` and its model card to
    `to` with the suffix .md; returns a summary.

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
        "commit": run.summary().get("commit"),
        "summary": run.summary(),
    }
    to = Path(to)
    to.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(state, to)
    atomic_write_text(to.with_suffix(".md"), model_card(state, config, to.name))
    return {
        "to": str(to),
        "card": str(to.with_suffix(".md")),
        "run": run.id,
        "encoder": config.encoder,
        "dim": model.encoder.out_dim,
        "epoch": epoch,
        "preset": config.preset,
    }


def model_card(state: dict, config: PretrainConfig, file_name: str) -> str:
    """The card of an export: data, settings, result, provenance and how to load it (Markdown)."""
    summary, preset = state["summary"], state["preset"]
    settings = ", ".join(f"{name} {value}" for name, value in asdict(config.loss).items())
    count, unit = (config.steps, "step") if config.steps else (config.epochs, "epoch")
    length = f"{count} {unit}{'s' if count != 1 else ''}"
    accuracy = "not evaluated"
    if "test_micro" in summary:
        accuracy = (
            f"{100 * summary['test_micro']:.1f} % (95 % Wilson interval "
            f"{100 * summary['test_micro_low']:.1f} to {100 * summary['test_micro_high']:.1f}) "
            f"on {summary['test_n']} test clips; balanced accuracy "
            f"{100 * summary['test_macro']:.1f} %"
        )
    rows = {
        "data": f"`{Path(config.data_dir).name}`, subset `{config.subset}` (labels unused), "
        f"features `{config.preset}` ({preset['sample_rate']} Hz)",
        "objective": f"{config.objective} ({settings})",
        "training": f"profile `{config.profile}`, seed {config.seed}, {length} of batch "
        f"{config.batch_size}, SGD lr {config.lr}",
        "weights": f"epoch {state['epoch']} of run `{state['run']}` (config hash "
        f"`{state['config_hash']}`, commit `{state['commit']}`)",
        "linear evaluation": accuracy,
        "embedding": f"{config.encoder} encoder; one vector per patch of "
        f"{preset['patch_frames']} frames",
    }
    table = "\n".join(f"| {name} | {value} |" for name, value in rows.items())
    return f"""# {file_name}

| | |
|---|---|
{table}

The accuracy is one run's, one seed's: the study's tables give the spread over seeds.

Load it with the HEAR API (audio: a (n_sounds, n_samples) tensor at {preset["sample_rate"]} Hz),
or read it as plain tensors:

```
from aclaudio import hear
model = hear.load_model("{file_name}")
scene = hear.get_scene_embeddings(audio, model)

import torch
state = torch.load("{file_name}", weights_only=True)  # weights, preset, normalisation
```
"""
