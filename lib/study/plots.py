"""One figure style for every notebook, and saving figures where the results live.

The conventions, so that a reader learns them once: one colour per meaning in every notebook
(no angular term blue, with it red, no training grey; positive pairs green, negative pairs and
margins purple), accuracies in percent, legends outside the data.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter

from aclaudio.evaluation.stats import MIN_SEEDS, seeds

#: Colours by method. Cross-entropy shares NT-Xent's blue (the loss without an angular term),
#: supervised ACL shares ACL's red.
METHOD_COLOURS = {
    "NT-Xent": "#4C72B0",
    "ACL": "#C44E52",
    "CE": "#4C72B0",
    "random init": "#8C8C8C",
    # notebook 07's other methods: the margin inside the softmax in warm browns, no negatives
    # in olive, supervised contrastive in pink
    "ArcFace NT-Xent": "#DD8452",
    "CosFace NT-Xent": "#937860",
    "VICReg": "#CCB974",
    "SupCon": "#DA8BC3",
}
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
    comparison's per-seed differences, their mean, the t-interval over seeds and the interval
    over seeds and test clips (none with one seed).

    table: one row per run (method, seed, test_micro); paired: one row per comparison "A - B"
    with mean_difference, ci and seeds_clips_ci (None for one seed).
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"wspace": 0.35})
    wide = table.pivot_table(index="seed", columns="method", values="test_micro")[methods]
    x = np.arange(len(methods))
    for _, row in wide.iterrows():
        left.plot(x, row.to_numpy(), color="0.75", lw=1, zorder=1)
    for i, method in enumerate(methods):
        left.scatter(np.full(len(wide), i), wide[method], color=colour(method), s=40, zorder=2)
    left.set_xticks(
        x,
        methods,
        rotation=20 if len(methods) > 3 else 0,
        ha="right" if len(methods) > 3 else "center",
    )
    left.set(title="Test accuracy, one line per seed", ylabel="linear evaluation accuracy")
    percent_axis(left)

    _paired_differences(right, wide, paired)
    right.axvline(0, color="black", lw=1)
    right.set_yticks(range(len(paired)), paired["comparison"])
    right.invert_yaxis()
    n_seeds = int(paired["n"].min())
    descriptive = f" (descriptive: {seeds(n_seeds)})" if n_seeds < MIN_SEEDS else ""
    right.set(title="Paired differences" + descriptive, xlabel="difference (points)")
    percent_axis(right, "x", points=True)
    legend_outside(right)
    return fig


def _has_interval(ci) -> bool:
    return isinstance(ci, list | tuple) and not pd.isna(ci).any()


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
        if _has_interval(row.seeds_clips_ci):
            ax.plot(
                row.seeds_clips_ci,
                [i - 0.12] * 2,
                color=colour(a),
                lw=2,
                alpha=0.5,
                label="95 % interval, seeds and clips" if i == 0 else None,
            )
        if _has_interval(row.ci):
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


#: The two kNN monitors pretraining logs, as metrics.csv names them and figures label them.
MONITORS = {
    "knn_patch_vote_z": "patch vote on z (the authors')",
    "knn_clip_mean_h": "weighted kNN on clip-mean h",
}


def training_curves(curves: pd.DataFrame) -> plt.Figure:
    """Left: each run's training loss by epoch. Right: the kNN monitors, the mean over seeds
    per method with the range of the seeds as a band. A panel with fewer than two epochs to
    draw says so instead of staying empty.

    curves: metrics.csv rows of every run with `method` and `seed` columns added.
    """
    fig, (loss, knn) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"wspace": 0.3})
    if curves.get("epoch", pd.Series(dtype=float)).nunique() >= 2:
        sns.lineplot(
            curves,
            x="epoch",
            y="loss",
            hue="method",
            units="seed",
            estimator=None,
            palette=METHOD_COLOURS,
            legend=False,
            ax=loss,
        )
    else:
        _say(loss, "one epoch: no curve to draw")
    monitored = curves.melt(
        id_vars=["epoch", "method", "seed"],
        value_vars=[c for c in MONITORS if c in curves],
        var_name="monitor",
        value_name="balanced accuracy",
    ).dropna()
    if monitored["epoch"].nunique() >= 2:
        sns.lineplot(
            monitored.replace({"monitor": MONITORS}),
            x="epoch",
            y="balanced accuracy",
            hue="method",
            style="monitor",
            estimator="mean",
            errorbar=("pi", 100),
            palette=METHOD_COLOURS,
            marker="o",
            ax=knn,
        )
        legend_outside(knn, fontsize=8)
    else:
        _say(knn, "fewer than two monitored epochs: no curve to draw")
    loss.set(title="Training loss, each run", xlabel="epoch", ylabel="loss (own scale per method)")
    knn.set(
        title="kNN monitors on the clean subset: mean and range over seeds",
        xlabel="epoch",
        ylabel="balanced accuracy",
    )
    return fig


def _say(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set(xticks=[], yticks=[])


def seeds_and_paper(table: pd.DataFrame, paper: pd.DataFrame, subsets: list[str]) -> plt.Figure:
    """Supervised accuracy by training subset: each seed a point, the mean a bar across it, and
    beside each supervised-ACL column the paper's value for the same alpha and subset as a
    black marker (the ACL columns are what the paper's table varies).

    table: one row per run (subset, alpha, loss, test_micro); paper: the paper's table in %,
    indexed by alpha, one column per subset.
    """
    fig, ax = plt.subplots(figsize=(9, 4.2))
    losses = sorted(table["loss"].unique(), key=lambda name: name != "CE")
    width = 0.8 / len(losses)
    first_acl = next((name for name in losses if name != "CE"), None)  # carries the label
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
            if alpha < 1 and alpha in paper.index and subset in paper.columns:
                ax.scatter(
                    [x + width / 6],
                    [paper.loc[alpha, subset] / 100],
                    marker="x",
                    color=PAPER_COLOUR,
                    s=40,
                    label="paper, same alpha" if (i, loss) == (0, first_acl) else None,
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


def difference_heatmap(
    diff: pd.DataFrame, boxed: tuple[float, float], *, n_seeds: int, title: str
) -> plt.Figure:
    """A diverging heatmap of differences in points (alpha rows x margin columns), red where
    ACL is higher, blue where NT-Xent is, with the cell `boxed` = (alpha, margin) outlined.
    Cells of fewer than stats.MIN_SEEDS seeds are labelled descriptive (colour bar and each
    annotation)."""
    fig, ax = plt.subplots(figsize=(1.1 * len(diff.columns) + 3, 0.7 * len(diff) + 2))
    limit = max(float(np.nanmax(np.abs(diff.to_numpy()))), 1.0)
    descriptive = n_seeds < MIN_SEEDS
    label = "ACL - NT-Xent (points)"
    if descriptive:  # on a second line, so that the bar's label stays as tall as the map
        label += f"\n(*) descriptive: {seeds(n_seeds)} a cell"
    annotations = diff.map(lambda v: "" if pd.isna(v) else f"{v:+.1f}" + ("*" * descriptive))
    sns.heatmap(
        diff,
        annot=annotations,
        fmt="",
        cmap="RdBu_r",
        center=0,
        vmin=-limit,
        vmax=limit,
        cbar_kws={"label": label},
        ax=ax,
    )
    alpha, margin = boxed
    if alpha in diff.index and margin in diff.columns:
        row, col = diff.index.get_loc(alpha), diff.columns.get_loc(margin)
        ax.add_patch(Rectangle((col, row), 1, 1, fill=False, edgecolor="black", lw=3))
    ax.set(xlabel="margin m (rad)", ylabel="alpha")
    ax.set_title(textwrap.fill(title, 45), loc="left")  # within the figure's width
    return fig


def view_angles(angles: dict[str, tuple], margin: float | None = None) -> plt.Figure:
    """Histograms of the angles between the encoder outputs h of two views (one panel for
    positive pairs, one for negative pairs), one outline per run, radians below and degrees
    on top, with the margin m dashed.

    angles: run name -> (positive, negative) as analysis.view_pair_angles gives them.
    """
    n_views = len(next(iter(angles.values()))[0])
    top = max(a.max() for pair in angles.values() for a in pair)
    bins = np.linspace(0, top * 1.02, 41)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharex=True)
    titles = (
        f"Positive pairs (same clip): {n_views:,} per run",
        f"Negative pairs (different clips): {2 * n_views * (n_views - 1):,} per run",
    )
    filled = len(angles) < 3  # more runs read as outlines only
    for ax, kind, title in zip(axes, (0, 1), titles, strict=True):
        for name, pair in angles.items():
            ax.hist(
                pair[kind],
                bins=bins,
                density=True,
                histtype="stepfilled" if filled else "step",
                alpha=0.35 if filled else 1.0,
                color=colour(name),
                edgecolor=colour(name),
                linewidth=1.2 if filled else 1.8,
                label=name,
            )
        if margin is not None:
            ax.axvline(
                margin,
                color="black",
                linestyle="--",
                linewidth=1.2,
                label=f"margin m = {margin} rad ({np.degrees(margin):.1f} degrees)",
            )
        ax.set(
            title=title,
            xlabel="angle between the two h: radians (degrees on top)",
            ylabel="density",
        )
        ax.secondary_xaxis("top", functions=(np.degrees, np.radians))
    handles, labels = axes[0].get_legend_handles_labels()
    rows = -(-len(labels) // 3)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3)
    fig.suptitle(
        "Angles between the encoder outputs h of two augmented views of the test clips", y=1.07
    )
    fig.subplots_adjust(bottom=0.12 + 0.04 * rows)
    return fig


def class_styles(classes: list[str], partners: dict[str, str]) -> dict[str, tuple]:
    """A (colour, marker) per class in which each confusable pair shares a hue, one dark with
    circles, the other light with triangles: a map then shows at a glance whether partners
    are told apart, and which is which. Classes without a partner get a hue of their own;
    after 10 hues the markers change (squares and diamonds)."""
    tab20 = plt.get_cmap("tab20").colors
    styles, groups = {}, 0
    for name in classes:
        if name in styles:
            continue
        hue, markers = groups % 10, ("o^", "sD")[groups // 10 % 2]
        styles[name] = (tab20[2 * hue], markers[0])
        partner = partners.get(name)
        if partner in classes and partner not in styles:
            styles[partner] = (tab20[2 * hue + 1], markers[1])
        groups += 1
    return styles


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Write a figure to `path` (a figure of study.artifacts) and return it."""
    fig.savefig(path)
    return Path(path)
