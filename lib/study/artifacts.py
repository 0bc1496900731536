"""Every file the notebooks write into a results folder, named once.

A profile's results live in results/<profile>/: tables/ (CSV, Markdown, each notebook's key
numbers as <notebook>.metrics.json), figures/ (PNG), notebooks/ (the executed copies) and
report/ (the web page). The notebooks write their files through the names below, and the
report, the conclusions and the README's headline read them back through the same names, so a
renamed file cannot leave a reader looking for the old one. A test checks that the smoke study
writes exactly these files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aclaudio.data.atomic import atomic_write_text

#: The notebooks of the study, in the order run_all.sh executes them.
NOTEBOOKS = (
    "00_data_exploration",
    "01_why_an_angular_margin",
    "02_pretraining",
    "03_supervised",
    "04_ablation",
    "05_embeddings",
    "06_paper",
    "07_where_the_margin_goes",
)


@dataclass(frozen=True)
class Artifact:
    """One file a notebook writes: RESULTS/tables/<notebook>-<name>.csv (or .md, or the
    notebook's .metrics.json when `name` is empty) or RESULTS/figures/<notebook>-<name>.png."""

    notebook: str
    name: str
    suffix: str = ".csv"

    @property
    def filename(self) -> str:
        return (
            f"{self.notebook}-{self.name}{self.suffix}"
            if self.name
            else self.notebook + self.suffix
        )

    def path(self, results: str | Path) -> Path:
        """Where it lives in a results folder (results_dir makes the folders)."""
        return Path(results) / ("figures" if self.suffix == ".png" else "tables") / self.filename


def _table(notebook: str, name: str) -> Artifact:
    return Artifact(notebook, name)


def _figure(notebook: str, name: str) -> Artifact:
    return Artifact(notebook, name, ".png")


def _metrics(notebook: str) -> Artifact:
    """A notebook's key numbers, name -> value (write_metrics; the tests check them)."""
    return Artifact(notebook, "", ".metrics.json")


_00, _01, _02, _03, _04, _05, _06, _07 = NOTEBOOKS
DATA_METRICS, MARGIN_METRICS, PRETRAINING_METRICS, SUPERVISED_METRICS = map(_metrics, NOTEBOOKS[:4])
ABLATION_METRICS, EMBEDDINGS_METRICS, PAPER_METRICS, WHERE_METRICS = map(_metrics, NOTEBOOKS[4:])

DATA_COUNTS = _table(_00, "counts")
DATA_DURATIONS = _table(_00, "durations")
DATA_LABEL_NOISE = _table(_00, "label-noise")
DATA_BASELINE = _table(_00, "baseline")
DATA_CLASS_COUNTS_FIGURE = _figure(_00, "class-counts")
DATA_DURATIONS_FIGURE = _figure(_00, "durations")
DATA_LOG_MELS_FIGURE = _figure(_00, "log-mels")
DATA_LABEL_NOISE_FIGURE = _figure(_00, "label-noise")

MARGIN_TOY = _table(_01, "toy")
MARGIN_TOY_FIGURE = _figure(_01, "toy")
MARGIN_FIGURE = _figure(_01, "margin")
MARGIN_GRADIENTS_BY_TERM_FIGURE = _figure(_01, "gradients-by-term")
MARGIN_ACL_GRADIENTS_FIGURE = _figure(_01, "acl-gradients")
MARGIN_EXPLORER_FIGURE = _figure(_01, "explorer")

#: One row per run of the comparison: method, seed, alpha, margin, accuracies (README reads it).
PRETRAINING_RUNS = _table(_02, "runs")
#: The comparisons paired by seed with both intervals and verdicts (README, report).
PRETRAINING_PAIRED = _table(_02, "paired")
PRETRAINING_LENGTH_CURVE = _table(_02, "length-curve")
PRETRAINING_REDUCTION_CONTROL = _table(_02, "reduction-control")
PRETRAINING_CURVES_FIGURE = _figure(_02, "curves")
PRETRAINING_GRADIENT_TERMS_FIGURE = _figure(_02, "gradient-terms")
PRETRAINING_LENGTH_CURVE_FIGURE = _figure(_02, "length-curve")
PRETRAINING_LINEAR_EVAL_FIGURE = _figure(_02, "linear-eval")

SUPERVISED_RUNS = _table(_03, "runs")
SUPERVISED_ACCURACY = _table(_03, "accuracy")
SUPERVISED_ACCURACY_FIGURE = _figure(_03, "accuracy")

ABLATION_RUNS = _table(_04, "runs")
ABLATION_ACCURACY = _table(_04, "accuracy")
ABLATION_GEOMETRY = _table(_04, "geometry")
ABLATION_PAIRED = _table(_04, "paired")
#: Accuracy over the alpha x margin grid: README's figure and the report's.
ABLATION_HEATMAP_FIGURE = _figure(_04, "heatmap")
ABLATION_ALPHA_CURVES_FIGURE = _figure(_04, "alpha-curves")

EMBEDDINGS_GEOMETRY = _table(_05, "geometry")
EMBEDDINGS_ANGLES = _table(_05, "angles")
EMBEDDINGS_TSNE_FIGURE = _figure(_05, "tsne")
EMBEDDINGS_ANGLES_FIGURE = _figure(_05, "angles")

PAPER_SSL = _table(_06, "ssl")
PAPER_SUPERVISED = _table(_06, "supervised")
PAPER_READING = Artifact(_06, "reading", ".md")
PAPER_SSL_FIGURE = _figure(_06, "ssl-alpha")

#: The sweep of the margins inside the softmax: clean-subset accuracy per margin, the choice.
WHERE_SWEEP = _table(_07, "sweep")
#: One row per run of notebook 07's self-supervised methods (method, seed, margin, accuracies).
WHERE_RUNS = _table(_07, "runs")
#: Each self-supervised method against NT-Xent, paired by seed (README reads it).
WHERE_PAIRED = _table(_07, "paired")
WHERE_ANGLES = _table(_07, "angles")
WHERE_SUPERVISED_RUNS = _table(_07, "supervised-runs")
WHERE_SUPERVISED_PAIRED = _table(_07, "supervised-paired")
WHERE_PAIRED_FIGURE = _figure(_07, "paired")
WHERE_ANGLES_FIGURE = _figure(_07, "angles")
WHERE_SUPERVISED_FIGURE = _figure(_07, "supervised")


def all_artifacts() -> list[Artifact]:
    """Every file named above."""
    return [value for value in globals().values() if isinstance(value, Artifact)]


def results_dir(profile: str, root: str | Path) -> Path:
    """ROOT/<profile>/, with its tables/ and figures/ folders."""
    path = Path(root) / profile
    for folder in ("tables", "figures"):
        (path / folder).mkdir(parents=True, exist_ok=True)
    return path


def write_metrics(path: str | Path, values: dict[str, float]) -> Path:
    """Record a notebook's key numbers (name -> number) in its metrics file; returns it."""
    atomic_write_text(path, json.dumps({k: float(v) for k, v in values.items()}, indent=1))
    return Path(path)


def read_paired(results: str | Path, artifact: Artifact = PRETRAINING_PAIRED) -> pd.DataFrame:
    """A table of paired comparisons (default: notebook 02's), the intervals back as lists
    (to_csv wrote them as JSON)."""
    paired = pd.read_csv(artifact.path(results))
    for interval in ("ci", "seeds_clips_ci"):
        paired[interval] = [json.loads(v) if isinstance(v, str) else None for v in paired[interval]]
    return paired
