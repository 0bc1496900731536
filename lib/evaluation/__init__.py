"""Evaluation: what a network has learnt, measured.

Owns the embeddings of cached clips, the kNN monitor, the authors' linear evaluation, the
accuracies (micro, balanced) with intervals, the statistics of paired comparisons, the
embedding analyses and the difficulty baseline.

May import: data, nn, training.
"""
