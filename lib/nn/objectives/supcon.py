"""SupCon, supervised contrastive learning (Khosla et al., NeurIPS 2020): every sample of the
batch is pulled towards all the samples of its label at once, against all the others. Not in
the paper: here beside cross-entropy, as supervised ACL adds its angular term."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from aclaudio.nn.objectives.base import (
    Objective,
    check_labelled,
    check_range,
    full_precision,
    gather_ranks,
)


@full_precision
def supcon(
    feats: Tensor, labels: Tensor, *, temperature: float = 0.1, gather: bool = False
) -> Tensor:
    """The supervised contrastive loss (the paper's L_out): for each anchor with a positive (a
    sample of its label), minus the mean over its positives of the log softmax of cosine
    similarity / temperature over every other sample; the mean over those anchors. 0, with a
    gradient of 0, when no two samples share a label.

    Example:
        >>> loss = supcon(torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    """
    check_range("temperature", temperature, 1e-6)
    feats, labels = gather_ranks(feats, gather), gather_ranks(labels, gather)
    u = F.normalize(feats, dim=1)
    logits = (u / temperature) @ u.T
    logits.fill_diagonal_(-math.inf)  # an anchor is never its own candidate
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = labels[:, None] == labels[None, :]
    positive.fill_diagonal_(False)
    count = positive.sum(dim=1)
    anchors = count > 0
    if not anchors.any():
        return feats.sum() * 0.0
    summed = log_prob.masked_fill(~positive, 0.0).sum(dim=1)
    return -(summed[anchors] / count[anchors]).mean()


class SupCon(Objective):
    """Cross-entropy plus SupCon on the features of a labelled batch, as named terms:
    "cross_entropy" (alpha * CE of the logits) and "supcon" ((1 - alpha) * supcon(feats)).

    Example:
        >>> loss = SupCon(alpha=0.5, temperature=0.1)(logits, feats, labels)
    """

    inputs = "labels"
    term_labels = {"cross_entropy": "alpha x cross-entropy", "supcon": "(1 - alpha) x SupCon"}

    @dataclass(frozen=True)
    class Settings:
        alpha: float = 0.5
        temperature: float = 0.1

    @full_precision
    def terms(self, logits: Tensor, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        s = self.settings
        check_labelled(logits, feats, labels)
        check_range("alpha", s.alpha, 0.0, 1.0)
        contrastive = supcon(feats, labels, temperature=s.temperature, gather=self.gather)
        logits, labels = gather_ranks(logits, self.gather), gather_ranks(labels, self.gather)
        return {
            "cross_entropy": s.alpha * F.cross_entropy(logits, labels),
            "supcon": (1 - s.alpha) * contrastive,
        }
