"""NT-Xent, SimCLR's contrastive loss: each view must pick the other view of its clip among
every view of the batch."""

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


@full_precision
def nt_xent(z1: Tensor, z2: Tensor, *, temperature: float = 0.2, gather: bool = False) -> Tensor:
    """SimCLR's NT-Xent: mean over the 2N views of -log softmax of the other view of the clip.

    Each anchor's denominator has the 2N - 1 other views (itself excluded).

    Example:
        >>> loss = nt_xent(torch.randn(8, 16), torch.randn(8, 16), temperature=0.2)
    """
    check_views(z1, z2, "z1 and z2")
    check_range("temperature", temperature, 1e-6)
    z = F.normalize(torch.cat([gather_ranks(z1, gather), gather_ranks(z2, gather)]), dim=1)
    n = len(z) // 2
    logits = (z / temperature) @ z.T  # scaling z costs 2N x d, scaling the logits (2N)^2
    logits.fill_diagonal_(-math.inf)  # an anchor is never its own candidate
    target = torch.arange(2 * n, device=z.device).roll(n)  # row i's positive: i + N (mod 2N)
    return F.cross_entropy(logits, target)


class NTXent(Objective):
    """`nt_xent` as an objective: NTXent(temperature=0.2)(h1, h2, z1, z2) compares the
    projections z (the encoder outputs h without a projection head)."""

    inputs = "views"
    term_labels = {"ntxent": "NT-Xent"}

    @dataclass(frozen=True)
    class Settings:
        temperature: float = 0.2

    def terms(self, h1: Tensor, h2: Tensor, z1=None, z2=None) -> dict[str, Tensor]:
        z1, z2 = (h1, h2) if z1 is None else (z1, z2)
        return {
            "ntxent": nt_xent(z1, z2, temperature=self.settings.temperature, gather=self.gather)
        }
