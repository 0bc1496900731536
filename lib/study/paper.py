"""The paper's published numbers (docs/protocol.md), kept only to compare ours with.

FSDnoisy18k test set (947 clips), one run each, micro accuracy in %. Nothing in this module is
produced by this repository: every other number in results/ is.
"""

from __future__ import annotations

import pandas as pd

#: Self-supervised pretraining + linear evaluation, tau = 0.2, margin = 0.5 (alpha = 1: NT-Xent).
PAPER_SSL_LINEAR_ACCURACY = pd.DataFrame(
    {
        "alpha": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        "accuracy": [71.3, 75.0, 74.7, 77.1, 71.7, 74.0, 76.6, 75.7, 76.5, 74.5, 74.2],
    }
)

#: Supervised baseline CNN, by training subset (alpha = 1: cross-entropy only).
PAPER_SUPERVISED_ACCURACY = pd.DataFrame(
    {
        "alpha": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        "clean": [56.0, 61.4, 61.0, 62.1, 64.5, 63.0, 57.9, 58.1, 58.6, 60.2],
        "all": [67.4, 69.8, 71.9, 72.7, 71.2, 71.3, 73.6, 72.7, 71.6, 70.1],
        "noisy": [64.9, 65.4, 68.3, 68.3, 67.7, 66.9, 67.5, 67.1, 66.1, 66.4],
        "noisy_small": [34.5, 39.9, 39.3, 33.5, 39.0, 33.3, 35.0, 31.6, 33.1, 33.7],
    }
)

#: The test set size behind every number above.
PAPER_TEST_CLIPS = 947
