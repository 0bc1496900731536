"""aclaudio: angular contrastive learning of audio representations.

A thin library behind the study's notebooks: datasets, features, augmentation, models,
losses, training and evaluation. See README.md for the tour.
"""

from importlib.metadata import version

__version__ = version("aclaudio")  # written once, in pyproject.toml
