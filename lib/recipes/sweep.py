"""A grid of run configs, executed in this process, in local subprocesses or on SLURM.

Execution goes through submitit (`executor="local"` or `"slurm"`), or straight in this process
(`"inline"`, the default on a laptop: no start-up cost per run). $ACLAUDIO_JOBS = N > 1 makes
the default the local executor with N processes: how `run_all.sh --jobs N` parallelises the
notebooks' grids. Finished runs are skipped before anything is submitted, a run listed twice
is submitted once, and every run lands in the same run store and results table, so a grid can
be extended, interrupted and resumed freely.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from aclaudio.data import folders
from aclaudio.recipes.finetune import finetune
from aclaudio.recipes.pretrain import pretrain
from aclaudio.recipes.supervised import supervised
from aclaudio.training.config import kind_of
from aclaudio.training.runs import Run, open_run
from aclaudio.training.warning_lines import warnings_as_lines

JOBS_ENV = "ACLAUDIO_JOBS"


def execute(config, runs_dir: str | None = None, threads: int | None = None) -> str:
    """Train (or find) one run; the job function every executor calls. Returns its folder.
    `threads`: torch's threads in this process (local jobs share the machine's cores)."""
    if threads:
        torch.set_num_threads(threads)
    run = {"pretrain": pretrain, "supervised": supervised, "finetune": finetune}[kind_of(config)]
    return str(run(config, runs_dir=runs_dir, progress=False).path)


def _execute_naming_the_run(config, store: Path, path: Path) -> None:
    """execute, and an error that escapes it says which run failed and that the finished ones
    stay (a notebook's failed cell then names the run it was on)."""
    try:
        execute(config, str(store))
    except Exception as error:
        raise SweepError(
            f"run {path} failed ({type(error).__name__}: {error}); the grid's finished runs "
            "are kept: rerun to continue from them"
        ) from error


class SweepError(ValueError):
    """Runs of a sweep that did not finish: the message names them and where their logs are."""


def run_grid(
    configs: list,
    *,
    runs_dir: str | Path | None = None,
    executor: str | None = None,
    parallel: int | None = None,
    slurm_partition: str | None = None,
    gpus_per_job: int = 1,
    minutes: int = 240,
    logs_dir: str | Path | None = None,
) -> list[Run]:
    """Execute the unfinished runs of `configs` and return every run, finished, in order.

    inline: one after another in this process. local: submitit's LocalExecutor, `parallel`
    subprocesses at a time. slurm: one SLURM job per run (array), `gpus_per_job` GPUs,
    `minutes` of wall time, on `slurm_partition`. Without an executor: $ACLAUDIO_JOBS decides
    (module doc);
    `parallel` above 1 alone means local.
    """
    parallel = parallel or int(os.environ.get(JOBS_ENV) or 1)
    executor = executor or ("local" if parallel > 1 else "inline")
    store = folders.runs(runs_dir)
    runs = [open_run(config, store) for config in configs]
    unfinished = {
        run.path: config for config, run in zip(configs, runs, strict=True) if not run.finished
    }
    todo = list(unfinished.values())  # one job per run, however often the grid lists it
    logs, errors = Path(logs_dir or store / "submitit"), []
    if todo and executor == "inline":
        with warnings_as_lines():
            for path, config in tqdm(unfinished.items(), desc="runs", unit="run"):
                _execute_naming_the_run(config, store, path)
    elif todo:
        jobs = _submit(
            todo, str(store), executor, parallel, slurm_partition, gpus_per_job, minutes, logs
        )
        for job in tqdm(jobs, desc=f"runs ({executor})", unit="run"):
            job.wait()
            if job.exception() is not None:  # the job's traceback ends with the error itself
                errors.append(str(job.exception()).strip().splitlines()[-1])
    unfinished = [run.path for run in runs if not run.finished]
    if unfinished:
        why = f" (first error: {errors[0]}; logs in {logs})" if errors else ""
        raise SweepError(
            f"{len(unfinished)} of {len(runs)} runs did not finish: "
            f"{', '.join(map(str, unfinished))}{why}; rerun the sweep to resume them"
        )
    return runs


def _submit(configs, store, executor, parallel, partition, gpus, minutes, logs: Path):
    import submitit

    if executor == "local":
        pool = submitit.LocalExecutor(folder=logs)
        pool.update_parameters(timeout_min=minutes)
    elif executor == "slurm":
        pool = submitit.AutoExecutor(folder=logs, cluster="slurm")
        pool.update_parameters(
            timeout_min=minutes,
            gpus_per_node=gpus,
            tasks_per_node=1,
            cpus_per_task=8,
            slurm_partition=partition,
            slurm_array_parallelism=parallel,
        )
    else:
        raise ValueError(f"unknown executor {executor!r}; choose inline, local or slurm")
    if executor == "local":  # LocalExecutor has no array throttle: submit in waves
        jobs = []
        for start in range(0, len(configs), parallel):
            wave = configs[start : start + parallel]
            # the cores shared out among the wave's runs: the small encoder's memory-bound step
            # gains more from processes than from threads (docs/environment.md, --jobs)
            threads = max(1, (os.cpu_count() or 1) // len(wave))
            wave = [pool.submit(execute, c, store, threads) for c in wave]
            for job in wave:
                job.wait()
            jobs.extend(wave)
        return jobs
    with pool.batch():
        return [pool.submit(execute, config, store) for config in configs]
