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
