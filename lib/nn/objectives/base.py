"""What every objective shares: the Objective module (settings, named terms, their sum), and the
checks, full precision and multi-GPU gathering of its functions.

Precision. Every loss function runs in float32 even under autocast (float64 stays float64).

Multi-GPU. With gather=True every rank all-gathers its inputs (torch.distributed.nn, which keeps
autograd) and computes the loss of the global batch, identical on all ranks and equal to the
single-process loss. all_gather's backward sums the gradient of each rank's copy of the loss,
so a rank's local inputs receive world_size times the single-process gradient, and DDP's
averaging over ranks then yields exactly the single-process parameter gradient. Outside an
initialised process group (or with one rank) gather=True does nothing. All ranks need the same
local batch size.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor, nn


class Objective(nn.Module):
    """A training objective: its settings (the dataclass `Settings`, with their defaults) are
    the constructor's keyword arguments, its loss is the sum of the named terms `terms`
    returns, so that a trainer can log the gradient of each term.

    A subclass sets `inputs`: "views" takes (h1, h2, z1, z2), the encoder and projection
    outputs of two views of a batch whose row i comes from clip i; "labels" takes (logits,
    feats, labels) of one labelled batch. `term_labels` declares the keys of `terms`, in order,
    each with how a figure labels it.
    gather=True computes the loss of the global batch under torch.distributed (module doc).
    """

    inputs: ClassVar[str]
    term_labels: ClassVar[dict[str, str]]
    Settings: ClassVar[type]

    def __init__(self, *, gather: bool = False, divisor: float | None = None, **settings) -> None:
        super().__init__()
        if divisor is not None:
            if not any(f.name == "reduction" for f in dataclasses.fields(self.Settings)):
                raise ValueError(f"{type(self).__name__} takes no divisor (it has no reduction)")
            settings = {**settings, "reduction": with_divisor(settings.get("reduction"), divisor)}
        self.settings = self.settings_from(settings)
        self.gather = gather

    @classmethod
    def settings_from(cls, values: Mapping[str, Any]):
        """Settings from a mapping of some of them (the rest at their defaults); an unknown name
        or a value of no mapping is a ValueError."""
        if not isinstance(values, Mapping):
            raise ValueError(f"{cls.__name__}'s settings must be a mapping, got {values!r}")
        known = [f.name for f in dataclasses.fields(cls.Settings)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(
                f"{cls.__name__} has no setting {', '.join(unknown)}; its settings: "
                f"{', '.join(known) or 'none'}"
            )
        settings = cls.Settings(**values)
        check_settings(settings)
        return settings

    @staticmethod
    def total(terms: dict[str, Tensor]) -> Tensor:
        """The loss: the sum of the terms, in their order."""
        return functools.reduce(torch.add, terms.values())

    def terms(self, *inputs: Tensor) -> dict[str, Tensor]:
        """The loss's terms, each as it enters the sum (weighted), keyed as term_labels."""
        raise NotImplementedError

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.total(self.terms(*inputs))

    def extra_repr(self) -> str:
        values = dataclasses.asdict(self.settings)
        return ", ".join(f"{name}={value!r}" for name, value in values.items())


def full_precision(loss):
    """Run `loss` outside autocast on float32 (or float64) versions of its float tensors."""

    def promote(x):
        if isinstance(x, Tensor) and x.is_floating_point():
            return x.to(torch.promote_types(x.dtype, torch.float32))
        return x

    @functools.wraps(loss)
    def wrapper(*args, **kwargs):
        device = next(x for x in [*args, *kwargs.values()] if isinstance(x, Tensor)).device
        with torch.autocast(device_type=device.type, enabled=False):
            args = [promote(x) for x in args]
            return loss(*args, **{key: promote(x) for key, x in kwargs.items()})

    return wrapper


def gather_ranks(x: Tensor, gather: bool) -> Tensor:
    """x from every rank, concatenated in rank order, with autograd (module doc: multi-GPU)."""
    if not gather or not dist.is_available() or not dist.is_initialized():
        return x
    if dist.get_world_size() == 1:
        return x
    return torch.cat(dist_nn.all_gather(x), dim=0)


#: The bounds of the settings objectives share by name (the functions check them again).
SETTING_RANGES = {"alpha": (0.0, 1.0), "margin": (0.0, math.inf), "temperature": (1e-6, math.inf)}


def check_settings(settings) -> None:
    """Each setting of the right type and in its bounds: a config with alpha 2 or
    reduction "sum/0" fails when it is made, not in its first training step."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name == "reduction":
            parse_reduction(value)
            continue
        if isinstance(f.default, float) and not (
            isinstance(value, int | float) and not isinstance(value, bool)
        ):
            raise ValueError(f"{f.name} must be a number, got {value!r}")
        if f.name in SETTING_RANGES:
            check_range(f.name, value, *SETTING_RANGES[f.name])


def check_views(a: Tensor, b: Tensor, names: str) -> None:
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        raise TypeError(f"{names} must be tensors, got {type(a).__name__}, {type(b).__name__}")
    if a.ndim != 2 or a.shape != b.shape or len(a) == 0 or not a.is_floating_point():
        raise ValueError(
            f"{names} must be float (N, d) tensors of the same shape, N >= 1, row i of each "
            f"a view of clip i; got {a.dtype} {tuple(a.shape)} and {b.dtype} {tuple(b.shape)}"
        )


def check_labelled(logits: Tensor, feats: Tensor, labels: Tensor) -> None:
    """Float logits (B, classes), float feats (B, d), integer labels (B,) within the classes."""
    batch = len(logits)
    shapes_ok = logits.ndim == feats.ndim == 2 and len(feats) == batch and labels.shape == (batch,)
    if not (shapes_ok and logits.is_floating_point() and feats.is_floating_point()):
        raise ValueError(
            "expected float logits (B, classes), float feats (B, d) and labels (B,); got "
            f"{logits.dtype} {tuple(logits.shape)}, {feats.dtype} {tuple(feats.shape)}, "
            f"{tuple(labels.shape)}"
        )
    if len(labels) == 0 or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be a non-empty integer tensor, got {labels.dtype}")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(
            f"labels must lie in [0, {logits.shape[1] - 1}] (one per logit column), "
            f"got values from {labels.min().item()} to {labels.max().item()}"
        )


def parse_reduction(reduction: str) -> float | None:
    """The divisor of a reduction: D for "sum/<D>", 1 for "sum", None for "mean" (each sum over
    its own pair count); anything else is a ValueError."""
    if reduction == "mean":
        return None
    if reduction == "sum":
        return 1.0
    divisor = math.nan
    if isinstance(reduction, str) and reduction.startswith("sum/"):
        try:
            divisor = float(reduction[4:])
        except ValueError:
            pass
    if not (math.isfinite(divisor) and divisor > 0):
        raise ValueError(
            f'reduction must be "mean", "sum" or "sum/<D>" with D a positive number (the paper '
            f'uses "sum/25" self-supervised, "sum/50" supervised); got {reduction!r}'
        )
    return divisor


def with_divisor(reduction: str | None, divisor: float) -> str:
    """`reduction="sum", divisor=D` as the one reduction string "sum/<D>" that settings hold."""
    if reduction not in (None, "sum") or isinstance(divisor, bool):
        raise ValueError(f'divisor={divisor!r} goes with reduction="sum"; got {reduction!r}')
    if not (isinstance(divisor, int | float) and math.isfinite(divisor) and divisor > 0):
        raise ValueError(f"divisor must be a positive number, got {divisor!r}")
    return f"sum/{divisor:g}"


def check_range(name: str, value: float, low: float, high: float = math.inf) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
