"""How runs print: a run named the way a user names it (folder, id or id prefix), a line per run
for `aclaudio runs list`, and a config's settings with those that change nothing marked (for
`config show` and `runs show`), so that nobody reads a value that has no effect as one that does.

commands.py imports it inside the command functions: `aclaudio --help` loads none of this.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aclaudio.data import folders
from aclaudio.training.config import kind_of, settable, setting_text
from aclaudio.training.runs import MARKER, Run, load_run

#: The objective's settings shown in a run's line, where the objective has them.
MAIN_SETTINGS = ("alpha", "margin")
HEADER = (
    "run",
    "kind",
    "profile",
    "objective",
    "settings",
    "seed",
    "length",
    "test micro",
    "finished",
)
#: The columns of numbers, aligned to the right.
NUMBERS = {"seed", "test micro"}
#: Matches named in the error about an ambiguous prefix.
NAMED_MATCHES = 20


def lookup_run(which: str | Path, runs_dir: str | Path | None = None) -> Run:
    """The run of a folder, else of an id in the store, or of a prefix of one id (or of its
    hash: `56f7` for pretrain-56f7637027bb). A prefix of several runs is an error naming them."""
    path = Path(which)
    if path.exists() or len(path.parts) > 1:
        return load_run(path)
    store = folders.runs(runs_dir)
    ids = sorted(file.parent.name for file in store.glob("*/config.json"))
    matches = [i for i in ids if i == str(which)] or [
        i for i in ids if i.startswith(str(which)) or i.partition("-")[2].startswith(str(which))
    ]
    if not matches:
        raise FileNotFoundError(
            f"{which}: no such run folder, and no run id in {store} starts with it "
            "(`aclaudio runs list` lists them)"
        )
    if len(matches) > 1:
        named = ", ".join(matches[:NAMED_MATCHES])
        more = f" and {len(matches) - NAMED_MATCHES} more" if len(matches) > NAMED_MATCHES else ""
        raise ValueError(
            f"{which}: matches {len(matches)} runs in {store} ({named}{more}); give more of the id"
        )
    return load_run(store / matches[0])


def not_in_effect(config) -> dict[str, str]:
    """The settings whose value changes nothing in this config, with why: a step budget sets a
    pretraining's length whatever `epochs` says; SpecAugment's mask sizes need it switched on."""
    notes = {}
    if getattr(config, "steps", 0) > 0:
        notes["epochs"] = "overridden by steps"
    augment = getattr(config, "augment", None)
    if augment is not None and not augment.specaugment:
        unused = "unused: augment.specaugment is false"
        notes |= {"augment.freq_mask": unused, "augment.time_mask": unused}
    return notes


def print_settings(config, indent: str = "") -> dict[str, Any]:
    """Print every `--set` key as a valid `--set` argument, its type, and why it has no effect
    where it has none; returns the same as JSON-able values."""
    values = settable(config)
    types = {key: type(value).__name__ for key, value in values.items()}
    notes = not_in_effect(config)
    lines = [f"{key}={setting_text(value)}" for key, value in values.items()]
    width, type_width = max(map(len, lines)), max(map(len, types.values()))
    for line, (key, kind) in zip(lines, types.items(), strict=True):
        print(f"{indent}{line:{width}s}  {kind:{type_width}s}  {notes.get(key, '')}".rstrip())
    return {"settings": values, "types": types, "overridden": notes}


def selected(rows: list[dict], args: argparse.Namespace) -> list[dict]:
    """The store's rows (results.store_rows) that pass the list's filters, as each line shows
    them, in order of kind, profile, objective, settings and seed."""
    wanted = {
        "kind": args.kind,
        "profile": args.profile,
        "objective": args.objective,
        "seed": args.seed,
    }
    kept = [
        _brief(row)
        for row in rows
        if all(value is None or row.get(key) == value for key, value in wanted.items())
        and not (args.unfinished and row["finished"])
    ]
    return sorted(kept, key=_order)


def table_lines(rows: list[dict]) -> list[str]:
    """The header and a line per row, in columns."""
    cells = [HEADER, *map(_cells, rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    align = [str.rjust if name in NUMBERS else str.ljust for name in HEADER]
    return [
        "  ".join(just(c, w) for just, c, w in zip(align, line, widths, strict=True)).rstrip()
        for line in cells
    ]


def show_run(run: Run) -> dict[str, Any]:
    """Print a run's config, its summary and the files of its folder; returns them."""
    summary = run.summary()
    kind = kind_of(run.config)
    print(f"{run.id}: {kind}, {'finished' if summary else 'unfinished'}, in {run.path}")
    print("config:")
    settings = print_settings(run.config, indent="  ")
    print("summary:" if summary else f"summary: none (no readable {MARKER} yet)")
    for key, value in summary.items():
        print(f"  {key}: {f'{value:.6g}' if isinstance(value, float) else value}")
    files = [
        {"name": f.name + "/" * f.is_dir(), "bytes": f.stat().st_size if f.is_file() else None}
        for f in sorted(run.path.iterdir())
    ]
    print("files:")
    width = max((len(f["name"]) for f in files), default=0)
    for f in files:
        size = "" if f["bytes"] is None else f"{f['bytes']:,} bytes"
        print(f"  {f['name']:{width}s}  {size}".rstrip())
    state = {"run": run.id, "kind": kind, "run_dir": str(run.path), "finished": bool(summary)}
    return state | settings | {"summary": summary, "files": files}


def _brief(row: dict) -> dict:
    """What a run's line shows, JSON-able (a fine-tuning's pretraining run by its id)."""
    brief = {key: row.get(key) for key in ("run", "kind", "profile", "objective")}
    brief |= {key: row[key] for key in MAIN_SETTINGS if key in row}
    if row.get("pretrain_run"):
        brief["pretrain_run"] = Path(row["pretrain_run"]).name
    brief |= {key: row.get(key) for key in ("seed", "epochs", "steps", "test_micro", "finished")}
    return brief


def _order(brief: dict) -> tuple:
    """Sort key: kind, profile, objective, then the settings as numbers, seed and id."""
    settings = [(brief.get(key) is not None, brief.get(key) or 0) for key in MAIN_SETTINGS]
    text = [brief.get(key) or "" for key in ("kind", "profile", "objective")]
    return (*text, *settings, brief["seed"], brief["run"])


def _cells(brief: dict) -> tuple[str, ...]:
    """A run's line as text, column by column (HEADER); "-" for what it does not have."""
    settings = " ".join(
        f"{key}={setting_text(brief[key])}" for key in MAIN_SETTINGS if key in brief
    )
    if "pretrain_run" in brief:
        settings = f"of {brief['pretrain_run']}"
    count, unit = (brief["steps"], "step") if brief.get("steps") else (brief["epochs"], "epoch")
    length = f"{count} {unit}{'s' * (count != 1)}"
    accuracy = brief.get("test_micro")
    return (
        brief["run"],
        brief["kind"],
        brief["profile"] or "-",
        brief["objective"] or "-",
        settings or "-",
        str(brief["seed"]),
        length,
        "-" if accuracy is None else f"{accuracy:.2%}",
        "yes" if brief["finished"] else "no",
    )
