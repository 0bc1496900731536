"""Cross-entropy of a classifier's logits: fine-tuning's objective."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from aclaudio.nn.objectives.base import Objective, check_labelled, full_precision


class CrossEntropy(Objective):
    """Cross-entropy of the logits against the labels (the features are not used)."""

    inputs = "labels"
    term_labels = {"cross_entropy": "cross-entropy"}

    @dataclass(frozen=True)
    class Settings:
        pass

    @full_precision
    def terms(self, logits: Tensor, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        check_labelled(logits, feats, labels)
        return {"cross_entropy": F.cross_entropy(logits, labels)}
