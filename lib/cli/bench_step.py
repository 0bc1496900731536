"""`aclaudio bench step`: where the time of one cpu pretraining step goes, part by part, with
bfloat16 autocast and in float32."""

from __future__ import annotations

import time
from itertools import count, pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.profiler import ProfilerActivity

from aclaudio.cli.bench import built_in_data, write_table
from aclaudio.nn import augment, objectives
from aclaudio.nn.models import build_contrastive_model
from aclaudio.training.batches import TrainingData, contrastive_batches
from aclaudio.training.config import profile_config
from aclaudio.training.devices import forward, resolve_device
from aclaudio.training.loop import config_sgd
from aclaudio.training.step import term_gradient_norms

#: The parts of a pretraining step, in order, as bench_step times them.
STEP_PARTS = ("batch", "augment", "forward", "loss", "backward", "optimizer")
#: Families of PyTorch operators (forward and backward) whose share of a step's CPU time
#: bench_step reports, by a part of their names; the rest is "other".
OP_FAMILIES = {
    "convolution": ("convolution",),
    "batch norm": ("batch_norm",),
    "max-pool": ("max_pool",),
    "ReLU": ("threshold", "clamp_min", "relu"),
}


def bench_step(
    *, data_dir: Path | None = None, steps: int = 10, batch_size: int = 128, out_dir=None
) -> pd.DataFrame:
    """Where the time of one cpu pretraining step goes (small encoder, cpu preset, ACL): the
    batch from the cache, the two augmented views, the forward pass, the loss, the backward
    pass and the optimiser, each timed on its own over `steps` steps after two warm-up steps,
    with bfloat16 autocast and in float32. `measure` is what the first step of each epoch adds
    when it measures each loss term's gradient (not part of the step's share). A second table,
    step-ops, gives each family of operators' share of the bfloat16 step's CPU time
    (OP_FAMILIES, from PyTorch's profiler).

    Without `data_dir`, the built-in smoke dataset is generated in a temporary folder.
    """
    rows = []
    with built_in_data(data_dir) as root:
        for amp in (True, False):
            config = profile_config(
                "pretrain", "cpu", data_dir=str(root), subset="all", batch_size=batch_size, amp=amp
            )
            seconds = _step_parts(config, steps)
            step = sum(seconds[part] for part in STEP_PARTS)
            precision = "bfloat16" if amp else "float32"
            if amp:
                write_table(_op_shares(config, steps), "step-ops", out_dir)
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


def _op_shares(config, steps: int) -> pd.DataFrame:
    """Each operator family's share of the self CPU time of `steps` steps (without measuring
    the terms' gradients), after the two warm-up steps."""
    prof, finished = torch.profiler.profile(activities=[ProfilerActivity.CPU]), count(1)

    def after_step() -> None:
        if next(finished) == 2:  # the warm-up steps are done
            prof.start()

    _step_parts(config, steps, measure=False, after_step=after_step)
    prof.stop()
    times = {event.key: event.self_cpu_time_total for event in prof.key_averages()}
    total = sum(times.values())
    shares = {
        family: sum(t for name, t in times.items() if any(part in name for part in parts)) / total
        for family, parts in OP_FAMILIES.items()
    }
    shares["other"] = 1 - sum(shares.values())
    rounded = [round(share, 3) for share in shares.values()]
    return pd.DataFrame({"family": list(shares), "share_of_step": rounded})


def _step_parts(
    config, steps: int, *, measure: bool = True, after_step=lambda: None
) -> dict[str, float]:
    """Seconds spent in each part of `steps` pretraining steps (after two warm-up steps), and
    in measuring each term's gradient on the encoder once a step (unless not `measure`);
    `after_step` is called after every step (the profiler's clock)."""
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
        if measure:
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
        after_step()
    return seconds


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()
