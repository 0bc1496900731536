"""The run store and the results table.

A run lives in RUNS/<run id>/: config.json, checkpoints (last, the one before it, best),
metrics.csv (one row per epoch) and finished.json, the marker written last. Asking for a
finished run returns it without training; an unfinished one resumes from its last checkpoint.
The id names what a run computes from, not where things are: its dataset by a fingerprint of
the contents, so a moved or copied dataset keeps its runs and regenerated data gets new ones.
The store is ./runs by default; --runs-dir or $ACLAUDIO_RUNS moves it, so several checkouts or
a cluster can share one. Every write is atomic (temporary file, then rename).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from aclaudio.data import folders
from aclaudio.data.atomic import (
    atomic_write_text,
    exclusive,
    remove_stale_temporaries,
    temporary_path,
)
from aclaudio.data.datasets import DatasetError, data_fingerprint
from aclaudio.training.config import FinetuneConfig, config_dict, config_hash, kind_of, make_config


class CheckpointError(ValueError):
    """No usable checkpoint: the message names the files tried, why each failed, how to retrain."""


class RunWarning(UserWarning):
    """Something a run's user must know: a damaged checkpoint skipped, a class left out."""


@dataclass
class Run:
    path: Path
    config: Any

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def finished(self) -> bool:
        return (self.path / "finished.json").is_file()

    def summary(self) -> dict:
        """What the finished run reported (empty while it is unfinished)."""
        marker = self.path / "finished.json"
        return json.loads(marker.read_text()) if marker.is_file() else {}

    def metrics(self) -> pd.DataFrame:
        """The per-epoch metrics so far."""
        file = self.path / "metrics.csv"
        return pd.read_csv(file) if file.is_file() else pd.DataFrame()

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Append one epoch's metrics; rows of epochs redone after a resume replace the old."""
        table = self.metrics()
        if not table.empty:
            table = table[table["epoch"] < row["epoch"]]
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        atomic_write_text(self.path / "metrics.csv", table.to_csv(index=False))

    def save_checkpoint(self, state: dict, name: str = "last") -> None:
        """Write a checkpoint atomically; the previous `last` is kept as `last.prev`."""
        target = self.path / f"{name}.pt"
        tmp = temporary_path(target)
        torch.save(state, tmp)
        if name == "last" and target.exists():
            os.replace(target, self.path / "last.prev.pt")
        os.replace(tmp, target)

    def load_checkpoint(self, *names: str) -> dict | None:
        """The first readable checkpoint of these names (default: last), None if none exists.

        `last` falls back to the one before it. A damaged file is skipped with a warning that
        names it and the file used instead; when none can be read, CheckpointError names each
        file, its problem and how to retrain.
        """
        files = []
        for name in names or ("last",):
            files.append(self.path / f"{name}.pt")
            if name == "last":
                files.append(self.path / "last.prev.pt")
        problems = []
        for file in filter(Path.exists, files):
            try:
                state = torch.load(file, map_location="cpu", weights_only=True)
            except Exception as error:  # torch raises several types for damaged files
                problems.append(f"{file.name} is unreadable ({_first_sentence(error)})")
                continue
            if problems:
                warnings.warn(
                    f"{self.path}: {'; '.join(problems)}: using {file.name} (epoch "
                    f"{state.get('epoch')}) instead",
                    RunWarning,
                    stacklevel=2,
                )
            return state
        if problems:
            raise CheckpointError(f"{self.path}: {'; '.join(problems)}; {self.retrain_hint}")
        return None

    def weights(self) -> dict | None:
        """The checkpoint a run is evaluated and used with: the monitor's best, else the last;
        None for a run of no epochs (random init), whose weights are the initial ones."""
        if self.config.epochs == 0:
            return None
        state = self.load_checkpoint("best", "last")
        if state is None:
            raise CheckpointError(
                f"{self.path}: no checkpoint (best.pt or last.pt); {self.retrain_hint}"
            )
        return state

    def load_weights(self, model: torch.nn.Module) -> int:
        """Load `weights()` into the run's model; returns their epoch, -1 for a run of no
        epochs, which keeps the model's initial weights."""
        weights = self.weights()
        if weights is None:
            return -1
        model.load_state_dict(weights["model"])
        return weights["epoch"]

    @property
    def retrain_hint(self) -> str:
        """What to do when its weights are lost."""
        return f"to train it again, delete {self.path} and rerun the command that made it"

    def finish(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / "finished.json", json.dumps(summary, indent=1, default=str))


def run_id(config) -> str:
    """<kind>-<hash of the config>, with the paths it holds replaced by what they name: the
    dataset (data_dir) by its fingerprint, a fine-tuning's pretraining run by that run's id.

    A data_dir holding no dataset stays as written: such a run cannot train, and says why when
    it tries.
    """
    identity = config
    if getattr(config, "data_dir", ""):
        with contextlib.suppress(DatasetError):
            identity = replace(config, data_dir=data_fingerprint(config.data_dir))
    if isinstance(config, FinetuneConfig):
        identity = replace(config, pretrain_run=Path(config.pretrain_run).name)
    return f"{kind_of(config)}-{config_hash(identity)}"


def open_run(config, runs_dir: str | Path | None = None) -> Run:
    """The run of this config: existing (finished or not) or newly created.

    config.json records the config as last opened, so that commands given the run's folder
    (linear-eval, finetune, embed) find its dataset where it is now.
    """
    path = folders.runs(runs_dir) / run_id(config)
    path.mkdir(parents=True, exist_ok=True)
    config_file = path / "config.json"
    text = json.dumps({"kind": kind_of(config), **config_dict(config)}, indent=1)
    if not config_file.is_file() or config_file.read_text() != text:
        atomic_write_text(config_file, text)
    return Run(path, config)


@contextmanager
def claimed_run(config, runs_dir: str | Path | None = None) -> Iterator[Run]:
    """The run of this config, worked on by this process alone while the block runs.

    A second process asking for the same run says that it waits, waits, then finds the run
    finished (or resumes it, if the first one died). torchrun's other ranks (RANK > 0) share
    rank 0's claim.
    """
    run = open_run(config, runs_dir)
    if int(os.environ.get("RANK", "0")) > 0:
        yield run
        return
    with exclusive(run.path / "run.lock", f"run {run.path}"):
        remove_stale_temporaries(run.path)  # checkpoints a killed process was writing
        yield run


def _first_sentence(error: Exception) -> str:
    """The error's type and first sentence (torch appends advice that does not apply here)."""
    text = str(error).partition("\n")[0].split(". ")[0]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_run(path: str | Path) -> Run:
    """A run from its folder (as printed by the CLI), config included."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path}: not a run folder (no config.json)")
    values = json.loads(config_file.read_text())
    return Run(path, make_config(values.pop("kind"), **values))


# ----------------------------------------------------------------------------- results table

RESULTS_FILE = "results.csv"


def append_result(row: dict[str, Any], runs_dir: str | Path | None = None) -> None:
    """Add one run's result row under a file lock (safe with concurrent jobs on one store).

    A run has at most one row: a row for a run already in the table replaces the old one (a
    run killed between its row and its finished marker writes its row again when it is rerun).
    The table is rewritten atomically, with the union of the columns.
    """
    file = folders.runs(runs_dir) / RESULTS_FILE
    file.parent.mkdir(parents=True, exist_ok=True)
    row = {"commit": git_commit(), **row}
    with exclusive(file.with_suffix(".lock"), f"results table {file}"):
        table = pd.read_csv(file) if file.is_file() else pd.DataFrame()
        if "run" in row and "run" in table.columns:
            table = table[table["run"] != row["run"]]
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        atomic_write_text(file, table.to_csv(index=False))


def load_results(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """Every result row of the store as a DataFrame (empty when there is none)."""
    file = folders.runs(runs_dir) / RESULTS_FILE
    return pd.read_csv(file) if file.is_file() else pd.DataFrame()


def git_commit() -> str:
    """The checkout's commit (with -dirty when modified), or 'unknown' outside git."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"
