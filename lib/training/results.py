"""The results table: one row per finished run of a store, in RUNS/results.csv; and the rows of
every run of a store, finished or not, for `aclaudio runs list`.

The table is derived state: every finished run's folder holds its config and its summary
(finished.json), so the table can always be rebuilt from the folders (`rebuild_results`, the
command `aclaudio runs rebuild`). A table that does not read back, or that misses a finished
run, is rebuilt when it is next read or written, with a warning that names it: a damaged table
never blocks a run and never loses a row.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from aclaudio.data import folders
from aclaudio.data.atomic import DamagedFileError, atomic_write_text, exclusive, read_written
from aclaudio.training.config import config_row, kind_of
from aclaudio.training.runs import MARKER, RunWarning, load_run

RESULTS_FILE = "results.csv"


def append_result(row: dict[str, Any], runs_dir: str | Path | None = None) -> None:
    """Add one run's result row under a file lock (safe with concurrent jobs on one store).

    A run has at most one row: a row for a run already in the table replaces the old one (a
    run killed between its row and its finished marker writes its row again when it is rerun).
    The table is rewritten atomically, with the union of the columns.
    """
    file = _table_file(runs_dir)
    file.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(file.with_suffix(".lock"), f"results table {file}"):
        table = _read_or_rebuild(file)
        if "run" in row and "run" in table.columns:
            table = table[table["run"] != row["run"]]
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        atomic_write_text(file, table.to_csv(index=False))


def load_results(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """Every result row of the store as a DataFrame (empty when there is none); rebuilt first
    when the table is damaged or misses a finished run."""
    file = _table_file(runs_dir)
    if not file.parent.is_dir():
        return pd.DataFrame()
    try:
        table = _read(file)
    except DamagedFileError as error:
        return _rebuilt_with_warning(file, str(error))
    missing = sorted(finished_runs(file.parent) - set(table.get("run", [])))
    if missing:
        reason = f"{file}: no row for {len(missing)} finished run(s) ({', '.join(missing[:3])})"
        return _rebuilt_with_warning(file, reason)
    return table


def rebuild_results(runs_dir: str | Path | None = None) -> pd.DataFrame:
    """Write the results table anew from the finished runs' folders, in the order they
    finished; returns it."""
    file = _table_file(runs_dir)
    with exclusive(file.with_suffix(".lock"), f"results table {file}"):
        table = _from_folders(file.parent)
        atomic_write_text(file, table.to_csv(index=False))
    return table


def store_rows(runs_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per run folder of the store, finished or not, read from the folders alone (the
    table holds only finished runs, and listing writes nothing): `run`, `kind`, the config as
    plain columns, the summary, and `finished` (its marker reads back). A folder whose config
    does not read back is left out with a warning that names it."""
    rows = []
    for config_file in sorted(folders.runs(runs_dir).glob("*/config.json")):
        try:
            run = load_run(config_file.parent)
        except (ValueError, OSError) as error:
            warnings.warn(f"{error}: left out of the list", RunWarning, stacklevel=2)
            continue
        summary = run.summary()
        row = {"run": run.id, "kind": kind_of(run.config)} | config_row(run.config) | summary
        rows.append(row | {"finished": bool(summary)})
    return rows


def finished_runs(store: Path) -> set[str]:
    """The ids of the store's runs whose marker is there (read or not)."""
    return {marker.parent.name for marker in store.glob(f"*/{MARKER}")}


def result_row(run) -> dict[str, Any]:
    """A finished run's row: its config as plain columns, then its summary."""
    return config_row(run.config) | run.summary()


def _table_file(runs_dir: str | Path | None) -> Path:
    return folders.runs(runs_dir) / RESULTS_FILE


def _read(file: Path) -> pd.DataFrame:
    if not file.is_file():
        return pd.DataFrame()
    return read_written(file, _read_table, remedy="it is rebuilt from the run folders")


def _read_table(file: Path) -> pd.DataFrame:
    """The table, whole: every write ends it with a newline, so a last line without one was
    cut (pandas would read what is left of it as a row with missing values)."""
    with open(file, "rb") as handle:
        handle.seek(-1, 2)
        if handle.read(1) != b"\n":
            raise ValueError("cut short: its last line has no end")
    return pd.read_csv(file)


def _read_or_rebuild(file: Path) -> pd.DataFrame:
    """The table as it stands, or rebuilt from the folders when it does not read back."""
    try:
        return _read(file)
    except DamagedFileError as error:
        warnings.warn(str(error), RunWarning, stacklevel=3)
        return _from_folders(file.parent)


def _rebuilt_with_warning(file: Path, reason: str) -> pd.DataFrame:
    warnings.warn(f"{reason}: rebuilding it from the run folders", RunWarning, stacklevel=3)
    return rebuild_results(file.parent)


def _from_folders(store: Path) -> pd.DataFrame:
    """One row per finished run whose folder reads back (a run that does not is warned about
    by its own reading, and left out until it is rerun)."""
    runs = []
    for run_id in sorted(finished_runs(store)):
        try:
            run = load_run(store / run_id)
        except (ValueError, OSError) as error:
            warnings.warn(f"{error}: left out of the results table", RunWarning, stacklevel=4)
            continue
        if run.finished:
            runs.append(run)
    rows = [result_row(run) for run in runs]
    table = pd.DataFrame(rows)
    if "finished_at" in table.columns:
        table = table.sort_values("finished_at", kind="stable", ignore_index=True)
    return table
