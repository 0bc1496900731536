"""The GPU run kit's measurements (scripts/gpu_check.sh, docs/benchmarks.md): the paper
profile's training throughput with and without torch.compile, a 2-epoch pretraining with its
evaluation, the same run killed and resumed, and the 500-epoch estimate, in one JSON and one
Markdown table.

Each step runs in a process of its own (`python -m aclaudio.cli.gpu_kit --step NAME`), so that
its time limit can end it, a compile or a CUDA call that hangs included, and the next step
still runs. scripts/gpu_kit.py installs what is missing, then starts this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aclaudio.data import folders
from aclaudio.data.cache import build_cache
from aclaudio.data.datasets import load_dataset
from aclaudio.data.synth import synthesize
from aclaudio.data.system import usable_cpus
from aclaudio.evaluation.embeddings import load_pretrained
from aclaudio.evaluation.monitor import knn_monitor
from aclaudio.nn import objectives
from aclaudio.nn.models import build_contrastive_model
from aclaudio.recipes.pretrain import contrastive_epoch, pretrain
from aclaudio.training.batches import TrainingData
from aclaudio.training.config import profile_config, with_overrides
from aclaudio.training.devices import compiled, resolve_device
from aclaudio.training.runs import load_run

#: The 500-epoch estimate: FSDnoisy18k's noisy subset in the paper's batches, and the goal.
EPOCHS, FSD_NOISY, PAPER_BATCH = 500, 15_813, 128
GOAL_MINUTES, FLOOR_CLIPS_PER_S = 7.0, 9_000


@dataclass(frozen=True)
class Size:
    synth: str  # the built-in dataset's size (aclaudio.data.synth.PROFILES)
    batch_size: int
    warmup: int  # steps before each timed throughput epoch: the compile happens there
    steps: int  # timed steps of each throughput measurement
    limits: tuple[tuple[str, int], ...]  # (step, seconds it may take), in the order they run


# full: the limits add up to 460 s, so that with ~20 s of installing the kit ends within
# 8 minutes on one H200; what each step should take there: docs/benchmarks.md.
STEP_NAMES = ("prepare", "throughput", "compiled", "pretrain", "resume")
SIZES = {
    "tiny": Size("smoke", 8, 1, 3, tuple(zip(STEP_NAMES, (60, 60, 150, 90, 120), strict=True))),
    "full": Size("fsd", 128, 3, 100, tuple(zip(STEP_NAMES, (80, 50, 140, 90, 100), strict=True))),
}


@contextmanager
def timed(into: dict, key: str) -> Iterator[None]:
    """Seconds spent in the block, into[key]."""
    start = time.perf_counter()
    yield
    into[key] = round(time.perf_counter() - start, 3)


def bounded(command: list[str], limit: float, log: Path) -> dict:
    """Run `command` (its output into `log`) for at most `limit` seconds; past them it is
    killed with every process it started. Its status, wall time and, on failure, last line."""
    started = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            code = None
    result = {"wall_s": round(time.perf_counter() - started, 1)}
    if code is None:
        return result | {"status": "timed out", "limit_s": limit}
    if code:
        lines = [line.strip() for line in log.read_text().splitlines() if line.strip()]
        return result | {"status": "failed", "error": (lines or [f"exit {code}"])[-1]}
    return result | {"status": "ok"}


def data_dir(args, size: Size) -> Path:
    return args.work / f"data-{size.synth}"


def kit_settings(args, size: Size, *extra: str) -> list[str]:
    """The `--set` overrides of every run of the kit: the paper profile, 2 epochs."""
    return ["epochs=2", f"batch_size={size.batch_size}", f"device={args.device}", *extra]


def paper_config(args, size: Size, *extra: str):
    """The config that `aclaudio pretrain --profile paper` makes with kit_settings."""
    base = profile_config("pretrain", "paper", data_dir=str(data_dir(args, size)))
    return with_overrides(base, kit_settings(args, size, *extra))


def machine(device: str) -> dict:
    """Where the kit ran: the device, torch, CUDA and cuDNN versions, Python, CPUs."""
    info = {"torch": torch.__version__, "cuda": torch.version.cuda}
    info |= {"cudnn": str(torch.backends.cudnn.version()), "python": platform.python_version()}
    info |= {"cpus": usable_cpus(), "torch_threads": torch.get_num_threads()}
    if device == "cpu":
        return {"device": f"{platform.processor() or platform.machine()} CPU"} | info
    if not torch.cuda.is_available():
        raise ValueError(f"--device cuda, but torch {torch.__version__} sees no CUDA device")
    props = torch.cuda.get_device_properties(0)
    return {"device": props.name, "memory_gib": round(props.total_memory / 2**30, 1)} | info


def step_prepare(args, size: Size) -> dict:
    """The built-in dataset of the size and its ssl_paper feature cache, on every core."""
    result = {"machine": machine(args.device)}  # first: without the device, nothing to do
    made = synthesize(data_dir(args, size), profile=size.synth, seed=0, progress=False)
    result |= {"synth_s": made["seconds"], "synth_reused": made["reused"], **made["clips"]}
    result["audio_hours"] = round(made["hours"]["train"] + made["hours"]["test"], 2)
    with timed(result, "cache_s"):
        dataset = load_dataset(data_dir(args, size))
        cache = build_cache(dataset, "ssl_paper", workers=usable_cpus(), progress=False)
    result["cache_gib"] = round((cache.path / "features.f16").stat().st_size / 2**30, 3)
    return result


class PreDrawn:
    """A feature cache that answers every request with one batch of patches drawn in advance:
    the training loop without its reads from the cache, against which the share of each step
    spent waiting for them is measured."""

    def __init__(self, cache, rows: np.ndarray, rng: np.random.Generator):
        self.preset = cache.preset
        self.patches = cache.random_patches(rows, rng=rng)

    def random_patches(self, rows, frames=None, *, rng):
        return self.patches[: len(rows)]


def step_throughput(args, size: Size, *extra: str) -> dict:
    """Step 1: clips/s of paper-profile training (two views, augmentation included) as the
    recipe trains, reading the cache live, then from pre-drawn patches (the difference is the
    wait for data); the device's peak memory, or on a CPU the process's peak RSS."""
    config = paper_config(args, size, *extra)
    device = resolve_device(config.device)
    data = TrainingData.load(config, progress=False)
    model = build_contrastive_model(config, device)
    step_model = compiled(model, config)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    objective = objectives.build(config.objective, "views", config.loss)
    steps = min(size.steps, len(data.train_rows) // config.batch_size)
    drawn = PreDrawn(data.cache, data.train_rows[: config.batch_size], np.random.default_rng(0))
    result = {"batch_size": config.batch_size, "timed_steps": steps}
    for name, source in (("", data), ("_predrawn", dataclasses.replace(data, cache=drawn))):
        plan = [size.warmup, steps]  # the warm-up epoch, then the timed one
        warmup, timed_epoch = [
            contrastive_epoch(step_model, optimizer, source, config, objective, epoch, plan, device)
            for epoch in range(2)
        ]
        result[f"warmup{name}_s"] = round(warmup.seconds, 2)
        result[f"clips_per_s{name}"] = round(steps * config.batch_size / timed_epoch.seconds, 1)
    result["data_wait_share"] = round(
        max(0.0, 1 - result["clips_per_s"] / result["clips_per_s_predrawn"]), 3
    )
    if device.type == "cuda":
        result["peak_device_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    else:  # Linux reports kilobytes
        result["peak_rss_gib"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2
        )
    return result


def step_pretrain(args, size: Size) -> dict:
    """Step 2: the paper profile for 2 epochs end to end: its training (each epoch), the kNN
    monitor (it runs every epoch; timed once more on its own), and the evaluation (batch-norm
    re-estimation and the linear evaluation, from the run's own files: its last checkpoint,
    then evaluation.json)."""
    result: dict = {}
    with timed(result, "run_wall_s"):
        run = pretrain(
            paper_config(args, size), runs_dir=args.work / "runs/straight", progress=False
        )
    metrics, summary = run.metrics(), run.summary()
    result["train_s"] = [round(s, 2) for s in metrics["seconds"]]
    result["clips_per_s"] = [round(c, 1) for c in metrics["clips_per_s"]]
    stamps = [(run.path / name).stat().st_mtime for name in ("last.pt", "evaluation.json")]
    result["evaluation_s"] = round(stamps[1] - stamps[0], 3)
    model, data, device = load_pretrained(run, progress=False)
    with timed(result, "knn_monitor_s"):
        knn_monitor(model, data, run.config, device)
    knn = metrics.filter(like="knn_").iloc[-1]
    result |= {name: None if np.isnan(x) else round(float(x), 4) for name, x in knn.items()}
    return result | {k: round(summary[k], 4) for k in ("test_micro", "test_macro")}


def step_resume(args, size: Size) -> dict:
    """Step 3: step 2's run again through the command line, killed (SIGKILL) half an epoch
    after its first checkpoint, then resumed; its weights against step 2's."""
    runs = args.work / "runs/resumed"
    command = [sys.executable, "-m", "aclaudio.cli", "pretrain", "--profile", "paper"]
    command += ["--data-dir", str(data_dir(args, size)), "--runs-dir", str(runs)]
    command += [part for setting in kit_settings(args, size) for part in ("--set", setting)]
    result: dict = {}
    started = time.perf_counter()
    with (args.work / "logs/resume-killed.log").open("w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    while not (first := list(runs.glob("*/last.pt"))):
        if child.poll() is not None:
            raise RuntimeError(f"the run ended (exit {child.returncode}) before its checkpoint")
        time.sleep(0.02)
    run, measured = load_run(first[0].parent), args.work / "logs/throughput.json"
    epoch = run.metrics().iloc[0]  # half an epoch: at step 1's pace (epoch 0 includes warm-up)
    rate = json.loads(measured.read_text())["clips_per_s"] if measured.exists() else None
    time.sleep((epoch["steps"] * size.batch_size / rate if rate else epoch["seconds"]) / 2)
    child.kill()  # SIGKILL
    child.wait()
    result["killed_after_s"] = round(time.perf_counter() - started, 2)
    result["killed_mid_epoch"] = run.load_checkpoint()["epoch"] == 0 and not run.finished
    with timed(result, "resumed_s"), (args.work / "logs/resume-resumed.log").open("w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True)
    straight = load_run(next((args.work / "runs/straight").glob("pretrain-*")))
    pairs = zip(*(r.load_checkpoint()["model"].values() for r in (run, straight)), strict=True)
    diff = max((a.double() - b.double()).abs().max().item() for a, b in pairs)
    result |= {"identical": diff == 0, "max_abs_diff": diff}
    return result | {
        "same_test_micro": run.summary()["test_micro"] == straight.summary()["test_micro"]
    }


#: The step whose result each step needs: the dataset; step 2's run to compare with.
NEEDS = {
    "throughput": "prepare",
    "compiled": "prepare",
    "pretrain": "prepare",
    "resume": "pretrain",
}
STEPS = {
    "prepare": step_prepare,
    "throughput": step_throughput,
    "compiled": lambda args, size: step_throughput(args, size, "compile=true"),
    "pretrain": step_pretrain,
    "resume": step_resume,
}


def ok(step: dict) -> bool:
    return step.get("status") == "ok"


def estimate(steps: dict) -> dict:
    """Step 4: a 500-epoch pretraining on FSDnoisy18k's noisy subset at step 1's best
    throughput, against the goal; and with step 2's kNN monitor (every epoch) and evaluation."""
    measured = {k: steps[k]["clips_per_s"] for k in ("throughput", "compiled") if ok(steps[k])}
    if not measured:
        return {"verdict": "verdict: no throughput was measured (step 1), goal 7 min: unknown"}
    best = max(measured, key=measured.get)
    clips = EPOCHS * (FSD_NOISY // PAPER_BATCH) * PAPER_BATCH
    minutes = clips / measured[best] / 60
    result = {"epochs": EPOCHS, "steps_per_epoch": FSD_NOISY // PAPER_BATCH, "clips": clips}
    result |= {"from": best, "clips_per_s": measured[best], "minutes": round(minutes, 2)}
    if ok(part := steps["pretrain"]):
        added = EPOCHS * part["knn_monitor_s"] + part["evaluation_s"]
        result["minutes_with_monitor_and_evaluation"] = round(minutes + added / 60, 2)
    word = "met" if minutes <= GOAL_MINUTES else "missed"
    word = "below the floor" if measured[best] < FLOOR_CLIPS_PER_S else word
    return result | {"verdict": f"verdict: 500 epochs in ~{minutes:,.1f} min, goal 7 min: {word}"}


def flat(tree: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dotted key, value) of every figure of a nested report."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from flat(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def cell(value: object) -> str:
    """A figure as the Markdown table shows it."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(map(cell, value)) or "none"
    return "null" if value is None else str(value).replace("|", "/")


def write_report(report: dict, args) -> list[Path]:
    """The report as JSON and as one Markdown table; only a full GPU run is gpu.json/gpu.md."""
    stem = "gpu" if args.device == "cuda" else "gpu-kit-cpu"
    stem += "" if args.size == "full" else f"-{args.size}"
    args.out.mkdir(parents=True, exist_ok=True)
    files = [args.out / f"{stem}.json", args.out / f"{stem}.md"]
    files[0].write_text(json.dumps(report, indent=1) + "\n")
    rows = "\n".join(
        f"| {key} | {cell(value)} |" for key, value in flat(report) if key != "verdict"
    )
    title = f"# GPU run kit: --device {args.device} --size {args.size}"
    files[1].write_text(
        f"{title}\n\n| figure | value |\n|---|---|\n{rows}\n\n{report['verdict']}\n"
    )
    return files


def run_kit(args) -> int:
    """Every step under its limit, then the report; 0 when every step that ran succeeded."""
    size, started = SIZES[args.size], time.perf_counter()
    shutil.rmtree(args.work / "runs", ignore_errors=True)  # every run trains anew
    (args.work / "logs").mkdir(parents=True, exist_ok=True)
    environment = args.work / "logs/environment.json"  # what scripts/gpu_kit.py installed
    report: dict = {"machine": {}, "kit": {"device": args.device, "size": args.size}}
    report["kit"] |= {"batch_size": size.batch_size, "limits_s": dict(size.limits)}
    report["environment"] = json.loads(environment.read_text()) if environment.exists() else {}
    steps = report["steps"] = {}
    for name, limit in size.limits:
        if name in NEEDS and not ok(steps[NEEDS[name]]):
            steps[name] = {"status": "skipped", "reason": f"{NEEDS[name]} did not finish"}
        else:
            command = [sys.executable, "-m", "aclaudio.cli.gpu_kit", "--step", name]
            command += ["--device", args.device, "--size", args.size, "--work", str(args.work)]
            (args.work / f"logs/{name}.json").unlink(missing_ok=True)  # an earlier run's
            steps[name] = bounded(command, limit, args.work / f"logs/{name}.log")
            if ok(steps[name]):
                steps[name] |= json.loads((args.work / f"logs/{name}.json").read_text())
        print(f"{name}: " + ", ".join(f"{k} {cell(v)}" for k, v in steps[name].items()), flush=True)
    report["machine"] = steps["prepare"].pop("machine", {})
    report["estimate"] = estimate(steps)
    report["verdict"] = report["estimate"].pop("verdict")
    report["kit"]["wall_s"] = round(time.perf_counter() - started, 1)
    files = write_report(report, args)
    print(f"machine: {', '.join(f'{k} {v}' for k, v in report['machine'].items())}")
    print("estimate: " + ", ".join(f"{k} {cell(v)}" for k, v in report["estimate"].items()))
    print(f"kit: {report['kit']['wall_s']} s; {files[0]}, {files[1]}")
    print(report["verdict"])
    return 0 if all(ok(step) for step in steps.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_kit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--size", choices=list(SIZES), default="full")
    parser.add_argument("--out", type=Path, default=folders.results() / "bench")
    parser.add_argument("--work", type=lambda p: Path(p).resolve(), default="build/gpu-kit")
    parser.add_argument("--step", choices=list(STEPS), help="one step, in this process")
    args = parser.parse_args(argv)
    if args.step is None:
        return run_kit(args)
    result = STEPS[args.step](args, SIZES[args.size])
    (args.work / f"logs/{args.step}.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
