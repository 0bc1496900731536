"""Shared fixtures: small datasets in the FSDnoisy18k layout, written by the tests themselves."""

from __future__ import annotations

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
