"""ACL, the paper's angular contrastive loss: alpha * NT-Xent(z) + (1 - alpha) * L_AM(h).

NT-Xent compares the projections z, the angular-margin term the encoder outputs h; without a
projection head both use h. alpha = 1 is NT-Xent, alpha = 0 the angular term alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from aclaudio.nn.objectives.angular import angular_margin
from aclaudio.nn.objectives.base import Objective, check_range, check_views
from aclaudio.nn.objectives.ntxent import nt_xent


class ACL(Objective):
    """The angular contrastive loss of two views, as named terms: "ntxent" (alpha * NT-Xent of
    the projections z) and "angular" ((1 - alpha) * L_AM of the encoder outputs h).

    Args:
        alpha: the weight of NT-Xent (default 0.3, the paper's best); 1 is NT-Xent alone.
        margin: m of the angular term, in radians (default 0.5).
        temperature: NT-Xent's temperature (default 0.2).
        reduction: of the angular term, "sum/25" (the paper's at batch 128), "sum" with
            `divisor`, or "mean" (angular_margin).
        divisor: D, with reduction="sum".
        gather: under torch.distributed, the loss of the global batch.

    Called with h1, h2 (N, d) of two views, row i of each from clip i, and optionally their
    projections z1, z2 (N, p); without them NT-Xent compares h. Returns a scalar; `terms`
    returns the two weighted terms apart.

    Example:
        >>> h1, h2 = torch.randn(8, 64), torch.randn(8, 64)
        >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = ACL(alpha=0.3, margin=0.5)(h1, h2, z1, z2)
    """

    inputs = "views"
    term_labels = {"ntxent": "alpha x NT-Xent", "angular": "(1 - alpha) x angular"}

    @dataclass(frozen=True)
    class Settings:
        alpha: float = 0.3
        margin: float = 0.5
        temperature: float = 0.2
        reduction: str = "sum/25"

    def terms(self, h1: Tensor, h2: Tensor, z1=None, z2=None) -> dict[str, Tensor]:
        s = self.settings
        if (z1 is None) != (z2 is None):
            raise ValueError("pass both z1 and z2 (projection-head outputs) or neither")
        check_views(h1, h2, "h1 and h2")
        check_range("alpha", s.alpha, 0.0, 1.0)
        z1, z2 = (h1, h2) if z1 is None else (z1, z2)
        contrastive = nt_xent(z1, z2, temperature=s.temperature, gather=self.gather)
        angular = angular_margin(h1, h2, margin=s.margin, reduction=s.reduction, gather=self.gather)
        return {"ntxent": s.alpha * contrastive, "angular": (1 - s.alpha) * angular}


def acl(
    h1: Tensor,
    h2: Tensor,
    z1: Tensor | None = None,
    z2: Tensor | None = None,
    *,
    gather: bool = False,
    **settings,
) -> Tensor:
    """ACL of two views: `ACL(**settings)(h1, h2, z1, z2)`; the settings and shapes as ACL's
    (alpha 0.3, margin 0.5, temperature 0.2, reduction "sum/25").

    Example:
        >>> h1, h2 = torch.randn(8, 64), torch.randn(8, 64)
        >>> loss = acl(h1, h2, alpha=0.3, margin=0.5, reduction="sum", divisor=25)
    """
    return ACL(gather=gather, **settings)(h1, h2, z1, z2)
