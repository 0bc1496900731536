"""NT-Xent with the margin inside the softmax, as face and speaker verification put it: the
positive pair's logit is made harder by an additive angular margin (ArcFace, AAM-softmax:
cos(theta + m)) or an additive cosine margin (CosFace, AM-softmax: cos(theta) - m), so that a
view must beat every negative by a margin to pick its partner. ACL puts its margin beside the
softmax instead, as a second term; notebook 07 sets the two side by side.

The positive angle is the half-angle form of angular.py, 2 atan2(|u - v|, |u + v|), whose
gradient stays finite when two views coincide (arccos's does not). theta + m is capped at pi,
where cos stops decreasing: a pair farther apart than pi - m keeps the largest penalty.
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
)

_FLOOR = 1e-12  # squared chords are floored before the square root (as in angular.py)


@full_precision
def margin_nt_xent(
    z1: Tensor,
    z2: Tensor,
    *,
    margin: float,
    kind: str,
    temperature: float = 0.2,
    gather: bool = False,
) -> Tensor:
    """NT-Xent over the 2N views with a margin on each anchor's positive logit.

    Args:
        z1, z2: (N, d) float projections of two views; row i of each comes from clip i.
        margin: m: radians added to the positive angle ("angular"), or subtracted from its
            cosine ("cosine"); 0 gives NT-Xent exactly.
        kind: "angular" (ArcFace) or "cosine" (CosFace).
        temperature: tau, dividing every logit.
        gather: under torch.distributed, the loss of the global batch.

    Example:
        >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = margin_nt_xent(z1, z2, margin=0.2, kind="angular")
    """
    check_views(z1, z2, "z1 and z2")
    check_range("temperature", temperature, 1e-6)
    check_range("margin", margin, 0.0, math.pi if kind == "angular" else 2.0)
    if kind not in ("angular", "cosine"):
        raise ValueError(f'kind must be "angular" or "cosine", got {kind!r}')
    u = F.normalize(torch.cat([gather_ranks(z1, gather), gather_ranks(z2, gather)]), dim=1)
    n = len(u) // 2
    partner = torch.arange(2 * n, device=u.device).roll(n)  # row i's positive: i + N (mod 2N)
    cos = u @ u.T
    cos.fill_diagonal_(-math.inf)  # an anchor is never its own candidate
    v = u[partner]
    chord = (u - v).square().sum(1).clamp_min(_FLOOR).sqrt()
    anti_chord = (u + v).square().sum(1).clamp_min(_FLOOR).sqrt()
    theta = 2 * torch.atan2(chord, anti_chord)
    if kind == "angular":
        positive = torch.cos((theta + margin).clamp_max(math.pi))
    else:
        positive = torch.cos(theta) - margin
    rows = torch.arange(2 * n, device=u.device)
    logits = cos.index_put((rows, partner), positive) / temperature
    return F.cross_entropy(logits, partner)


class _MarginNTXent(Objective):
    inputs = "views"
    kind: str

    @dataclass(frozen=True)
    class Settings:
        margin: float = 0.2
        temperature: float = 0.2

    def terms(self, h1: Tensor, h2: Tensor, z1=None, z2=None) -> dict[str, Tensor]:
        z1, z2 = (h1, h2) if z1 is None else (z1, z2)
        s = self.settings
        loss = margin_nt_xent(
            z1, z2, margin=s.margin, kind=self.kind, temperature=s.temperature, gather=self.gather
        )
        return {"ntxent": loss}


class ArcFaceNTXent(_MarginNTXent):
    """NT-Xent whose positive logit is cos(theta + margin) / tau (ArcFace's additive angular
    margin), on the projections z (h without a head).

    Example:
        >>> loss = ArcFaceNTXent(margin=0.2, temperature=0.2)(h1, h2, z1, z2)
    """

    kind = "angular"
    term_labels = {"ntxent": "NT-Xent, angular margin"}


class CosFaceNTXent(_MarginNTXent):
    """NT-Xent whose positive logit is (cos(theta) - margin) / tau (CosFace's additive cosine
    margin), on the projections z (h without a head).

    Example:
        >>> loss = CosFaceNTXent(margin=0.2, temperature=0.2)(h1, h2, z1, z2)
    """

    kind = "cosine"
    term_labels = {"ntxent": "NT-Xent, cosine margin"}
