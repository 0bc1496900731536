"""One figure style for every notebook, and saving figures where the results live."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

#: Colours by method, so a method looks the same in every figure.
METHOD_COLOURS = {"NT-Xent": "#4C72B0", "ACL": "#C44E52", "CE": "#4C72B0", "random init": "#8C8C8C"}


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


def save(fig: plt.Figure, results_dir: str | Path, name: str) -> Path:
    """Write a figure to RESULTS/figures/NAME.png and return the path."""
    path = Path(results_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
