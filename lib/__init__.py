"""aclaudio: angular contrastive learning of audio representations.

A thin library behind the study's notebooks, in layers that import only downwards:

    data         audio files -> datasets, subsets, the log-mel feature cache, downloads
    nn           encoders, projection head, augmentation, the objectives (torch only)
    training     configs and profiles, the run store, batches, the step, the epoch loop
    evaluation   embeddings, kNN monitor, linear evaluation, accuracies, statistics
    recipes      pretrain, supervised, finetune: a run end to end; grids of runs (sweep)
    study        the notebooks' grids, artifacts, comparisons, conclusions, plots, report
    cli          the `aclaudio` command and its benchmarks

and at the top, for use in other code: `aclaudio.losses` (the loss functions),
`aclaudio.export` (a run's encoder as one file) and `aclaudio.hear` (the HEAR API).
See README.md for the tour.
"""

from importlib.metadata import version

__version__ = version("aclaudio")  # written once, in pyproject.toml
