"""VICReg (Bardes, Ponce and LeCun, ICLR 2022): a non-contrastive objective, no negatives at
all. The two views' embeddings are pulled together (invariance) while each dimension keeps a
standard deviation of at least 1 over the batch (variance) and different dimensions stay
uncorrelated (covariance): collapse is prevented by the batch's statistics, not by pushing
other clips away.

The terms follow the authors' code: mean squared distance; mean of max(0, 1 - std) per view,
halved; squared off-diagonal covariances summed over each view, divided by the dimension. The
study's projection head ends on the unit sphere, where no coordinate can reach a standard
deviation of 1, so VICReg reads the encoder's output h.
"""

from __future__ import annotations

from dataclasses import dataclass

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
def vicreg_terms(
    h1: Tensor,
    h2: Tensor,
    *,
    invariance: float = 25.0,
    variance: float = 25.0,
    covariance: float = 1.0,
    eps: float = 1e-4,
    gather: bool = False,
) -> dict[str, Tensor]:
    """VICReg's three weighted terms of two views.

    Args:
        h1, h2: (N, d) float embeddings of two views, N >= 2; row i of each from clip i.
        invariance, variance, covariance: the weights lambda, mu and nu (the paper's 25, 25, 1).
        eps: added to each variance before its square root.
        gather: under torch.distributed, the terms of the global batch.

    Example:
        >>> terms = vicreg_terms(torch.randn(8, 32), torch.randn(8, 32))
        >>> loss = sum(terms.values())
    """
    check_views(h1, h2, "h1 and h2")
    if len(h1) < 2:
        raise ValueError(f"VICReg needs at least 2 samples for its statistics, got {len(h1)}")
    weights = {"invariance": invariance, "variance": variance, "covariance": covariance}
    for name, value in {**weights, "eps": eps}.items():
        check_range(name, value, 0.0)
    h1, h2 = gather_ranks(h1, gather), gather_ranks(h2, gather)
    n, d = h1.shape
    spread = off_diagonal = h1.new_zeros(())
    for h in (h1, h2):
        std = (h.var(dim=0) + eps).sqrt()
        spread = spread + F.relu(1 - std).mean() / 2
        centred = h - h.mean(dim=0)
        cov = centred.T @ centred / (n - 1)
        off_diagonal = off_diagonal + (cov.square().sum() - cov.diagonal().square().sum()) / d
    return {
        "invariance": invariance * F.mse_loss(h1, h2),
        "variance": variance * spread,
        "covariance": covariance * off_diagonal,
    }


class VICReg(Objective):
    """VICReg on the encoder outputs h of two views, as named terms "invariance", "variance"
    and "covariance" (each weighted; the projections z are not used).

    Example:
        >>> loss = VICReg()(h1, h2)
    """

    inputs = "views"
    term_labels = {
        "invariance": "lambda x invariance",
        "variance": "mu x variance",
        "covariance": "nu x covariance",
    }

    @dataclass(frozen=True)
    class Settings:
        invariance: float = 25.0
        variance: float = 25.0
        covariance: float = 1.0
        eps: float = 1e-4

    def terms(self, h1: Tensor, h2: Tensor, z1=None, z2=None) -> dict[str, Tensor]:
        s = self.settings
        return vicreg_terms(
            h1,
            h2,
            invariance=s.invariance,
            variance=s.variance,
            covariance=s.covariance,
            eps=s.eps,
            gather=self.gather,
        )


def vicreg(h1: Tensor, h2: Tensor, **settings) -> Tensor:
    """VICReg's loss of two views: `VICReg(**settings)(h1, h2)`.

    Example:
        >>> loss = vicreg(torch.randn(8, 32), torch.randn(8, 32))
    """
    return VICReg(**settings)(h1, h2)
