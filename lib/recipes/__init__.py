"""Recipes: a run from start to finish, one module per kind (pretraining, the supervised
baseline, fine-tuning): train with a monitor, evaluate the kept checkpoint, record the result;
and grids of runs executed here, in local processes or on SLURM.

May import: data, nn, training, evaluation.
"""
