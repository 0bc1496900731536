"""Supervised ACL: alpha * cross-entropy(logits) + (1 - alpha) * L_AM(feats), where positives
are same-label pairs and negatives different-label pairs of the batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from aclaudio.nn.objectives.angular import angular_term
from aclaudio.nn.objectives.base import (
    Objective,
    check_labelled,
    check_range,
    full_precision,
    gather_ranks,
    parse_reduction,
)


@full_precision
def supervised_acl(
    logits: Tensor,
    feats: Tensor,
    labels: Tensor,
    *,
    alpha: float = 0.7,
    margin: float = 0.5,
    reduction: str = "sum/50",
    divisor: float | None = None,
    gather: bool = False,
) -> Tensor:
    """alpha * cross-entropy(logits, labels) + (1 - alpha) * L_AM(feats), where positives are
    pairs of one label and negatives pairs of two.

    Args:
        logits: (B, classes) float classifier outputs.
        feats: (B, d) float features the angular term compares (the encoder's output).
        labels: (B,) integer labels in [0, classes).
        alpha: the weight of cross-entropy; 1 is cross-entropy alone.
        margin: m, in radians.
        reduction: "sum/<D>" (or "sum" with `divisor=D`): the paper's "sum/50" at batch 64;
            "mean": each sum over its pair count (a batch without positive pairs adds 0 for
            them).
        divisor: D, with reduction="sum".
        gather: under torch.distributed, the loss of the global batch.

    Example:
        >>> logits, feats = torch.randn(8, 4), torch.randn(8, 32)
        >>> loss = supervised_acl(logits, feats, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    """
    objective = SupervisedACL(
        alpha=alpha, margin=margin, reduction=reduction, divisor=divisor, gather=gather
    )
    return objective(logits, feats, labels)


class SupervisedACL(Objective):
    """Supervised ACL of a labelled batch, as named terms: "cross_entropy" (alpha * CE) and
    "angular" ((1 - alpha) * L_AM of the features). alpha = 1 is cross-entropy alone."""

    inputs = "labels"
    term_labels = {"cross_entropy": "alpha x cross-entropy", "angular": "(1 - alpha) x angular"}

    @dataclass(frozen=True)
    class Settings:
        alpha: float = 0.7
        margin: float = 0.5
        reduction: str = "sum/50"

    @full_precision
    def terms(self, logits: Tensor, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        s = self.settings
        check_labelled(logits, feats, labels)
        check_range("alpha", s.alpha, 0.0, 1.0)
        check_range("margin", s.margin, 0.0)
        divisor = parse_reduction(s.reduction)
        logits, feats, labels = (gather_ranks(x, self.gather) for x in (logits, feats, labels))
        angular = angular_term(feats, labels, s.margin, divisor)
        return {
            "cross_entropy": s.alpha * F.cross_entropy(logits, labels),
            "angular": (1 - s.alpha) * angular,
        }
