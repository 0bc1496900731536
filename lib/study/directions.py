"""Whether notebook 02's comparisons point the same way on two datasets (the study's and a
second one, scripts/second_dataset.sh): each difference with its interval, the signs that
agree and the agreements both studies resolve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from aclaudio.evaluation.stats import MIN_SEEDS, points
from aclaudio.study.artifacts import read_paired
from aclaudio.study.conclusions import interval


def directions(first: str | Path, second: str | Path, names: tuple[str, str]) -> str:
    """Whether notebook 02's comparisons point the same way on two datasets: first and second
    are results/<profile>/ folders of two runs of notebook 02, names say which data each is.
    Each difference with its interval over seeds and test clips, then how many agree in sign
    and how many both studies resolve."""

    a, b = (read_paired(results).set_index("comparison") for results in (first, second))
    shared = a.index.intersection(b.index)
    rows, agree, both = [], [], []
    for name in shared:
        cis = [side.loc[name, "seeds_clips_ci"] for side in (a, b)]
        diffs = [side.loc[name, "mean_difference"] for side in (a, b)]
        same = bool(np.sign(diffs[0]) == np.sign(diffs[1]))
        agree += [name] if same else []
        both += [name] if same and all(side.loc[name, "resolved"] for side in (a, b)) else []
        rows.append(
            {"comparison": name}
            | {
                f"{label} (points)": _with_interval(d, ci)
                for label, d, ci in zip(names, diffs, cis, strict=True)
            }
            | {"same sign": "yes" if same else "no"}
        )
    summary = (
        f"The two datasets agree in sign in {len(agree)} of {len(shared)} comparisons"
        f" ({', '.join(agree) or 'none'}); both resolve it with that sign (both intervals, "
        f"{MIN_SEEDS} seeds or more) in {len(both)} ({', '.join(both) or 'none'})."
    )
    return pd.DataFrame(rows).to_markdown(index=False) + "\n\n" + summary


def _with_interval(difference: float, ci) -> str:
    ci = interval(ci)
    return points(difference) + ("" if ci is None else f" [{points(ci[0])}, {points(ci[1])}]")
