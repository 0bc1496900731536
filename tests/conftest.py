"""Shared fixtures: small datasets in the FSDnoisy18k layout, written by the tests themselves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CLASSES = ["Bell", "Buzz", "Chirp"]
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def tone(freq: float, seconds: float, rate: int = 22050, *, channels: int = 1) -> np.ndarray:
    """A sine with a little noise, as (samples,) or (samples, channels)."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(0).standard_normal(len(t))
    wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * noise
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def write_layout(root: Path, train_rows: list[str], test_rows: list[str]) -> Path:
    """Write the two CSVs (header included in the rows' caller) under root's meta folder."""
    meta = root / "FSDnoisy18k.meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "train.csv").write_text("\n".join(train_rows) + "\n")
    (meta / "test.csv").write_text("\n".join(test_rows) + "\n")
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Three classes of tones (2 clean + 2 noisy train clips each, 1 test clip each)."""
    train_dir = tmp_path / "FSDnoisy18k.audio_train"
    test_dir = tmp_path / "FSDnoisy18k.audio_test"
    train_dir.mkdir()
    test_dir.mkdir()
    train = ["fname,label,aso_id,manually_verified,noisy_small"]
    test = ["fname,label,aso_id"]
    n = 0
    for k, label in enumerate(CLASSES):
        for j in range(4):
            n += 1
            sf.write(train_dir / f"{n}.wav", tone(300 * (k + 1), 0.5 + 0.4 * j), 22050)
            train.append(f"{n}.wav,{label},/m/{k},{int(j < 2)},{int(j == 2)}")
        n += 1
        sf.write(test_dir / f"{n}.wav", tone(300 * (k + 1), 1.2), 22050)
        test.append(f"{n}.wav,{label},/m/{k}")
    return write_layout(tmp_path, train, test)


def run_cli_bound_by_permissions(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """`aclaudio ARGV` in a process that file permissions bind. Root passes them through two
    capabilities, so as root the command runs without those (still uid 0, the files' owner):
    a chmod-ed file or folder then refuses it as it refuses any user."""
    if not hasattr(os, "geteuid"):
        pytest.skip("POSIX file permissions")
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv") or pytest.skip("setpriv (util-linux) drops capabilities")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    env = {k: v for k, v in os.environ.items() if k != "ACLAUDIO_CACHE"}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "aclaudio.cli", *map(str, argv)],
        capture_output=True, text=True, cwd=cwd, env=env,
    )  # fmt: skip


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> Path:
    """One smoke dataset, run store and results folder shared by every notebook (as run_all)."""
    from aclaudio import synth

    root = tmp_path_factory.mktemp("study")
    synth.synthesize(root / "data", profile="smoke", seed=0, progress=False)
    return root


def execute_smoke_notebook(notebook: Path, study: Path) -> Path:
    """Execute a notebook in the smoke profile into STUDY/results/smoke/notebooks/, where
    run_all.sh puts it; once a session, so the report's tests reuse the notebook tests' work."""
    import papermill

    executed = study / "results" / "smoke" / "notebooks" / notebook.name
    if not executed.exists():
        executed.parent.mkdir(parents=True, exist_ok=True)
        papermill.execute_notebook(
            notebook, executed, kernel_name="aclaudio", cwd=notebook.parent, progress_bar=False,
            parameters={"profile": "smoke", "data_dir": str(study / "data"),
                        "runs_dir": str(study / "runs"), "results_root": str(study / "results")},
        )  # fmt: skip
    return executed
