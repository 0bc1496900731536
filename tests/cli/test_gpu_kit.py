"""The GPU run kit: the whole command on the CPU at its tiny size (slow tier), and the parts
that decide without a run: the package check, a step's time limit, the estimate, the files."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from aclaudio.cli import gpu_kit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kit_script():
    """scripts/gpu_kit.py, which belongs to no package, as a module."""
    spec = importlib.util.spec_from_file_location("gpu_kit_script", ROOT / "scripts/gpu_kit.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_kit_runs_every_step_on_the_cpu(tmp_path):
    command = ["bash", ROOT / "scripts/gpu_check.sh", "--device", "cpu", "--size", "tiny"]
    command += ["--out", tmp_path / "out", "--work", tmp_path / "work"]
    command += ["--wheels", tmp_path / "no-wheels"]  # everything is installed here
    # One thread: two on this shared 2-core machine ran ResNet-18 steps 50x slower under load.
    # A cache of compiled kernels of its own, so that the compile starts cold: with the cache
    # that earlier runs had left here, compiled steps once ran at 2.6 clips/s instead of 43.
    env = os.environ | {"PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "inductor")
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    verdict = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"verdict: 500 epochs in ~[\d,.]+ min, goal 7 min: below the floor", verdict
    )
    report = json.loads((tmp_path / "out/gpu-kit-cpu-tiny.json").read_text())
    steps = report["steps"]
    assert {name: step["status"] for name, step in steps.items()} == {
        "prepare": "ok",
        "throughput": "ok",
        "compiled": "ok",
        "pretrain": "ok",
        "resume": "ok",
    }
    assert report["machine"]["torch"] == torch.__version__ and report["machine"]["cpus"] >= 1
    assert (steps["prepare"]["noisy"], steps["prepare"]["test"]) == (40, 40)  # smoke size
    for speed in (steps["throughput"], steps["compiled"]):
        assert speed["timed_steps"] == 3 and speed["peak_rss_gib"] > 0
        assert speed["clips_per_s"] > 0 and speed["clips_per_s_predrawn"] > 0
        assert speed["data_wait_share"] == round(
            max(0, 1 - speed["clips_per_s"] / speed["clips_per_s_predrawn"]), 3
        )
    assert steps["compiled"]["warmup_s"] > steps["throughput"]["warmup_s"]  # the compile
    run = steps["pretrain"]
    assert len(run["train_s"]) == 2 and min(run["train_s"]) > 0 and run["evaluation_s"] > 0
    assert run["run_wall_s"] > sum(run["train_s"]) + run["evaluation_s"]
    assert 0 <= run["test_micro"] <= 1 and run["knn_balanced_acc"] is None  # 1 clean clip/class
    resume = steps["resume"]
    assert resume["killed_mid_epoch"] and resume["identical"] and resume["max_abs_diff"] == 0
    assert resume["same_test_micro"]
    estimate = report["estimate"]
    best = max(("throughput", "compiled"), key=lambda name: steps[name]["clips_per_s"])
    assert estimate["clips"] == 500 * 123 * 128 and estimate["from"] == best
    fastest = steps[best]["clips_per_s"]
    assert estimate["minutes"] == pytest.approx(estimate["clips"] / fastest / 60, 1e-3)
    table = (tmp_path / "out/gpu-kit-cpu-tiny.md").read_text()
    assert verdict in table and f"| machine.torch | {torch.__version__} |" in table
    assert "| steps.resume.identical | True |" in table


def test_a_package_neither_installed_nor_carried_stops_the_kit_in_one_line(
    kit_script, tmp_path, monkeypatch, capsys
):
    installed = kit_script.installed_versions()
    for name in ("soxr", "psutil"):
        del installed[name]
    monkeypatch.setattr(kit_script, "installed_versions", lambda: installed)
    monkeypatch.setattr(sys, "path", list(sys.path))
    wheels, work = tmp_path / "wheels", tmp_path / "work"
    code = kit_script.main(["--wheels", str(wheels), "--work", str(work), "--device", "cpu"])
    error = capsys.readouterr().err
    pins, _ = kit_script.read_lock()
    assert code == 2 and error.count("\n") == 1
    assert error.startswith(f"gpu_check: needed, neither installed nor carried in {wheels}: ")
    assert f"soxr=={pins['soxr']}" in error and f"psutil=={pins['psutil']}" in error
    assert not work.exists()  # nothing installed, nothing started


def test_carried_wheels_fill_the_gaps_at_the_locked_version(kit_script, tmp_path):
    pins, _ = kit_script.read_lock()
    installed = kit_script.installed_versions()
    for name in ("filelock", "soundfile", "cffi"):
        del installed[name]
    for name, version in (("filelock", pins["filelock"]), ("soundfile", "0.1.0")):
        (tmp_path / f"{name}-{version}-py3-none-any.whl").touch()  # pure wheels fit anywhere
    plan = kit_script.plan_install(installed, tmp_path)
    assert plan.wheels == [tmp_path / f"filelock-{pins['filelock']}-py3-none-any.whl"]
    # soundfile: carried at another version than the lock's; cffi: it brings cffi in (the lock)
    assert plan.missing == [f"soundfile=={pins['soundfile']}", f"cffi=={pins['cffi']}"]
    installed |= {"numpy": "2.0.0", "torch": "2.10.0"}  # in pyproject's range, and out of it
    plan = kit_script.plan_install(installed, tmp_path)
    assert f"numpy 2.0.0 (requirements.lock: {pins['numpy']})" in plan.mismatches
    assert f"torch=={pins['torch']} (2.10.0 installed)" in plan.missing


def test_the_download_line_fetches_what_a_bare_gpu_machine_lacks(kit_script):
    line = kit_script.download_line()
    assert line.startswith("python3 -m pip download --no-deps --only-binary=:all: ")
    assert "--python-version 3.12" in line and "--platform manylinux_2_28_x86_64" in line
    wanted = dict(pin.split("==") for pin in line.partition(" -d wheels ")[2].split())
    lacking = {"torchaudio", "soundfile", "cffi", "pycparser", "soxr", "psutil", "setuptools"}
    assert set(wanted) == lacking  # setuptools: the build backend, in case the machine's is old
    pins, _ = kit_script.read_lock(kit_script.TARGET)
    assert all(wanted[name] == pins[name] for name in lacking)


def ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # ended, not yet reaped
    except psutil.NoSuchProcess:
        return True


def test_a_step_past_its_limit_is_ended_with_what_it_started(tmp_path):
    starts_another = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    started = time.perf_counter()
    result = gpu_kit.bounded([sys.executable, "-c", starts_another], 2, tmp_path / "log")
    assert time.perf_counter() - started < 20
    assert result["status"] == "timed out" and result["limit_s"] == 2
    grandchild = int((tmp_path / "log").read_text().split()[0])
    deadline = time.monotonic() + 5
    while not ended(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended(grandchild)  # killed with the step that started it
    failed = gpu_kit.bounded(
        [sys.executable, "-c", "raise SystemExit('why, in one line')"], 20, tmp_path / "log"
    )
    assert failed["status"] == "failed" and failed["error"] == "why, in one line"


@pytest.mark.parametrize(
    ("eager", "compiled", "word"),
    [(15_000, 20_000, "met"), (12_000, None, "missed"), (8_000, None, "below the floor")],
)
def test_the_estimate_takes_the_faster_variant_against_the_goal(eager, compiled, word):
    steps = {
        "throughput": {"status": "ok", "clips_per_s": eager},
        "compiled": {"status": "ok", "clips_per_s": compiled}
        if compiled
        else {"status": "skipped"},
        "pretrain": {"status": "ok", "knn_monitor_s": 0.5, "evaluation_s": 30.0},
    }
    result = gpu_kit.estimate(steps)
    minutes = 500 * 123 * 128 / (compiled or eager) / 60
    assert result["from"] == ("compiled" if compiled else "throughput")
    assert result["minutes"] == round(minutes, 2)
    assert result["minutes_with_monitor_and_evaluation"] == round(minutes + (250 + 30) / 60, 2)
    assert result["verdict"] == f"verdict: 500 epochs in ~{minutes:,.1f} min, goal 7 min: {word}"
    steps["throughput"] = {"status": "timed out"}
    steps["compiled"] = {"status": "failed"}
    assert gpu_kit.estimate(steps)["verdict"].endswith("goal 7 min: unknown")


def test_only_a_full_gpu_run_writes_gpu_json(tmp_path):
    report = {"machine": {"device": "x"}, "steps": {"a": {"figure": 1.5}}, "verdict": "verdict: v"}
    names = []
    for device, size in (("cuda", "full"), ("cuda", "tiny"), ("cpu", "full"), ("cpu", "tiny")):
        args = argparse.Namespace(device=device, size=size, out=tmp_path)
        names += [path.name for path in gpu_kit.write_report(report, args)]
    assert names == [
        "gpu.json",
        "gpu.md",
        "gpu-tiny.json",
        "gpu-tiny.md",
        "gpu-kit-cpu.json",
        "gpu-kit-cpu.md",
        "gpu-kit-cpu-tiny.json",
        "gpu-kit-cpu-tiny.md",
    ]
    table = (tmp_path / "gpu.md").read_text()
    assert "| steps.a.figure | 1.5 |" in table and table.endswith("verdict: v\n")
    assert json.loads((tmp_path / "gpu.json").read_text()) == report
