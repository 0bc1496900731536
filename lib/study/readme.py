"""README's headline: the cpu profile's accuracy per method and its paired comparisons (and
notebook 07's, one line, when the results hold them), written
between two markers of README.md by an explicit step (`aclaudio headline`, which run_all.sh
calls for the cpu profile), never as a side effect of rendering the report."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from aclaudio.evaluation.stats import MIN_SEEDS, points, seeds
from aclaudio.study import artifacts
from aclaudio.study.conclusions import how_sure, interval, markdown_table

START, END = "<!-- headline:start -->", "<!-- headline:end -->"


def readme_headline(results: str | Path) -> str:
    """The README's headline from a profile's tables: accuracy per method over seeds and the
    paired comparisons with their verdicts (notebook 02)."""
    runs = pd.read_csv(artifacts.PRETRAINING_RUNS.path(results))
    paired = artifacts.read_paired(results)
    accuracy = (
        runs.groupby("method", sort=False)["test_micro"]
        .agg(["mean", "min", "max", "count"])
        .rename_axis("method")
    )
    accuracy.columns = ["mean test accuracy", "min", "max", "seeds"]
    verdicts = paired[["comparison", "verdict", "seeds_clips_verdict"]].rename(
        columns={
            "verdict": "over seeds (t-interval)",
            "seeds_clips_verdict": "over seeds and test clips",
        }
    )
    headline = (
        markdown_table(accuracy, ["mean test accuracy", "min", "max"])
        + "\n\n"
        + verdicts.to_markdown(index=False)
        + "\n\n"
        + how_sure(paired)
    )
    if artifacts.WHERE_PAIRED.path(results).is_file():
        headline += "\n\n" + margin_line(artifacts.read_paired(results, artifacts.WHERE_PAIRED))
    return headline


def margin_line(paired: pd.DataFrame) -> str:
    """Notebook 07 in one line: each method minus NT-Xent with its interval over seeds and test
    clips, and which differences both intervals resolve; where the comparisons pair different
    numbers of seeds, each says its own."""
    counts = paired["n"].astype(int)
    mixed = counts.nunique() > 1
    differences = []
    for row in paired.to_dict("records"):
        ci = interval(row["seeds_clips_ci"])
        bounds = f" [{points(ci[0])}, {points(ci[1])}]" if ci else ""
        own = f" ({seeds(row['n'])})" if mixed else ""
        differences.append(f"{row['comparison']} {points(row['mean_difference'])}{bounds}{own}")
    resolved = [r["comparison"] for r in paired.to_dict("records") if r["resolved"]]
    how_many = f"{counts.min()} to {seeds(counts.max())}" if mixed else seeds(counts.min())
    if resolved:
        verdict = "resolved by both intervals: " + ", ".join(resolved)
    elif counts.max() < MIN_SEEDS:
        verdict = f"descriptive with {how_many}"
    else:
        verdict = "none resolved by both intervals"
    return (
        f"**Where the margin goes** (notebook 07, {how_many}, points, 95 % "
        f"interval over seeds and test clips): {'; '.join(differences)}; {verdict}."
    )


def write_readme_headline(readme: str | Path, results: str | Path) -> bool:
    """Replace the block between the headline markers of README with readme_headline(results);
    True when the file changed."""
    readme = Path(readme)
    text = readme.read_text()
    block = f"{START}\n{readme_headline(results)}\n{END}"
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    if new != text:
        readme.write_text(new)
    return new != text
