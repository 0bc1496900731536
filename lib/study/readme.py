"""README's headline: the cpu profile's accuracy per method and its paired comparisons, written
between two markers of README.md by an explicit step (`aclaudio headline`, which run_all.sh
calls for the cpu profile), never as a side effect of rendering the report."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from aclaudio.study import artifacts
from aclaudio.study.conclusions import how_sure, markdown_table

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
    return (
        markdown_table(accuracy, ["mean test accuracy", "min", "max"])
        + "\n\n"
        + verdicts.to_markdown(index=False)
        + "\n\n"
        + how_sure(paired)
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
