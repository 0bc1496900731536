"""`aclaudio bench linear`: the paper's linear evaluation two ways on the same encoders, the
cached protocol (probe.py: embeddings computed once) against the authors' loop through the
frozen encoder, paired over seeds, random-init and pretrained, small and ResNet-18."""

from __future__ import annotations

import copy
import dataclasses
import functools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats

from aclaudio.cli.bench import write_table
from aclaudio.data.features import patch_starts
from aclaudio.data.synth import synthesize
from aclaudio.evaluation.embeddings import embed
from aclaudio.evaluation.probe import (
    PatchEmbeddings,
    ProbeSettings,
    classifier_report,
    linear_classifier,
    linear_evaluation,
    one_patch_per_clip,
    reestimate_batchnorm,
)
from aclaudio.nn import augment
from aclaudio.nn.models import build_contrastive_model
from aclaudio.recipes.pretrain import pretrain
from aclaudio.training.batches import TrainingData, plain_training_batches
from aclaudio.training.config import profile_config
from aclaudio.training.devices import autocast, resolve_device


@dataclass(frozen=True)
class BenchModel:
    """One encoder of the bench: its seeds, the probe's epochs (the same in both arms, lr x0.1
    at 40 % and 80 % of them, as at 80 and 160 of 200), what of the profile's pretraining
    length to change (empty: the profile's own), the encoders compared (random init,
    pretrained) and where the loop's patches start: any frame (1, as the authors) or, with
    None, on the cached protocol's grid (the preset's eval_hop)."""

    encoder: str
    seeds: tuple[int, ...]
    epochs: int
    pretrain: dict = dataclasses.field(default_factory=dict)
    inits: tuple[str, ...] = ("random", "pretrained")
    loop_hop: int | None = 1


# smoke: everything on the smoke set, so that ResNet-18's loop fits two CPU cores. cpu: the
# built-in cpu set (1,800 training, 200 clean, 400 test clips), the small encoder pretrained as
# the cpu study's NT-Xent runs (reused from the run store), and ResNet-18 with as few epochs
# and pretraining steps as let its loop through the encoder fit the bench's half hour.
# cpu-grid: where the arms part at the cpu size: the loop with its patches on the cached grid,
# so that what remains between the arms is batch norm in train mode (table linear-cpu-grid).
SIZES = {
    "smoke": (
        BenchModel("small", (0, 1, 2), 200, {"epochs": 3}),
        BenchModel("resnet18", (0, 1, 2), 200, {"epochs": 3}),
    ),
    "cpu": (
        BenchModel("small", (0, 1, 2), 200),
        BenchModel("resnet18", (0,), 20, {"steps": 30}),
    ),
    "cpu-grid": (BenchModel("small", (0, 1, 2), 200, inits=("pretrained",), loop_hop=None),),
}


def table_name(size: str) -> str:
    """The bench's table: linear for smoke and cpu, linear-<size> for the others."""
    return "linear" if size in ("smoke", "cpu") else f"linear-{size}"


def bench_linear(
    *,
    size: str = "smoke",
    models: tuple[BenchModel, ...] | None = None,
    data_dir: Path | None = None,
    runs_dir: Path | None = None,
    out_dir: Path | None = None,
) -> pd.DataFrame:
    """The cached linear evaluation (`probe`: batch norm re-estimated, every patch embedded once)
    against the authors' loop through the frozen encoder, on the same data and encoders.

    Args:
        size: a key of SIZES: its profile (the part before "-") gives the pretraining and the
            built-in dataset, and SIZES the models (unless `models` is given).
        models: the encoders, seeds and epochs ("small" runs on the cpu preset, "resnet18" on
            ssl_paper).
        data_dir: the dataset; default: the size's built-in set, generated in a temporary
            folder.
        runs_dir: where the pretraining runs are kept and reused; default: a temporary store.
        out_dir: where results/bench/linear.md and .csv go.

    Per model, seed and initialisation (random, or pretrained with alpha 1, NT-Xent), one row:
    test balanced (macro) and micro accuracy of each arm in percent, cached minus loop, the
    epochs chosen and the seconds. Then one row per model and initialisation with seed "mean":
    the mean difference with its 95 % t-interval over seeds and the overall speed-up.

    Example:
        >>> table = bench_linear(size="cpu", runs_dir=Path("runs"))  # doctest: +SKIP
    """
    rows, profile = [], size.split("-")[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(data_dir).resolve() if data_dir else Path(tmp) / "data"  # as the study's
        if data_dir is None:
            synthesize(root, profile=profile, seed=0, progress=False)
        store = Path(runs_dir) if runs_dir else Path(tmp) / "runs"
        for model in models or SIZES[size]:
            rows += _paired_rows(model, profile, root, store)
    table = _with_summaries(pd.DataFrame(rows))
    write_table(table, table_name(size), out_dir)
    return table


def _paired_rows(model: BenchModel, profile: str, root: Path, store: Path) -> list[dict]:
    """Both arms on the model's random-init and pretrained encoders, one row per seed and init."""
    preset = "ssl_paper" if model.encoder == "resnet18" else "cpu"
    settings = ProbeSettings(
        epochs=model.epochs, milestones=(round(0.4 * model.epochs), round(0.8 * model.epochs))
    )
    rows = []
    for seed in model.seeds:
        config = profile_config(
            "pretrain",
            profile,
            data_dir=str(root),
            subset="noisy",
            encoder=model.encoder,
            preset=preset,
            seed=seed,
            alpha=1.0,  # NT-Xent, as benchmarked in docs/benchmarks.md
            **model.pretrain,
        )
        device = resolve_device(config.device)
        data = TrainingData.load(config, progress=False)
        seeded = dataclasses.replace(settings, seed=seed)
        hop = model.loop_hop or data.cache.preset.eval_hop
        loop = functools.partial(encoder_loop, hop=hop)
        for init, weights in _encoders(config, device, store).items():
            if init not in model.inits:
                continue
            arms = {}
            for arm, evaluate_with in (("cached", cached_protocol), ("loop", loop)):
                start = time.perf_counter()
                report = evaluate_with(copy.deepcopy(weights), data, config, device, seeded)
                arms[arm] = report | {"seconds": time.perf_counter() - start}
            row = _paired_row(model.encoder, init, seed, model.epochs, data, arms)
            rows.append(row | {"loop_hop": hop})
    return rows


def _encoders(config, device, runs_dir: Path) -> dict[str, torch.nn.Module]:
    """The config's encoder at its initial weights, and after `pretrain` (best weights)."""
    model = build_contrastive_model(config, device)
    random_init = copy.deepcopy(model.encoder)
    pretrain(config, runs_dir=runs_dir, progress=False).load_weights(model)
    return {"random": random_init, "pretrained": model.encoder}


def cached_protocol(encoder, data: TrainingData, config, device, settings: ProbeSettings) -> dict:
    """The study's linear evaluation of an encoder (`probe.prepare_encoder` + `evaluate_run`
    without a run): batch norm re-estimated on un-augmented training patches, every patch
    embedded once, `probe.linear_evaluation` on the cache."""
    with autocast(device, config.amp):
        reestimate_batchnorm(encoder, plain_training_batches(data, config, device))
    train_set, select, test = (
        _embedded(encoder, data, rows, config, device)
        for rows in (data.train_rows, data.monitor_rows, data.test_rows)
    )
    return linear_evaluation(train_set, select, test, data.n_classes, settings, device=device)


def encoder_loop(
    encoder, data: TrainingData, config, device, settings: ProbeSettings, *, hop: int = 1
) -> dict:
    """The authors' linear evaluation, every epoch through the frozen encoder: one random patch
    per training clip (any start frame with `hop` 1, as they draw it) through the encoder in
    train mode, so its batch norm normalises with the batch and its running statistics follow
    the training patches; then the selection and test clips, all their patches, in eval mode.
    The classifier, its draws and the selection are those of `probe.linear_evaluation` (the same
    report), so with `hop` = the preset's eval_hop and an encoder without batch norm both agree.
    """
    frames = data.cache.preset.patch_frames
    lengths = data.cache.clips["length"].iloc[data.train_rows]
    starts = [patch_starts(n, frames, hop, end_patch=data.end_patch) for n in lengths]
    count = torch.tensor([len(s) for s in starts])
    first = torch.cumsum(count, 0) - count
    patch_rows, frame_starts = np.repeat(data.train_rows, count.numpy()), np.concatenate(starts)
    labels = torch.as_tensor(data.targets(data.train_rows), device=device)
    mean, std = data.normaliser(device, per_band=False)

    generator = torch.Generator().manual_seed(settings.seed)
    classifier, optimizer, scheduler = linear_classifier(
        encoder.out_dim, data.n_classes, settings, device
    )  # the same start as linear_evaluation's
    curve, best = [], None
    for epoch in range(settings.epochs):
        order, picks = one_patch_per_clip(first, count, generator)
        encoder.train()
        epoch_losses = []
        for batch in torch.split(torch.arange(len(order)), settings.batch_size):
            chosen = picks[batch].numpy()
            x = data.cache.patches_at(patch_rows[chosen], frame_starts[chosen], frames)
            x = augment.normalise(torch.from_numpy(x[:, None]).to(device), mean, std)
            with torch.no_grad(), autocast(device, config.amp):
                h = encoder(x).float()
            loss = F.cross_entropy(classifier(h), labels[order[batch].to(device)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_losses.append(loss.item())
        scheduler.step()
        select, test = (
            classifier_report(
                classifier, _embedded(encoder, data, rows, config, device), data.n_classes, device
            )
            for rows in (data.monitor_rows, data.test_rows)
        )
        curve.append(
            {
                "epoch": epoch,
                "loss": float(np.mean(epoch_losses)),
                "select_macro": select["macro"],
                "test_macro": test["macro"],
                "test_micro": test["micro"],
            }
        )
        if best is None or select["macro"] > best[0]:
            best = (select["macro"], epoch, test)
    select_macro, epoch, report = best
    return report | {"epoch": epoch, "select_macro": select_macro, "curve": curve}


def _embedded(encoder, data: TrainingData, rows, config, device) -> PatchEmbeddings:
    """Every evaluation patch of the clips `rows` (sorted) through the encoder in eval mode."""
    emb, clip_of_patch = embed(encoder, data, rows, device, amp=config.amp)
    return PatchEmbeddings(emb, clip_of_patch, data.targets(rows))


def _paired_row(encoder: str, init: str, seed: int, epochs: int, data, arms: dict) -> dict:
    cached, loop = arms["cached"], arms["loop"]
    row = {"model": encoder, "init": init, "seed": seed, "epochs": epochs}
    for metric in ("macro", "micro"):
        row |= {
            f"{metric}_cached": 100 * cached[metric],
            f"{metric}_loop": 100 * loop[metric],
            f"{metric}_diff": 100 * (cached[metric] - loop[metric]),
        }
    return row | {
        "epoch_cached": cached["epoch"],
        "epoch_loop": loop["epoch"],
        "seconds_cached": cached["seconds"],
        "seconds_loop": loop["seconds"],
        "speedup": loop["seconds"] / cached["seconds"],
        "clips": f"{len(data.train_rows)} train / {len(data.monitor_rows)} clean / "
        f"{len(data.test_rows)} test",
    }


def _with_summaries(table: pd.DataFrame) -> pd.DataFrame:
    """The paired rows, then per (model, init) the mean over seeds (seed "mean") with a 95 %
    t-interval on each difference; the speed-up of the summed seconds."""
    summaries = []
    for (model, init), group in table.groupby(["model", "init"], sort=False):
        n = len(group)
        row = group.mean(numeric_only=True).to_dict() | {
            "model": model,
            "init": init,
            "seed": "mean",
            "clips": group["clips"].iat[0],
            "speedup": group["seconds_loop"].sum() / group["seconds_cached"].sum(),
        }
        for metric in ("macro", "micro"):
            diffs = group[f"{metric}_diff"]
            half = stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / np.sqrt(n)
            row |= {
                f"{metric}_diff_low": diffs.mean() - half,
                f"{metric}_diff_high": diffs.mean() + half,
            }
        summaries.append(row)
    table = pd.concat([table, pd.DataFrame(summaries)], ignore_index=True)
    order = [*table.columns.drop("clips"), "clips"]
    table = table[order].round(2)
    return table.astype(object).where(table.notna(), None)  # gaps as null, not NaN, in JSON
