"""`aclaudio bench step`: where the time of one cpu pretraining step goes, part by part, with
bfloat16 autocast and in float32."""

from __future__ import annotations

import tempfile
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aclaudio.cli.bench import write_table
from aclaudio.data.synth import synthesize
from aclaudio.nn import augment, objectives
from aclaudio.nn.models import build_contrastive_model
from aclaudio.training.batches import TrainingData, contrastive_batches
from aclaudio.training.config import profile_config
from aclaudio.training.devices import forward, resolve_device
from aclaudio.training.loop import config_sgd
from aclaudio.training.step import term_gradient_norms

#: The parts of a pretraining step, in order, as bench_step times them.
STEP_PARTS = ("batch", "augment", "forward", "loss", "backward", "optimizer")


def bench_step(
    *, data_dir: Path | None = None, steps: int = 10, batch_size: int = 128, out_dir=None
) -> pd.DataFrame:
    """Where the time of one cpu pretraining step goes (small encoder, cpu preset, ACL): the
    batch from the cache, the two augmented views, the forward pass, the loss, the backward
    pass and the optimiser, each timed on its own over `steps` steps after two warm-up steps,
    with bfloat16 autocast and in float32. `measure` is what the first step of each epoch adds
    when it measures each loss term's gradient (not part of the step's share).

    Without `data_dir`, the built-in smoke dataset is generated in a temporary folder.
    """
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(data_dir) if data_dir else Path(tmp) / "data"
        if data_dir is None:
            synthesize(root, profile="smoke", seed=0, progress=False)
        for amp in (True, False):
            config = profile_config(
                "pretrain", "cpu", data_dir=str(root), subset="all", batch_size=batch_size, amp=amp
            )
            seconds = _step_parts(config, steps)
            step = sum(seconds[part] for part in STEP_PARTS)
            precision = "bfloat16" if amp else "float32"
            rows += [
                {
                    "precision": precision,
                    "part": part,
                    "ms": round(1000 * seconds[part] / steps, 1),
                    "share_of_step": round(seconds[part] / step, 3) if part in STEP_PARTS else None,
                }
                for part in (*STEP_PARTS, "measure")
            ]
            rows.append(
                {
                    "precision": precision,
                    "part": f"step: {batch_size * steps / step:.0f} clips/s",
                    "ms": round(1000 * step / steps, 1),
                    "share_of_step": 1.0,
                }
            )
    table = pd.DataFrame(rows)
    write_table(table, "step", out_dir)
    return table


def _step_parts(config, steps: int) -> dict[str, float]:
    """Seconds spent in each part of `steps` pretraining steps (after two warm-up steps), and
    in measuring each term's gradient on the encoder once a step."""
    device = resolve_device(config.device)
    data = TrainingData.load(config, progress=False)
    data.train_rows = np.resize(data.train_rows, (steps + 2) * config.batch_size)
    model = build_contrastive_model(config, device)
    objective = objectives.build(config.objective, "views", config.loss)
    optimizer, _ = config_sgd(model.parameters(), config)
    rng = np.random.default_rng(0)
    generator = torch.Generator(device).manual_seed(0)
    mean, std = data.normaliser(device, per_band=False)
    batches = contrastive_batches(data, data.train_rows, config.batch_size, rng)
    order = (*STEP_PARTS[:4], "measure", *STEP_PARTS[4:])  # as train_epoch's first step
    seconds = dict.fromkeys(order, 0.0)
    for index in range(steps + 2):
        clock = [_now(device)]
        batch = [torch.from_numpy(patches).to(device) for patches in next(batches)]
        clock.append(_now(device))
        with torch.no_grad():
            views = augment.two_views(
                *batch, config.augment, mean=mean, std=std, generator=generator
            )
        clock.append(_now(device))
        h, z = forward(model, torch.cat(views), config, device, views_apart=True)
        clock.append(_now(device))
        terms = objective.terms(*h.float().chunk(2), *z.float().chunk(2))
        loss = objectives.Objective.total(terms)
        clock.append(_now(device))
        term_gradient_norms(terms, list(model.encoder.parameters()))
        clock.append(_now(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clock.append(_now(device))
        optimizer.step()
        clock.append(_now(device))
        if index >= 2:
            for part, (start, end) in zip(seconds, pairwise(clock), strict=True):
                seconds[part] += end - start
    return seconds


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()
