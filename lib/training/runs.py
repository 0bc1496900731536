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
    DamagedFileError,
    atomic_torch_save,
    atomic_write_text,
    exclusive,
    read_json_object,
    read_written,
    remove_stale_temporaries,
)
from aclaudio.data.datasets import data_fingerprint
from aclaudio.training.config import FinetuneConfig, config_dict, config_hash, kind_of, make_config

#: The file a run writes last: its summary, and the sign that it finished.
MARKER = "finished.json"


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
        """Whether the run finished: its marker is there and reads back. A damaged marker counts
        as unfinished, with a warning that names it: a rerun evaluates the run again from its
        checkpoints and writes a new one."""
        return self._marker() is not None

    def summary(self) -> dict:
        """What the finished run reported (empty while it is unfinished)."""
        return self._marker() or {}

    def _marker(self) -> dict | None:
        marker = self.path / MARKER
        if not marker.is_file():
            return None
        try:
            return read_written(marker, read_json_object, remedy="the run counts as unfinished")
        except DamagedFileError as error:
            warnings.warn(f"{error}: rerun it to evaluate it again", RunWarning, stacklevel=3)
            return None

    def metrics(self) -> pd.DataFrame:
        """The per-epoch metrics so far."""
        file = self.path / "metrics.csv"
        if not file.is_file():
            return pd.DataFrame()
        remedy = (
            "delete it to go on: the rows of the epochs so far are lost, the checkpoints and "
            "the training are not"
        )
        return read_written(file, _read_metrics, remedy=remedy)

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Append one epoch's metrics; rows of epochs redone after a resume replace the old."""
        table = self.metrics()
        if not table.empty:
            table = table[table["epoch"] < row["epoch"]]
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        atomic_write_text(self.path / "metrics.csv", table.to_csv(index=False))

    def save_checkpoint(self, state: dict, name: str = "last") -> None:
        """Write a checkpoint atomically; the previous `last` is kept as `last.prev`. A write
        that fails (a full disk) is an OSError naming the file; nothing earlier is lost."""
        previous = self.path / "last.prev.pt" if name == "last" else None
        atomic_torch_save(state, self.path / f"{name}.pt", previous=previous)

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
        try:
            model.load_state_dict(weights["model"])
            return int(weights["epoch"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"{self.path}: its checkpoint does not fit the run's model "
                f"({_first_sentence(error)}); {self.retrain_hint}"
            ) from None

    @property
    def retrain_hint(self) -> str:
        """What to do when its weights are lost."""
        return f"to train it again, delete {self.path} and rerun the command that made it"

    def finish(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / MARKER, json.dumps(summary, indent=1, default=str))


def run_id(config) -> str:
    """<kind>-<hash of the config>, with the paths it holds replaced by what they name: the
    dataset (data_dir) by its fingerprint, a fine-tuning's pretraining run by that run's id.

    A data_dir holding no dataset is a DatasetError here, before any folder is made.
    """
    identity = config
    if getattr(config, "data_dir", ""):
        identity = replace(config, data_dir=data_fingerprint(config.data_dir))
    if isinstance(config, FinetuneConfig):
        identity = replace(config, pretrain_run=Path(config.pretrain_run).name)
    return f"{kind_of(config)}-{config_hash(identity)}"


def find_run(config, runs_dir: str | Path | None = None) -> Run:
    """The run of this config as it is in the store, made or not; nothing is written, so a
    finished run reads from a store the process may not write to."""
    return Run(folders.runs(runs_dir) / run_id(config), config)


def open_run(config, runs_dir: str | Path | None = None) -> Run:
    """The run of this config: existing (finished or not) or newly created.

    config.json records the config as last opened, so that commands given the run's folder
    (linear-eval, finetune, embed) find its dataset where it is now.
    """
    run = find_run(config, runs_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    _record_config(run)
    return run


def _record_config(run: Run) -> None:
    """config.json as this config has it (a moved dataset's new folder), when it differs."""
    config_file = run.path / "config.json"
    text = json.dumps({"kind": kind_of(run.config), **config_dict(run.config)}, indent=1)
    if not config_file.is_file() or config_file.read_text() != text:
        atomic_write_text(config_file, text)


@contextmanager
def claimed_run(config, runs_dir: str | Path | None = None) -> Iterator[Run]:
    """The run of this config, worked on by this process alone while the block runs.

    A second process asking for the same run says that it waits, waits, then finds the run
    finished (or resumes it, if the first one died). torchrun's other ranks (RANK > 0) share
    rank 0's claim. A run that has finished is returned unclaimed, and nothing is written:
    reading it needs no write access to the store.
    """
    run = find_run(config, runs_dir)
    if run.finished:
        with contextlib.suppress(OSError):  # a store this process may only read: as it is
            _record_config(run)
        yield run
        return
    run = open_run(config, runs_dir)
    if int(os.environ.get("RANK", "0")) > 0:
        yield run
        return
    with exclusive(run.path / "run.lock", f"run {run.path}"):
        remove_stale_temporaries(run.path)  # checkpoints a killed process was writing
        yield run


def _read_metrics(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)
    if "epoch" not in table.columns:
        raise ValueError("no epoch column")
    return table


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
    remedy = f"the run cannot be read: delete {path} and rerun the command that made it"
    return Run(path, read_written(config_file, _read_config, remedy=remedy))


def _read_config(path: Path):
    values = read_json_object(path)
    return make_config(values.pop("kind"), **values)


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
