"""Where the main job is: a progress bar over every run of a profile's study, with the time
left, and a line for each run that finishes. run_all.sh starts it beside the notebooks (the
notebooks train the runs; this only watches the run store), so the bar is the terminal's and
never enters a notebook or its page.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from aclaudio.study import grids
from aclaudio.training.config import kind_of
from aclaudio.training.runs import Run, find_run


@dataclass
class StudyRuns:
    """The runs a profile's notebooks ask for, each once, and which were finished at the start;
    `refresh` lists them again (notebook 07's depend on its sweep's results; seconds of work on
    the built-in cpu set, so `watch` does it only when a run has finished)."""

    runs: list[Run]
    finished_at_start: frozenset[str]
    source: tuple = ()  # what `of` was given, for `refresh`

    @classmethod
    def of(
        cls, profile: str, data_dir: str | Path, store: str | Path, notebooks: tuple[str, ...] = ()
    ) -> StudyRuns:
        """The runs of the study, or of the `notebooks` (numbers, "02") run_all.sh runs."""
        source = (profile, data_dir, store, notebooks)
        runs = _runs(*source)
        return cls(runs, frozenset(run.id for run in runs if run.finished), source)

    def refresh(self) -> None:
        """List the runs again, as the store now decides them."""
        self.runs = _runs(*self.source)

    def counts(self) -> dict[str, int]:
        """How many runs the study has, trained since the start, reused, still unfinished."""
        finished = sum(run.finished for run in self.runs)
        reused = len(self.finished_at_start)
        return {
            "runs": len(self.runs),
            "trained": finished - reused,
            "reused": reused,
            "unfinished": len(self.runs) - finished,
        }


def _runs(profile: str, data_dir, store, notebooks: tuple[str, ...]) -> list[Run]:
    runs = {}
    for config in grids.all_configs(profile, data_dir, notebooks, store):
        run = find_run(config, store)
        runs.setdefault(run.id, run)
    return list(runs.values())


def label(run: Run) -> str:
    """A run as a reader names it: kind, objective and its settings, subset, seed."""
    config, parts = run.config, [kind_of(run.config)]
    if getattr(config, "epochs", 1) == 0:
        parts.append("random init")
    elif hasattr(config, "objective"):
        defaults = type(config.loss)()
        shown = [
            f"{f.name} {value:g}" if isinstance(value, float) else f"{f.name} {value}"
            for f in dataclasses.fields(config.loss)
            if (value := getattr(config.loss, f.name)) != getattr(defaults, f.name)
            or f.name in ("alpha", "margin")
        ]
        parts.append(" ".join([config.objective, *shown]))
    if getattr(config, "snapshot_steps", ()):
        parts.append(f"{config.steps} steps")
    if kind_of(config) == "supervised":
        parts.append(config.subset)
    return ", ".join([*parts, f"seed {config.seed}"])


def watch(study: StudyRuns, *, every: float = 5.0, stop=lambda: False) -> Iterator[str]:
    """Until every run has finished (or `stop()`): update a bar over the study's runs, with the
    time left (time_left), and yield a line for each run that finishes ("finished <label> in
    2 min 41 s")."""
    done = set(study.finished_at_start)
    seconds: dict[tuple, list[float]] = {}
    bar = tqdm(total=len(study.runs), initial=len(done), desc="study runs", unit="run")
    with bar:
        while len(done) < len(study.runs) and not stop():
            newly = [run for run in study.runs if run.id not in done and run.finished]
            for run in newly:
                done.add(run.id)
                took = float(run.summary().get("wall_seconds", 0.0))
                seconds.setdefault(pace(run), []).append(took)
                bar.update(1)
                yield f"finished {label(run)} in {_duration(took)}"
            if newly:  # the runs to come may depend on it (notebook 07's sweep): list them again
                study.refresh()
                bar.total = len(study.runs)
            if seconds:
                left = time_left([r for r in study.runs if r.id not in done], seconds)
                bar.set_postfix_str(f"about {_duration(left)} left")
            time.sleep(every)


def pace(run: Run) -> tuple[str, bool]:
    """Runs that take about as long: their kind, and whether they train at all (a random-init
    run is only a linear evaluation, seconds where a training run takes minutes)."""
    return kind_of(run.config), getattr(run.config, "epochs", 1) != 0


def time_left(unfinished: list[Run], seconds: dict[tuple, list[float]]) -> float:
    """Each unfinished run at the mean time of the finished runs of its pace, or of all finished
    runs where none of its pace has finished yet."""
    every = [s for times in seconds.values() for s in times]
    mean = {key: sum(times) / len(times) for key, times in seconds.items()}
    return sum(mean.get(pace(run), sum(every) / len(every)) for run in unfinished)


def summary(study: StudyRuns, wall_seconds: float) -> str:
    """The job's last words: what ran, what was reused, how long it took."""
    counts = study.counts()
    return (
        f"{counts['runs']} runs in the study: {counts['trained']} trained now, "
        f"{counts['reused']} reused, {counts['unfinished']} unfinished; "
        f"{_duration(wall_seconds)} in all"
    )


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"
