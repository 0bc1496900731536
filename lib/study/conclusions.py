"""What each notebook concludes, written from its numbers, and the README's headline.

A conclusion typed by hand goes stale when the study is rerun; these functions turn tables into
short Markdown paragraphs that always say what the numbers say, how sure they are included.
Accuracies and differences come in as fractions of 1 and are written in percent or points by
stats.percent and stats.points, the one rounding of every number. The rules: a direction is
stated only with its interval and its number of seeds; fewer than stats.MIN_SEEDS seeds
describe, they never resolve; one seed describes the runs, not the methods.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from IPython.display import Markdown

from aclaudio.evaluation import stats
from aclaudio.evaluation.stats import MIN_SEEDS, points, resolved, seeds
from aclaudio.study.compare import compare_paired

#: The paper's NT-Xent loss on its toy example (both arrangements, tau = 0.07).
PAPER_TOY_NT_XENT = 0.9317


def pct(x: float) -> str:
    return f"{stats.percent(x)} %"


def markdown_table(df: pd.DataFrame, percent=(), *, index: bool = True) -> str:
    """A Markdown table with the `percent` columns (fractions) in percent, one decimal, their
    names marked "(%)"; every column whole, however wide."""
    shown = df.copy()
    for column in shown:
        if column in percent:
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else stats.percent(v))
        elif pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
    shown = shown.rename(columns={c: f"{c} (%)" for c in percent})
    return shown.to_markdown(index=index, disable_numparse=True)


def table(df: pd.DataFrame, percent=(), *, index: bool = True):
    """markdown_table for display in a notebook."""
    return Markdown(markdown_table(df, percent, index=index))


def interval(ci) -> list | None:
    """An interval as read from a table: None where there is none."""
    if ci is None or (not isinstance(ci, list | tuple) and pd.isna(ci)):
        return None
    return list(ci)


def comparisons(paired: pd.DataFrame) -> str:
    """One line per comparison of study.compare_runs (rows of `paired`, a column `comparison`),
    then how sure: which differences both intervals resolve, and how many comparisons were made.
    """
    lines = []
    for row in paired.to_dict("records"):
        line = f"- **{row['comparison']}**: over seeds, {row['verdict']}"
        line += f"; over seeds and the {row['n_clips']} test clips, {row['seeds_clips_verdict']}."
        if not pd.isna(row.get("resolvable_difference")):
            line += (
                f" {row['n']} seeds resolve differences of about "
                f"{points(row['resolvable_difference']).lstrip('+')} points."
            )
        lines.append(line)
    return "\n".join(lines) + "\n\n" + how_sure(paired)


def how_sure(paired: pd.DataFrame) -> str:
    """The verdict on a set of comparisons (rows of study.compare_runs): which differences both
    intervals resolve, which only the one over seeds, and how many comparisons were made; with
    fewer than MIN_SEEDS seeds, that they are descriptive."""
    records = paired.to_dict("records")
    n_seeds = int(paired["n"].min())
    if n_seeds < MIN_SEEDS:
        return (
            f"With {seeds(n_seeds)} these differences are descriptive: they show "
            f"directions, not resolved differences (a verdict needs {MIN_SEEDS} seeds or more)."
        )
    both = [r["comparison"] for r in records if r["resolved"]]
    seeds_only = [
        r["comparison"]
        for r in records
        if resolved(interval(r["ci"]), r["n"]) and not r["resolved"]
    ]
    n = len(paired)
    summary = f"Of these {n} comparisons, " if n > 1 else "Of this comparison, "
    if both:
        verb = "is" if len(both) == 1 else "are"
        summary += f"{len(both)} {verb} resolved by both intervals ({', '.join(both)})"
    else:
        summary += "none is resolved by both intervals"
    if seeds_only:
        summary += (
            f"; {', '.join(seeds_only)} only over seeds, within the test set's own sampling error"
        )
    summary += "."
    if n > 1:
        summary += (
            f" With {n} comparisons at 95 %, one interval in 20 misses by chance: "
            "a lone resolved difference among several is weak evidence."
        )
    return summary


def pretraining(mean: pd.Series, paired: pd.DataFrame) -> str:
    """Notebook 02: mean accuracy per method, then the comparisons (see `comparisons`)."""
    means = ", ".join(f"{name} {pct(value)}" for name, value in mean.items())
    n = int(paired["n"].max())
    return f"Mean test accuracy over {seeds(n)}: {means}.\n\n" + comparisons(paired)


def data(
    sizes: dict[str, int], n_classes: int, noise_rate: float | None, baseline: pd.DataFrame
) -> str:
    """Notebook 00. sizes: clips per subset; baseline: rows by training subset with test
    accuracy, 95 % CI low and high (difficulty_baseline)."""
    chance = 1 / n_classes
    clean = baseline.loc["clean"]
    text = (
        f"The dataset has {n_classes} classes: {sizes['clean']} clean, {sizes['noisy']} "
        f"noisy and {sizes['test']} test clips. "
    )
    text += (
        f"{pct(noise_rate)} of the noisy subset's labels are wrong (measured against the "
        "true labels). "
        if noise_rate is not None
        else "Its label noise cannot be measured (no true labels). "
    )
    text += (
        f"A logistic regression on the mean spectrum, trained on the clean subset, reaches "
        f"{pct(clean['test accuracy'])} (95 % interval {pct(clean['95 % CI low'])} to "
        f"{pct(clean['95 % CI high'])}) against {pct(chance)} for chance: the floor that a "
        "learned representation has to clear. "
    )
    noisy = baseline.loc["noisy"]
    overlap = (
        noisy["95 % CI low"] <= clean["95 % CI high"]
        and clean["95 % CI low"] <= noisy["95 % CI high"]
    )
    text += f"Trained on the noisy labels instead it reaches {pct(noisy['test accuracy'])}" + (
        ", within the test set's resolution of the clean figure."
        if overlap
        else f", {'more' if noisy['test accuracy'] > clean['test accuracy'] else 'less'} "
        "than the clean figure by more than both intervals."
    )
    return text


def margin(toy: pd.DataFrame, *, paper: float = PAPER_TOY_NT_XENT) -> str:
    """Notebook 01. toy: rows NT-Xent, "angular term, same clip", "angular term, same class";
    columns the arrangements grouped and swapped."""

    def ties(row: str) -> bool:
        return bool(np.isclose(toy.loc[row, "grouped"], toy.loc[row, "swapped"], atol=1e-6))

    nt = toy.loc["NT-Xent"]
    text = f"NT-Xent scores the toy's two arrangements {nt['grouped']:.4f} and {nt['swapped']:.4f}"
    text += (
        f", the paper's {paper:.4f}"
        if np.isclose(nt["grouped"], paper, atol=5e-5)
        else f", not the paper's {paper:.4f}"
    )
    same_clip = toy.loc["angular term, same clip"]
    verb = "ties too" if ties("angular term, same clip") else "differs"
    text += (
        f"; the self-supervised angular term {verb} "
        f"({same_clip['grouped']:.4f} and {same_clip['swapped']:.4f}). "
    )
    same_class = toy.loc["angular term, same class"]
    if ties("angular term, same class"):
        text += "The class-aware angular term ties as well: the toy separates no loss."
    else:
        ratio = same_class["swapped"] / same_class["grouped"]
        text += (
            f"Only the class-aware angular term of supervised ACL tells them apart "
            f"({same_class['grouped']:.4f} grouped against {same_class['swapped']:.4f} "
            f"swapped, {ratio:.0f} times as much): the toy argues for supervised ACL "
            "(notebook 03); whether the self-supervised term helps is for the experiments "
            "of notebooks 02 and 04 to say."
        )
    return text + " These are exact computations, with no uncertainty."


def supervised(table: pd.DataFrame) -> str:
    """Notebook 03. table: one row per run with subset, alpha (1 = cross-entropy), seed,
    test_micro, best_epoch (counted from 0), best_val_loss and finished_epochs."""
    ce = table[table["alpha"] == 1].set_index(["subset", "seed"])["test_micro"]
    lines, resolved_cells = [], []
    for (alpha, subset), rows in table[table["alpha"] < 1].groupby(["alpha", "subset"]):
        name = f"ACL (alpha {alpha:g})"
        result = compare_paired(rows.set_index("seed")["test_micro"], ce.loc[subset], (name, "CE"))
        lines.append(f"- {subset}: {result['verdict']}")
        if resolved(result["ci"], result["n"]):
            resolved_cells.append(f"{subset}, alpha {alpha:g}")
    n_seeds = int(table["seed"].nunique())
    text = "Supervised ACL against cross-entropy, by training subset and alpha:\n\n"
    text += "\n".join(lines) + "\n\n"
    if n_seeds < MIN_SEEDS:
        text += (
            f"{seeds(n_seeds)} per cell, paired by seed: these differences are descriptive, "
            f"directions without a verdict (a verdict needs {MIN_SEEDS} seeds or more)."
        )
    else:
        text += (
            f"{n_seeds} seeds per cell, paired by seed; the t-interval over seeds resolves "
            f"{len(resolved_cells)} of {len(lines)} cells"
            + (f" ({', '.join(resolved_cells)})." if resolved_cells else ".")
        )
    return text + _still_improving(table)


def _still_improving(table: pd.DataFrame) -> str:
    """A warning when runs kept their last epoch: the validation loss was still falling, so
    their accuracies are under what longer training reaches. (A run without any finite
    validation loss keeps its last epoch too, for want of a choice: not counted.)"""
    last = (table["best_epoch"] == table["finished_epochs"] - 1) & table["best_val_loss"].notna()
    if not last.any():
        return ""
    epochs = table["finished_epochs"].unique()
    length = f"the last of their {epochs[0]} epochs" if len(epochs) == 1 else "their last epoch"
    return (
        f" In {last.sum()} of {len(table)} runs the lowest validation loss came in {length}: "
        "those runs were still improving when they stopped, so their accuracies are lower "
        "than longer training would give."
    )


def ablation(
    diff: pd.DataFrame, paired: pd.DataFrame, n_seeds: int, geometry: pd.DataFrame | None = None
) -> str:
    """Notebook 04. diff: ACL - NT-Xent (fractions), alpha rows x margin columns; paired: the
    compare_runs rows of the paper's setting and of the best cell ("best cell (...)"), or one
    row when they are the same cell ("paper setting = best cell (...)"); geometry: per
    (alpha, margin) cell, analysis.margin_geometry's columns averaged over seeds."""
    stacked = diff.stack()
    (lo_a, lo_m), (hi_a, hi_m) = stacked.idxmin(), stacked.idxmax()
    label = f"{seeds(n_seeds)} a cell"
    if n_seeds < MIN_SEEDS:
        label += ": descriptive, directions without verdicts"
    text = (
        f"Over the {diff.shape[0]} x {diff.shape[1]} grid of alpha and margin ({label}), "
        f"ACL - NT-Xent ranges from {points(stacked.min())} points (alpha {lo_a:g}, m "
        f"{lo_m:g}) to {points(stacked.max())} (alpha {hi_a:g}, m {hi_m:g}); "
        f"{int((stacked > 0).sum())} of {len(stacked)} cells are above NT-Xent."
    )
    by_margin = diff.mean(axis=0)
    if len(by_margin) > 1:
        text += (
            f" Averaged over alpha, the margin moves the difference from "
            f"{points(by_margin.min())} (m {by_margin.idxmin():g}) to "
            f"{points(by_margin.max())} points (m {by_margin.idxmax():g})."
        )
    names, caveat = paired["comparison"], ""
    if names.str.startswith("best cell").any():
        caveat = (
            " The best cell was chosen after seeing the grid, so its difference is biased upwards:"
            " exploratory only."
        )
    elif names.str.contains("= best cell").any():
        caveat = " The paper's setting, fixed in advance, is also the grid's best ACL cell."
    if geometry is not None:
        text += _margin_geometry(geometry)
    return text + "\n\n" + comparisons(paired) + caveat


def _margin_geometry(geometry: pd.DataFrame) -> str:
    """Where the ACL runs' test clips sit against each margin, averaged over alpha."""
    acl = geometry[geometry.index.get_level_values("alpha") < 1]
    by_margin = acl.groupby(level="margin").mean(numeric_only=True)
    if len(by_margin) < 2:
        return ""
    text = " On the test clips, averaged over alpha: " + "; ".join(
        f"at m {margin:g}, {pct(row.zero_share)} of h's entries are 0 and two clips sit "
        f"{row.mean_angle:.2f} rad apart on average ({pct(row.beyond_margin)} of pairs beyond "
        "the margin)"
        for margin, row in by_margin.iterrows()
    )
    text += "."
    if geometry["non_negative"].all():
        text += " h is non-negative, so no two clips can be more than pi/2 = 1.57 rad apart."
    return text


def embeddings(geometry: pd.DataFrame, angles: pd.DataFrame, seed: int) -> str:
    """Notebook 05. geometry and angles: rows NT-Xent and ACL, columns as the notebook's tables;
    seed: the one seed both runs share. One run of each loss describes two encoders: no
    direction is stated for the losses."""
    columns = [
        ("tolerance (z)", geometry),
        ("uniformity (z)", geometry),
        ("positive: mean angle (rad)", angles),
        ("negative: fraction below m", angles),
    ]
    lines = [
        f"- {column}: NT-Xent {frame.loc['NT-Xent', column]:.3f}, "
        f"ACL {frame.loc['ACL', column]:.3f}"
        for column, frame in columns
    ]
    return (
        "\n".join(lines) + f"\n\nOne run of each loss (seed {seed}): these numbers describe "
        "these two encoders. Without a second seed there is no interval, so they do not say "
        "which loss gives tighter classes (higher tolerance), more uniform embeddings (lower "
        "uniformity) or closer views; notebook 02's seeds say how large a difference in "
        "accuracy the study resolves."
    )


def paper_agreement(ours: pd.DataFrame, paper: pd.Series, *, what: str) -> str:
    """Notebook 06: whether our differences have the paper's sign, cell by cell. ours: per cell
    the difference from our own baseline (`ours`, a fraction), its seeds (`seeds`) and whether
    it is resolved (`resolved`); paper: the paper's difference per cell, indexed alike."""
    shared = ours.index.intersection(paper.index)
    same = [k for k in shared if np.sign(ours.loc[k, "ours"]) == np.sign(paper[k])]
    text = (
        f"{what}: ours has the paper's sign in {len(same)} of {len(shared)} cells "
        f"({', '.join(map(str, same)) or 'none'})"
    )
    n_seeds = int(ours.loc[shared, "seeds"].min()) if len(shared) else 0
    if n_seeds < MIN_SEEDS:
        return text + (
            f"; with {seeds(n_seeds)} a cell these are descriptive, directions without verdicts."
        )
    n_resolved = int(ours.loc[shared, "resolved"].sum())
    return text + f"; our intervals exclude 0 in {n_resolved} of them."


def paper_reading(headline: dict, paper: dict, *agreements: str) -> str:
    """Notebook 06's reading: our headline difference beside the paper's, what the paper's
    number can and cannot carry, then the sign agreements (paper_agreement), one bullet each.

    headline: study.compare_runs of ACL against NT-Xent with the patch-weighted accuracy, plus
    `alpha` and `seed_sd` (sd of our per-seed differences); paper: its ACL and NT-Xent
    accuracies (`acl`, `nt_xent`, fractions), `clips`, `settings` (how many alphas it chose
    among) and `disagreement` (the share of test clips on which our paired ACL and NT-Xent runs
    disagree, mean over seeds)."""
    n, alpha = headline["n"], headline["alpha"]
    difference = paper["acl"] - paper["nt_xent"]
    se = np.sqrt(paper["disagreement"] / paper["clips"])
    lines = [
        f"ACL (alpha {alpha:g}, m 0.5) against NT-Xent, patch-weighted accuracy as the paper's "
        f"self-supervised table, paired over {seeds(n)}: over seeds, "
        f"{headline['verdict']}; over seeds and test clips, {headline['seeds_clips_verdict']}.",
        f"The paper: {pct(paper['acl'])} against {pct(paper['nt_xent'])} "
        f"({points(difference)} points), one run each on {paper['clips']} clips. Its test set "
        f"alone gives that difference a standard error of about "
        f"{points(se).lstrip('+')} points (two runs scored on the same clips: the square root "
        f"of the share they disagree on, {pct(paper['disagreement'])} for our paired runs, "
        f"over {paper['clips']}), not the Wilson interval of one accuracy. Its seed-to-seed "
        "variation is not measured, which does not make it zero: "
        + (
            f"ours is {points(headline['seed_sd']).lstrip('+')} points (sd of the per-seed "
            "differences)."
            if n > 1
            else "ours is not measured either (one seed)."
        ),
        f"The paper's alpha {alpha:g} is the best of its {paper['settings']} ACL settings on its "
        "test set, the one that reports it: the largest of several noisy differences, so biased "
        "upwards. Ours is the alpha fixed in advance.",
    ]
    return "\n".join(f"- {line}" for line in [*lines, *agreements])


def where_the_margin_goes(
    sweep: pd.DataFrame, paired: pd.DataFrame, supervised: pd.DataFrame, angles: pd.DataFrame
) -> str:
    """Notebook 07. sweep: per method and margin its mean clean-subset accuracy (`clean`, a
    fraction) and whether it was `chosen`; paired: each self-supervised method against NT-Xent
    (compare_runs rows); supervised: SupCon and supervised ACL against cross-entropy; angles:
    analysis.angle_summary of one seed's runs, one row per method."""
    choices = []
    for name, rows in sweep.groupby("method", sort=False):
        chosen = rows.loc[rows["chosen"], "margin"].iat[0]
        scores = zip(rows["margin"], rows["clean"], strict=True)
        tried = ", ".join(f"{m:g} ({pct(c)})" for m, c in scores)
        edge = len(rows) > 1 and chosen == rows["margin"].max()
        largest = " (the largest tried: a larger one might do better)" if edge else ""
        choices.append(f"{name}: m = {chosen:g} of {tried}{largest}")
    ratio = angles["positive / negative mean angle"]
    return (
        "The margins inside the softmax were chosen on the clean subset's balanced accuracy "
        f"(never the test set): {'; '.join(choices)}.\n\n"
        "**Self-supervised, each method against NT-Xent:**\n\n"
        + comparisons(paired)
        + "\n\n**Supervised on the noisy subset, against cross-entropy:**\n\n"
        + comparisons(supervised)
        + "\n\nOn the encoder output h (one seed, descriptive), the mean angle between the two "
        "views of a clip over the mean angle between different clips (lower: views closer "
        "than clips): " + ", ".join(f"{name} {value:.2f}" for name, value in ratio.items()) + "."
    )
