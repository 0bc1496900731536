"""The angular-margin term L_AM: positive pairs are charged their squared angle, negative pairs
the squared hinge max(0, m - angle). ACL and supervised ACL add it to their contrastive term.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from aclaudio.nn.objectives.base import (
    Objective,
    check_range,
    check_views,
    full_precision,
    gather_ranks,
    parse_reduction,
    with_divisor,
)

_CHORD_FLOOR = 1e-12  # floor of both squared chords before the square root (see above)
_CLOSE = 1e-3  # squared chord below which (angle < 0.03 rad) the Gram matrix is not trusted
_CHUNK = 16384  # close pairs recomputed at a time (bounds memory when features collapse)


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


def angular_term(feats: Tensor, labels: Tensor, margin: float, divisor: float | None) -> Tensor:
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


@full_precision
def angular_margin(
    h1: Tensor,
    h2: Tensor,
    *,
    margin: float = 0.5,
    reduction: str = "sum/25",
    divisor: float | None = None,
    gather: bool = False,
) -> Tensor:
    """Self-supervised L_AM over the 2N views: theta^2 for the two views of a clip, plus
    max(0, margin - theta)^2 for every pair of views from different clips.

    Args:
        h1, h2: (N, d) float features of two views; row i of each comes from clip i.
        margin: m, in radians: negative pairs closer than m are pushed apart.
        reduction: "sum/<D>" (or "sum" with `divisor=D`) divides the sum over ordered pairs by
            D, the paper's 25 at batch 128; "sum" alone is the plain sum; "mean" divides each
            sum by its pair count (2N positives, 2N(2N - 2) negatives).
        divisor: D, with reduction="sum".
        gather: under torch.distributed, the loss of the global batch (module base).

    Returns:
        The loss, a scalar tensor.

    Example:
        >>> h1, h2 = torch.randn(8, 32), torch.randn(8, 32)
        >>> loss = angular_margin(h1, h2, margin=0.5, reduction="sum", divisor=25)
    """
    check_views(h1, h2, "h1 and h2")
    check_range("margin", margin, 0.0)
    divisor = parse_reduction(reduction if divisor is None else with_divisor(reduction, divisor))
    h = torch.cat([gather_ranks(h1, gather), gather_ranks(h2, gather)])
    clip = torch.arange(len(h) // 2, device=h.device).repeat(2)  # view k belongs to clip k mod N
    return angular_term(h, clip, margin, divisor)


class AngularMargin(Objective):
    """`angular_margin` as an objective: AngularMargin(margin=0.5)(h1, h2). ACL at alpha = 0."""

    inputs = "views"
    term_labels = {"angular": "angular"}

    @dataclass(frozen=True)
    class Settings:
        margin: float = 0.5
        reduction: str = "sum/25"

    def terms(self, h1: Tensor, h2: Tensor, z1=None, z2=None) -> dict[str, Tensor]:
        s = self.settings
        return {
            "angular": angular_margin(
                h1, h2, margin=s.margin, reduction=s.reduction, gather=self.gather
            )
        }
