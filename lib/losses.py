"""The study's losses: NT-Xent, the angular-margin term, their mix ACL, and supervised ACL.

    ACL = alpha * NT-Xent(z) + (1 - alpha) * L_AM(h)         (self-supervised)
    supervised ACL = alpha * CE(logits) + (1 - alpha) * L_AM(feats; same label = positive)

Inputs are the two views of a batch as (N, d) tensors whose row i comes from clip i (or, in the
supervised form, one batch with labels). Every function L2-normalises inside, runs in float32
even under autocast (float64 stays float64), and returns a scalar. The classes NTXent,
AngularMargin, ACL and SupervisedACL are the same losses as torch modules: the constructor takes
the hyperparameters (keyword-only, the functions' defaults), forward the tensors.

Angles. L_AM needs theta_ij = arccos(u_i . u_j) for unit vectors u. arccos has an infinite slope
at +-1 and float32 rounds any cosine within 6e-8 of 1 to exactly 1 (clamping at 1 - 1e-10 is a
no-op), so two coinciding views give inf * 0 = nan gradients. We use the half-angle form
theta = 2 atan2(|u_i - u_j|, |u_i + u_j|), with |u_i -+ u_j|^2 = 2 -+ 2 u_i . u_j from one Gram
matrix, each floored at 1e-12 before the square root: loss and gradient are finite everywhere
(at exact coincidence the hinge, a cone in theta, gets the subgradient 0). Near theta = 0 the
cosine's rounding would dominate |u_i - u_j|^2 (about 3e-4 rad of error in float32), so pairs
closer than 0.03 rad take its value from their difference vectors, while the gradient keeps the
Gram path. Angles are computed only for the pairs that contribute: the positives and the
negatives inside the margin.

Multi-GPU. With gather=True every rank all-gathers the views (torch.distributed.nn, which keeps
autograd) and computes the loss of the global batch, identical on all ranks and equal to the
single-process loss. all_gather's backward sums the gradient of each rank's copy of the loss,
so a rank's local inputs receive world_size times the single-process gradient, and DDP's
averaging over ranks then yields exactly the single-process parameter gradient. Outside an
initialised process group (or with one rank) gather=True does nothing. All ranks need the same
local batch size.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import Tensor, nn

_CHORD_FLOOR = 1e-12  # floor of both squared chords before the square root (see above)
_CLOSE = 1e-3  # squared chord below which (angle < 0.03 rad) the Gram matrix is not trusted
_CHUNK = 16384  # close pairs recomputed at a time (bounds memory when features collapse)


def _full_precision(loss):
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


def _gather(x: Tensor, gather: bool) -> Tensor:
    """x from every rank, concatenated in rank order, with autograd (module doc: gradients)."""
    if not gather or not dist.is_available() or not dist.is_initialized():
        return x
    if dist.get_world_size() == 1:
        return x
    return torch.cat(dist_nn.all_gather(x), dim=0)


def _check_views(a: Tensor, b: Tensor, names: str) -> None:
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        raise TypeError(f"{names} must be tensors, got {type(a).__name__}, {type(b).__name__}")
    if a.ndim != 2 or a.shape != b.shape or len(a) == 0 or not a.is_floating_point():
        raise ValueError(
            f"{names} must be float (N, d) tensors of the same shape, N >= 1, row i of each "
            f"a view of clip i; got {a.dtype} {tuple(a.shape)} and {b.dtype} {tuple(b.shape)}"
        )


def _check_range(name: str, value: float, low: float, high: float = math.inf) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")


def _parse_reduction(reduction: str) -> float | None:
    """The divisor D of "sum/<D>", or None for "mean"; anything else is a ValueError."""
    if reduction == "mean":
        return None
    divisor = math.nan
    if isinstance(reduction, str) and reduction.startswith("sum/"):
        try:
            divisor = float(reduction[4:])
        except ValueError:
            pass
    if not (math.isfinite(divisor) and divisor > 0):
        raise ValueError(
            f'reduction must be "mean" or "sum/<D>" with D a positive number (the paper uses '
            f'"sum/25" self-supervised, "sum/50" supervised); got {reduction!r}'
        )
    return divisor


def _pair_angles(u: Tensor, cos: Tensor, pairs: Tensor) -> Tensor:
    """Angles of the pairs `pairs` (flat indices i * B + j) of the B unit rows of u, given the
    flattened Gram matrix `cos`."""
    sq_chord = 2 - 2 * cos.index_select(0, pairs)  # |u_i - u_j|^2 for unit vectors
    # Close pairs (angle < 0.03 rad): the cosine's rounding dominates |u_i - u_j|^2, so take its
    # value from the difference vectors (in chunks, without autograd: the gradient keeps the
    # Gram path, whose absolute error is small).
    close = (sq_chord.detach() < _CLOSE).nonzero().squeeze(1)
    with torch.no_grad():
        b = len(u)
        exact = [(u[k // b] - u[k % b]).square().sum(1) for k in pairs[close].split(_CHUNK)]
        correction = torch.cat([*exact, sq_chord.new_empty(0)]) - sq_chord[close]
    sq_chord = sq_chord.index_add(0, close, correction)
    # theta = 2 atan2(|u_i - u_j|, |u_i + u_j|), with |u_i + u_j|^2 = 4 - |u_i - u_j|^2
    chord = sq_chord.clamp_min(_CHORD_FLOOR).sqrt()
    anti_chord = (4 - sq_chord).clamp_min(_CHORD_FLOOR).sqrt()
    return 2 * torch.atan2(chord, anti_chord)


def _angular_term(feats: Tensor, labels: Tensor, margin: float, divisor: float | None) -> Tensor:
    """AMC-style term over the off-diagonal pairs of `feats`: positives share a label.

    Each unordered pair counts twice, as (i, j) and (j, i), as in the authors' code, so "sum/D"
    matches their constant D. Angles are computed only for the pairs that contribute.
    """
    u = F.normalize(feats, dim=1)
    cos = (u @ u.T).flatten()
    b = len(labels)
    # positives: same label, off the diagonal (a sample is not its own positive)
    positive = labels[:, None] == labels[None, :]
    positive.fill_diagonal_(False)
    # negatives: different label; only those inside the margin (theta < m) have a hinge > 0
    inside = cos.detach().view(b, b) >= math.cos(min(margin, math.pi))
    active = (labels[:, None] != labels[None, :]) & inside
    n_pos = int(positive.sum())
    pairs = torch.cat([positive.flatten().nonzero(), active.flatten().nonzero()]).squeeze(1)
    theta = _pair_angles(u, cos, pairs)
    pull = theta[:n_pos].square().sum()
    push = F.relu(margin - theta[n_pos:]).square().sum()
    if divisor is not None:
        return (pull + push) / divisor
    # "mean": each sum over its own pair count, so batch size leaves the balance with alpha alone
    n_neg = b * b - b - n_pos
    return pull / max(n_pos, 1) + push / max(n_neg, 1)


@_full_precision
def nt_xent(z1: Tensor, z2: Tensor, *, temperature: float = 0.2, gather: bool = False) -> Tensor:
    """SimCLR's NT-Xent: mean over the 2N views of -log softmax of the other view of the clip.

    Each anchor's denominator has the 2N - 1 other views (itself excluded).
    """
    _check_views(z1, z2, "z1 and z2")
    _check_range("temperature", temperature, 1e-6)
    z = F.normalize(torch.cat([_gather(z1, gather), _gather(z2, gather)]), dim=1)
    n = len(z) // 2
    logits = (z / temperature) @ z.T  # scaling z costs 2N x d, scaling the logits (2N)^2
    logits.fill_diagonal_(-math.inf)  # an anchor is never its own candidate
    target = torch.arange(2 * n, device=z.device).roll(n)  # row i's positive: i + N (mod 2N)
    return F.cross_entropy(logits, target)


@_full_precision
def angular_margin(
    h1: Tensor,
    h2: Tensor,
    *,
    margin: float = 0.5,
    reduction: str = "sum/25",
    gather: bool = False,
) -> Tensor:
    """Self-supervised L_AM over the 2N views: theta^2 for the two views of a clip, plus
    max(0, margin - theta)^2 for every pair of views from different clips.

    reduction: "sum/<D>" divides the total by D (the paper: 25 at batch 128); "mean" divides
    each sum by its pair count (2N positives, 2N(2N - 2) negatives).
    """
    _check_views(h1, h2, "h1 and h2")
    _check_range("margin", margin, 0.0)
    divisor = _parse_reduction(reduction)
    h = torch.cat([_gather(h1, gather), _gather(h2, gather)])
    clip = torch.arange(len(h) // 2, device=h.device).repeat(2)  # view k belongs to clip k mod N
    return _angular_term(h, clip, margin, divisor)


def acl(
    h1: Tensor,
    h2: Tensor,
    z1: Tensor | None = None,
    z2: Tensor | None = None,
    *,
    alpha: float = 0.3,
    margin: float = 0.5,
    temperature: float = 0.2,
    reduction: str = "sum/25",
    gather: bool = False,
) -> Tensor:
    """Angular contrastive loss: alpha * nt_xent(z1, z2) + (1 - alpha) * angular_margin(h1, h2).

    h: encoder outputs, z: projection-head outputs; without z (no head) both terms use h.
    alpha = 1 gives exactly nt_xent, alpha = 0 exactly angular_margin.
    """
    contrastive, angular = acl_terms(
        h1, h2, z1, z2, alpha=alpha, margin=margin, temperature=temperature,
        reduction=reduction, gather=gather,
    )  # fmt: skip
    return contrastive + angular


def acl_terms(
    h1: Tensor,
    h2: Tensor,
    z1: Tensor | None = None,
    z2: Tensor | None = None,
    *,
    alpha: float = 0.3,
    margin: float = 0.5,
    temperature: float = 0.2,
    reduction: str = "sum/25",
    gather: bool = False,
) -> tuple[Tensor, Tensor]:
    """ACL's two terms as they enter its sum, alpha * nt_xent and (1 - alpha) * angular_margin
    (`acl`'s arguments): apart, to see which one drives training."""
    if (z1 is None) != (z2 is None):
        raise ValueError("pass both z1 and z2 (projection-head outputs) or neither")
    _check_range("alpha", alpha, 0.0, 1.0)
    if z1 is None:
        z1, z2 = h1, h2
    contrastive = nt_xent(z1, z2, temperature=temperature, gather=gather)
    angular = angular_margin(h1, h2, margin=margin, reduction=reduction, gather=gather)
    return alpha * contrastive, (1 - alpha) * angular


@_full_precision
def supervised_acl(
    logits: Tensor,
    feats: Tensor,
    labels: Tensor,
    *,
    alpha: float = 0.7,
    margin: float = 0.5,
    reduction: str = "sum/50",
    gather: bool = False,
) -> Tensor:
    """alpha * cross-entropy(logits, labels) + (1 - alpha) * L_AM(feats), where positives are
    same-label pairs and negatives different-label pairs of the batch ("sum/50": the paper at
    batch 64; with "mean" a batch without positive pairs contributes 0 for them)."""
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
    _check_range("alpha", alpha, 0.0, 1.0)
    _check_range("margin", margin, 0.0)
    divisor = _parse_reduction(reduction)
    logits, feats, labels = (_gather(x, gather) for x in (logits, feats, labels))
    angular = _angular_term(feats, labels, margin, divisor)
    return alpha * F.cross_entropy(logits, labels) + (1 - alpha) * angular


class _Loss(nn.Module):
    """A loss function's hyperparameters held as plain attributes (so the state_dict stays
    empty), passed on by forward and shown by repr."""

    def __init__(self, **hyperparameters) -> None:
        super().__init__()
        self._names = tuple(hyperparameters)
        for name, value in hyperparameters.items():
            setattr(self, name, value)

    def hyperparameters(self) -> dict:
        """The keyword arguments forward passes to the function, as they stand now."""
        return {name: getattr(self, name) for name in self._names}

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.hyperparameters().items())


class NTXent(_Loss):
    """`nt_xent` as a module: NTXent(temperature=0.2)(z1, z2)."""

    def __init__(self, *, temperature: float = 0.2, gather: bool = False) -> None:
        super().__init__(temperature=temperature, gather=gather)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return nt_xent(z1, z2, **self.hyperparameters())


class AngularMargin(_Loss):
    """`angular_margin` as a module: AngularMargin(margin=0.5)(h1, h2)."""

    def __init__(
        self, *, margin: float = 0.5, reduction: str = "sum/25", gather: bool = False
    ) -> None:
        super().__init__(margin=margin, reduction=reduction, gather=gather)

    def forward(self, h1: Tensor, h2: Tensor) -> Tensor:
        return angular_margin(h1, h2, **self.hyperparameters())


class ACL(_Loss):
    """`acl` as a module: ACL(alpha=0.3, margin=0.5)(h1, h2, z1, z2), z optional."""

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        margin: float = 0.5,
        temperature: float = 0.2,
        reduction: str = "sum/25",
        gather: bool = False,
    ) -> None:
        super().__init__(
            alpha=alpha, margin=margin, temperature=temperature, reduction=reduction, gather=gather
        )

    def forward(
        self, h1: Tensor, h2: Tensor, z1: Tensor | None = None, z2: Tensor | None = None
    ) -> Tensor:
        return acl(h1, h2, z1, z2, **self.hyperparameters())


class SupervisedACL(_Loss):
    """`supervised_acl` as a module: SupervisedACL(alpha=0.7)(logits, feats, labels)."""

    def __init__(
        self,
        *,
        alpha: float = 0.7,
        margin: float = 0.5,
        reduction: str = "sum/50",
        gather: bool = False,
    ) -> None:
        super().__init__(alpha=alpha, margin=margin, reduction=reduction, gather=gather)

    def forward(self, logits: Tensor, feats: Tensor, labels: Tensor) -> Tensor:
        return supervised_acl(logits, feats, labels, **self.hyperparameters())
