"""The study: what the notebooks run and how they report it.

Owns the grids of runs per profile, the names of every table and figure the notebooks write
(artifacts), the paired comparisons, the conclusions written from the numbers, the figures'
style, the teaching material of notebook 01, the paper's published numbers, the web report and
README's headline.

May import: data, nn, training, evaluation, recipes.
"""
