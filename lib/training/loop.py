"""The epoch skeleton every kind of training shares: per-epoch seeding, the optimisation steps
over a kind's batches (each step computed by step.py), restoring and capturing the checkpointed
state, and finishing a run (its results row, then its marker).

Each epoch draws its randomness from (seed, epoch) alone, so a run killed at any point and
resumed ends with the same weights as one that never stopped. A NaN or infinite loss stops
the run before it changes the weights and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from aclaudio.training.batches import epoch_seed, prefetch
from aclaudio.training.config import config_row, kind_of
from aclaudio.training.results import append_result
from aclaudio.training.runs import Run, git_commit
from aclaudio.training.step import Step


class TrainingError(ValueError):
    """Training cannot go on (the message says why and what was kept); a ValueError, so the
    command line reports it in one line rather than as a traceback."""


def seed_epoch(seed: int, epoch: int) -> tuple[int, np.random.Generator]:
    """Seed torch for the epoch; returns the epoch's seed and its numpy generator."""
    seed = epoch_seed(seed, epoch)
    torch.manual_seed(seed)
    return seed, np.random.default_rng(seed)


class Epoch(NamedTuple):
    loss: float  # the mean over the epoch's steps
    seconds: float
    gradient_norms: dict[str, float]  # of each term at the epoch's first step, when measured


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator,
    step: Callable[..., Step],
    n_steps: int,
    device: torch.device,
    *,
    measure: Sequence[torch.Tensor] | None = None,
    run: Run | None,
    epoch: int,
    epochs: int,
    progress: bool,
) -> Epoch:
    """Optimisation steps over the batches (prefetched in a thread): `step(batch, measure=...)`
    computes each loss, then backward and the optimiser step follow. The first step also
    measures each term's gradient on `measure` (the encoder's parameters), when given. A
    non-finite loss stops training before it reaches the weights."""
    model.train()
    where = str(run.path) if run else "training"
    desc = f"{kind_of(run.config)} {run.id} epoch {epoch + 1}/{epochs}" if run else ""
    bar = tqdm(
        prefetch(batches, device), total=n_steps, disable=not progress, desc=desc, leave=False
    )
    total, start, norms = 0.0, time.perf_counter(), {}
    for index, batch in enumerate(bar):
        loss, measured = step(batch, measure=measure if index == 0 else None)
        norms = norms or measured
        if not torch.isfinite(loss):
            raise TrainingError(
                f"{where}: loss became {loss.item()} at epoch {epoch}, step {index}; training "
                "stopped. The last good checkpoint (end of the previous epoch) is kept: lower the "
                "learning rate or check the data, then rerun to resume from it."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return Epoch(total / n_steps, time.perf_counter() - start, norms)


def step_sgd(
    parameters, *, lr: float, momentum: float, weight_decay: float, milestones, gamma: float
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.MultiStepLR]:
    """The authors' optimiser wherever they train (pretraining, linear evaluation, fine-tuning):
    SGD with momentum and weight decay, the rate x gamma at each milestone, the scheduler
    stepped once after each epoch (epochs before the first milestone train at lr)."""
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(milestones), gamma=gamma
    )
    return optimizer, scheduler


def config_sgd(parameters, config) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.MultiStepLR]:
    """step_sgd with a training config's lr, momentum, weight_decay, lr_milestones, lr_gamma."""
    return step_sgd(
        parameters,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        milestones=config.lr_milestones,
        gamma=config.lr_gamma,
    )


def restore(run: Run, modules: dict[str, object]) -> dict:
    """Load the last checkpoint into the modules; the rest of the state is returned."""
    state = run.load_checkpoint("last")
    if state is None:
        return {}
    for name, module in modules.items():
        module.load_state_dict(state[name])
    return state


def capture(modules: dict[str, object], **extra) -> dict:
    return {name: module.state_dict() for name, module in modules.items()} | extra


def finish(run: Run, summary: dict, started: float, device: torch.device) -> Run:
    """Add the run's row to the results table, then mark it finished with its summary."""
    summary = {
        "finished_epochs": run.config.epochs,
        **summary,
        "run": run.id,
        "kind": kind_of(run.config),
        "wall_seconds": time.perf_counter() - started,
        "device": str(device),
        "threads": torch.get_num_threads(),  # wall_seconds depends on it (sweep's local jobs)
        "commit": git_commit(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    # The row first: a kill between the two leaves an unfinished run, which a rerun completes
    # (replacing its row), never a finished run without its row.
    append_result(config_row(run.config) | summary, run.path.parent)
    run.finish(summary)
    return run
