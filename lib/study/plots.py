"""One figure style for every notebook, and saving figures where the results live.

The conventions, so that a reader learns them once: one colour per meaning in every notebook
(no angular term blue, with it red, no training grey; positive pairs green, negative pairs and
margins purple), accuracies in percent, legends outside the data.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter

#: Colours by method. Cross-entropy shares NT-Xent's blue (the loss without an angular term),
#: supervised ACL shares ACL's red.
METHOD_COLOURS = {"NT-Xent": "#4C72B0", "ACL": "#C44E52", "CE": "#4C72B0", "random init": "#8C8C8C"}
#: Colours of the two kinds of pairs the angular term acts on; neither is a method's colour.
PAIR_COLOURS = {"positive": "#55A868", "negative": "#8172B3"}
#: The paper's numbers wherever they are drawn beside ours.
PAPER_COLOUR = "black"


def colour(method: str) -> str:
    """A method's colour; "ACL (alpha 0.7)" is ACL's."""
    return METHOD_COLOURS[method.split(" (")[0]]


def margin_colours(margins) -> dict[float, tuple]:
    """A sequential palette for margins (light: small, dark: large), in the negative pairs' hue:
    the margin is how far the negatives are pushed."""
    shades = plt.get_cmap("Purples")(np.linspace(0.35, 0.95, len(margins)))
    return dict(zip(sorted(margins), map(tuple, shades), strict=True))


def use_style() -> None:
    """The study's look: seaborn's whitegrid, readable sizes, tight layout, 150 dpi output."""
    sns.set_theme(context="notebook", style="whitegrid", palette="deep")
    plt.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "axes.titlesize": 12,
            "axes.titleweight": "bold",
            "legend.frameon": False,
        }
    )


def percent_axis(ax: plt.Axes, axis: str = "y", *, points: bool = False) -> None:
    """Ticks in percent for fractions of 1; points=True for differences (fractions) in points."""
    formatter = PercentFormatter(xmax=1, decimals=0)
    if points:
        formatter = plt.FuncFormatter(lambda x, _: f"{100 * x:+.0f}" if x else "0")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(formatter)


def legend_outside(ax: plt.Axes, **kwargs) -> None:
    """The legend to the right of the axes, clear of the data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, **kwargs)


def paired_seeds(table: pd.DataFrame, methods: list[str], paired: pd.DataFrame) -> plt.Figure:
    """Left: each seed's accuracy per method, one line per seed joining its methods. Right: each
    comparison's per-seed differences, their mean, the t-interval over seeds and the bootstrap
    interval over seeds and test clips.

    table: one row per run (method, seed, test_micro); paired: one row per comparison "A - B"
    with mean_difference, ci (None for one seed) and bootstrap_ci.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"wspace": 0.35})
    wide = table.pivot_table(index="seed", columns="method", values="test_micro")[methods]
    x = np.arange(len(methods))
    for _, row in wide.iterrows():
        left.plot(x, row.to_numpy(), color="0.75", lw=1, zorder=1)
    for i, method in enumerate(methods):
        left.scatter(np.full(len(wide), i), wide[method], color=colour(method), s=40, zorder=2)
    left.set_xticks(x, methods)
    left.set(title="Test accuracy, one line per seed", ylabel="linear evaluation accuracy")
    percent_axis(left)

    _paired_differences(right, wide, paired)
    right.axvline(0, color="black", lw=1)
    right.set_yticks(range(len(paired)), paired["comparison"])
    right.invert_yaxis()
    right.set(title="Paired differences", xlabel="difference (points)")
    percent_axis(right, "x", points=True)
    legend_outside(right)
    return fig


def _paired_differences(ax: plt.Axes, wide: pd.DataFrame, paired: pd.DataFrame) -> None:
    """Each comparison "A - B" on its own row: the seeds' differences, the two intervals and
    the mean difference, in A's colour; the legend labels the first row only."""
    for i, row in enumerate(paired.itertuples()):
        a, b = row.comparison.split(" - ")
        diffs = (wide[a] - wide[b]).dropna()
        ax.scatter(
            diffs,
            np.full(len(diffs), i + 0.12),
            color="0.55",
            s=18,
            zorder=3,
            label="a seed" if i == 0 else None,
        )
        boot = row.bootstrap_ci
        ax.plot(
            boot,
            [i - 0.12] * 2,
            color=colour(a),
            lw=2,
            alpha=0.5,
            label="95 % interval, seeds and clips" if i == 0 else None,
        )
        if row.ci is not None and not pd.isna(row.ci).any():
            ax.plot(
                row.ci,
                [i] * 2,
                color=colour(a),
                lw=4,
                label="95 % t-interval, seeds" if i == 0 else None,
            )
        ax.scatter(
            [row.mean_difference],
            [i],
            color=colour(a),
            marker="D",
            s=50,
            zorder=4,
            label="mean difference" if i == 0 else None,
        )


def seeds_and_paper(table: pd.DataFrame, paper: pd.DataFrame, subsets: list[str]) -> plt.Figure:
    """Supervised accuracy by training subset: each seed a point, the mean a bar across it, and
    the paper's value for the same alpha and subset as a black marker beside it.

    table: one row per run (subset, alpha, loss, test_micro); paper: the paper's table in %,
    indexed by alpha, one column per subset.
    """
    fig, ax = plt.subplots(figsize=(9, 4.2))
    losses = sorted(table["loss"].unique(), key=lambda name: name != "CE")
    width = 0.8 / len(losses)
    for j, loss in enumerate(losses):
        rows = table[table["loss"] == loss]
        alpha = rows["alpha"].iloc[0]
        for i, subset in enumerate(subsets):
            x = i - 0.4 + width * (j + 0.5)
            seeds = rows[rows["subset"] == subset]["test_micro"]
            ax.scatter(
                np.full(len(seeds), x - width / 6),
                seeds,
                color=colour(loss),
                s=25,
                label=loss if i == 0 else None,
            )
            ax.hlines(seeds.mean(), x - width / 3, x, color=colour(loss), lw=2)
            if alpha in paper.index and subset in paper.columns:
                ax.scatter(
                    [x + width / 6],
                    [paper.loc[alpha, subset] / 100],
                    marker="x",
                    color=PAPER_COLOUR,
                    s=40,
                    label="paper, same alpha (FSDnoisy18k)" if i == j == 0 else None,
                )
    ax.set_xticks(range(len(subsets)), subsets)
    ax.set(
        title="Supervised baseline CNN: test accuracy by training subset",
        xlabel="training subset",
        ylabel="test accuracy (points: seeds; bars: mean)",
    )
    percent_axis(ax)
    legend_outside(ax)
    return fig


def difference_heatmap(diff: pd.DataFrame, boxed: tuple[float, float], *, title: str) -> plt.Figure:
    """A diverging heatmap of differences in points (alpha rows x margin columns), red where
    ACL is higher, blue where NT-Xent is, with the cell `boxed` = (alpha, margin) outlined."""
    fig, ax = plt.subplots(figsize=(1.1 * len(diff.columns) + 3, 0.7 * len(diff) + 2))
    limit = max(float(np.nanmax(np.abs(diff.to_numpy()))), 1.0)
    sns.heatmap(
        diff,
        annot=True,
        fmt="+.1f",
        cmap="RdBu_r",
        center=0,
        vmin=-limit,
        vmax=limit,
        cbar_kws={"label": "ACL - NT-Xent (points)"},
        ax=ax,
    )
    alpha, margin = boxed
    if alpha in diff.index and margin in diff.columns:
        row, col = diff.index.get_loc(alpha), diff.columns.get_loc(margin)
        ax.add_patch(Rectangle((col, row), 1, 1, fill=False, edgecolor="black", lw=3))
    ax.set(title=title, xlabel="margin m (rad)", ylabel="alpha")
    return fig


def class_styles(classes: list[str], partners: dict[str, str]) -> dict[str, tuple]:
    """A (colour, marker) per class in which each confusable pair shares a hue, dark and light:
    a map then shows at a glance whether partners are told apart. Classes without a partner get
    a hue of their own; after 10 hues the markers change."""
    tab20 = plt.get_cmap("tab20").colors
    styles, groups = {}, 0
    for name in classes:
        if name in styles:
            continue
        hue, marker = groups % 10, "o^sD"[groups // 10 % 4]
        styles[name] = (tab20[2 * hue], marker)
        partner = partners.get(name)
        if partner in classes and partner not in styles:
            styles[partner] = (tab20[2 * hue + 1], marker)
        groups += 1
    return styles


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Write a figure to `path` (a figure of study.artifacts) and return it."""
    fig.savefig(path)
    return Path(path)
