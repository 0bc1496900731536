"""One training step, top to bottom: a batch -> its views -> the model -> the objective -> the
loss.

loop.train_epoch calls a step on every batch, then backpropagates the loss and steps the
optimiser; a step only computes. Asked to, it also measures the norm of the gradient that each
term of the objective puts on some parameters (the encoder's), from the same forward pass and
without touching any .grad: which term drives training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from aclaudio.nn import augment
from aclaudio.nn.augment import AugmentConfig
from aclaudio.nn.objectives import Objective
from aclaudio.training.devices import forward


class Step(NamedTuple):
    loss: Tensor
    #: "grad_<term>" -> the norm of that term's gradient on the measured parameters; empty
    #: unless the step was asked to measure
    gradient_norms: dict[str, float]


@dataclass(frozen=True)
class Augmentation:
    """How an epoch turns patches into two augmented, normalised views (its own generator)."""

    augment: AugmentConfig
    mean: Tensor
    std: Tensor
    generator: torch.Generator


def contrastive_step(
    model: nn.Module,
    batch: Sequence[Tensor],
    *,
    objective: Objective,
    augmentation: Augmentation,
    execution,
    device: torch.device,
    measure: Sequence[Tensor] | None = None,
) -> Step:
    """A self-supervised step. The batch holds two patches of each clip and two patches of
    other clips to mix back; each view goes through the model on its own (batch norm
    normalises each view's batch, as the authors' two passes); the objective compares the
    views' encoder outputs h and projections z. Under torch.distributed the objective gathers
    every rank's embeddings, so the step equals the single-process one (DDP averages)."""
    x1, x2, background1, background2 = batch
    with torch.no_grad():
        v1, v2 = augment.two_views(
            x1,
            x2,
            background1,
            background2,
            augmentation.augment,
            mean=augmentation.mean,
            std=augmentation.std,
            generator=augmentation.generator,
        )
    h, z = forward(model, torch.cat([v1, v2]), execution, device, views_apart=True)
    h1, h2 = h.float().chunk(2)
    z1, z2 = z.float().chunk(2)
    return _step(objective.terms(h1, h2, z1, z2), measure)


def labelled_step(
    model: nn.Module,
    batch: Sequence[Tensor],
    *,
    objective: Objective,
    normaliser: tuple[Tensor, Tensor],
    execution,
    device: torch.device,
    measure: Sequence[Tensor] | None = None,
) -> Step:
    """A supervised step: patches, normalised, -> the model's logits and features -> the
    objective against the labels."""
    x, labels = batch
    logits, feats = forward(model, augment.normalise(x, *normaliser), execution, device)
    return _step(objective.terms(logits.float(), feats.float(), labels), measure)


def _step(terms: dict[str, Tensor], measure: Sequence[Tensor] | None) -> Step:
    loss = Objective.total(terms)
    return Step(loss, {} if measure is None else term_gradient_norms(terms, measure))


def term_gradient_norms(terms: dict[str, Tensor], params: Sequence[Tensor]) -> dict[str, float]:
    """The norm of the gradient each term puts on `params`, as "grad_<term>".

    One backward pass per term through the graph, kept for the step's own backward; no
    parameter's .grad is touched. Under torch.distributed: this rank's share of the batch.
    """
    norms = {}
    for name, term in terms.items():
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        total = [g.norm() for g in grads if g is not None]
        norms[f"grad_{name}"] = torch.stack(total).norm().item() if total else 0.0
    return norms
