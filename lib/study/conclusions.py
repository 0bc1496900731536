"""What each notebook concludes, written from its numbers, and the README's headline.

A conclusion typed by hand goes stale when the study is rerun; these functions turn tables into
short Markdown paragraphs that always say what the numbers say, how sure they are included.
Accuracies and differences come in as fractions of 1 and are written in percent or points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown

from aclaudio.study.artifacts import read_paired
from aclaudio.study.compare import compare_paired
from aclaudio.study.paper import PAPER_SSL_LINEAR_ACCURACY, PAPER_TEST_CLIPS

#: The paper's NT-Xent loss on its toy example (both arrangements, tau = 0.07).
PAPER_TOY_NT_XENT = 0.9317


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def points(x: float) -> str:
    return f"{round(100 * x, 1) + 0.0:+.1f}"


def markdown_table(df: pd.DataFrame, percent=(), *, index: bool = True) -> str:
    """A Markdown table with the `percent` columns (fractions) in percent, one decimal, their
    names marked "(%)"; every column whole, however wide."""
    shown = df.copy()
    for column in shown:
        if column in percent:
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{100 * v:.1f}")
        elif pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
    shown = shown.rename(columns={c: f"{c} (%)" for c in percent})
    return shown.to_markdown(index=index, disable_numparse=True)


def table(df: pd.DataFrame, percent=(), *, index: bool = True):
    """markdown_table for display in a notebook."""
    return Markdown(markdown_table(df, percent, index=index))


def _resolved(ci) -> bool:
    return ci is not None and not pd.isna(ci).any() and not ci[0] <= 0 <= ci[1]


def comparisons(paired: pd.DataFrame) -> str:
    """One line per comparison of study.compare_runs (rows of `paired`, a column `comparison`),
    then how sure: which differences both intervals resolve, and how many comparisons were made.
    """
    records = paired.to_dict("records")
    lines = []
    for row in records:
        line = f"- **{row['comparison']}**: over seeds, {row['verdict']}"
        line += f"; over seeds and the {row['n_clips']} test clips, {row['bootstrap_verdict']}."
        if row.get("resolvable_difference") is not None and not pd.isna(
            row["resolvable_difference"]
        ):
            line += (
                f" {row['n']} seeds resolve differences of about "
                f"{100 * row['resolvable_difference']:.1f} points."
            )
        lines.append(line)
    return "\n".join(lines) + "\n\n" + how_sure(paired)


def how_sure(paired: pd.DataFrame) -> str:
    """The verdict on a set of comparisons (rows of study.compare_runs): which differences both
    intervals resolve, which only the one over seeds, and how many comparisons were made."""
    records = paired.to_dict("records")
    both = [r["comparison"] for r in records if _resolved(r["ci"]) and _resolved(r["bootstrap_ci"])]
    seeds_only = [
        r["comparison"] for r in records if _resolved(r["ci"]) and not _resolved(r["bootstrap_ci"])
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
    if paired["ci"].isna().all():
        summary += " One seed: no interval over seeds, so the seed's own effect is not measured."
    return summary


def pretraining(mean: pd.Series, paired: pd.DataFrame) -> str:
    """Notebook 02: mean accuracy per method, then the comparisons (see `comparisons`)."""
    means = ", ".join(f"{name} {pct(value)}" for name, value in mean.items())
    n = int(paired["n"].max())
    return f"Mean test accuracy over {n} seed{'s' if n > 1 else ''}: {means}.\n\n" + comparisons(
        paired
    )


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
    test_micro and its Wilson interval test_micro_low, test_micro_high, best_epoch (counted
    from 0), best_val_loss and finished_epochs."""
    ce = table[table["alpha"] == 1].set_index(["subset", "seed"])["test_micro"]
    lines, higher, compared = [], 0, 0
    for (alpha, subset), rows in table[table["alpha"] < 1].groupby(["alpha", "subset"]):
        result = compare_paired(
            rows.set_index("seed")["test_micro"], ce.loc[subset], (f"ACL (alpha {alpha:g})", "CE")
        )
        compared += 1
        higher += result["mean_difference"] > 0
        lines.append(f"- {subset}: {result['verdict']}")
    n_seeds = table["seed"].nunique()
    half = ((table["test_micro_high"] - table["test_micro_low"]) / 2).mean()
    text = (
        f"Supervised ACL is higher than cross-entropy in {higher} of {compared} "
        f"comparisons (training subset x alpha):\n\n" + "\n".join(lines) + "\n\n"
    )
    if n_seeds == 1:
        text += (
            f"One seed per cell, so no interval over seeds: each accuracy also carries "
            f"about +-{100 * half:.1f} points of test-set uncertainty (Wilson), and "
            "differences smaller than that are not resolvable."
        )
    else:
        text += f"{n_seeds} seeds per cell, paired by seed."
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
    text = (
        f"Over the {diff.shape[0]} x {diff.shape[1]} grid of alpha and margin "
        f"({n_seeds} seed{'s' if n_seeds > 1 else ''} a cell), ACL - NT-Xent ranges from "
        f"{points(stacked.min())} points (alpha {lo_a:g}, m {lo_m:g}) to "
        f"{points(stacked.max())} (alpha {hi_a:g}, m {hi_m:g}); "
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


def embeddings(geometry: pd.DataFrame, angles: pd.DataFrame) -> str:
    """Notebook 05. geometry and angles: rows NT-Xent and ACL, columns as the notebook's tables."""
    checks = [  # column, table, what ACL's higher value means, what its lower value means
        ("tolerance (z)", geometry, "tighter classes", "looser classes"),
        ("uniformity (z)", geometry, "less uniform", "more uniform"),
        (
            "positive: mean angle (rad)",
            angles,
            "views of a clip further apart",
            "views of a clip closer together",
        ),
        (
            "negative: fraction below m",
            angles,
            "more negative pairs inside the margin",
            "fewer negative pairs inside the margin",
        ),
    ]
    lines = []
    for column, frame, higher, lower in checks:
        nt, acl = frame.loc["NT-Xent", column], frame.loc["ACL", column]
        meaning = "the same" if acl == nt else higher if acl > nt else lower
        lines.append(f"- {column}: NT-Xent {nt:.3f}, ACL {acl:.3f}: ACL {meaning}.")
    return (
        "\n".join(lines) + "\n\nTwo runs of one seed: these describe the two encoders, they "
        "do not measure an effect of the loss; notebook 02's seeds say how large a "
        "difference in accuracy the study resolves."
    )


def paper_agreement(ours: pd.Series, paper: pd.Series, resolved: pd.Series, *, what: str) -> str:
    """Notebook 06: whether our differences have the paper's sign, cell by cell. ours, paper:
    differences from each study's own baseline (fractions), indexed alike; resolved: whether
    our interval excludes 0."""
    shared = ours.index.intersection(paper.index)
    same = [k for k in shared if np.sign(ours[k]) == np.sign(paper[k])]
    text = (
        f"{what}: ours has the paper's sign in {len(same)} of {len(shared)} cells "
        f"({', '.join(map(str, same)) or 'none'}); our interval excludes 0 in "
        f"{int(resolved.reindex(shared).fillna(False).sum())} of them."
    )
    return text


def paper_comparison(headline: dict, alpha: float, *agreements: str) -> str:
    """Notebook 06: ACL against NT-Xent at the study's alpha (study.compare_runs) beside the
    paper's pair of runs, then the sign agreements (paper_agreement), one bullet each."""
    published = PAPER_SSL_LINEAR_ACCURACY.set_index("alpha")["accuracy"] / 100
    lines = [
        f"- ACL (alpha {alpha:g}, m 0.5) against NT-Xent, paired over {headline['n']} "
        f"seed{'s' if headline['n'] > 1 else ''}: {headline['verdict']}; over seeds and "
        f"test clips, {headline['bootstrap_verdict']}. The paper: "
        f"{pct(published[alpha])} against {pct(published[1.0])} "
        f"({points(published[alpha] - published[1.0])} points, one run each on "
        f"{PAPER_TEST_CLIPS} clips, no interval)."
    ]
    return "\n".join(lines + [f"- {line}" for line in agreements])


def directions(first: str | Path, second: str | Path, names: tuple[str, str]) -> str:
    """Whether notebook 02's comparisons point the same way on two datasets: first and second
    are results/<profile>/ folders of two runs of notebook 02, names say which data each is.
    Each difference with its bootstrap interval (seeds and test clips), then how many agree in
    sign and how many both intervals resolve."""

    a, b = (read_paired(results).set_index("comparison") for results in (first, second))
    shared = a.index.intersection(b.index)
    rows, agree, resolved = [], [], []
    for name in shared:
        cis = [side.loc[name, "bootstrap_ci"] for side in (a, b)]
        diffs = [side.loc[name, "mean_difference"] for side in (a, b)]
        same = bool(np.sign(diffs[0]) == np.sign(diffs[1]))
        agree += [name] if same else []
        resolved += [name] if same and all(_resolved(ci) for ci in cis) else []
        rows.append(
            {"comparison": name}
            | {
                f"{label} (points)": f"{points(d)} [{points(ci[0])}, {points(ci[1])}]"
                for label, d, ci in zip(names, diffs, cis, strict=True)
            }
            | {"same sign": "yes" if same else "no"}
        )
    summary = (
        f"The two datasets agree in sign in {len(agree)} of {len(shared)} comparisons"
        f" ({', '.join(agree) or 'none'}); both 95 % bootstrap intervals (seeds and test clips)"
        f" exclude 0 with that sign in {len(resolved)} ({', '.join(resolved) or 'none'})."
    )
    return pd.DataFrame(rows).to_markdown(index=False) + "\n\n" + summary
