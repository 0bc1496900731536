"""Audio files -> waveforms and log-mels: every clip is decoded once (soundfile), downmixed,
resampled, normalised (mean removed, divided by the peak plus a headroom) and turned into a
log-mel spectrogram (cache.py stores them all)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soxr
import torch

from aclaudio.data.datasets import check_samples, read_mono
from aclaudio.data.features import Preset, get_preset, log_mel, normalise_audio


def decode_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Decode a file to mono float32 at `sample_rate`, not normalised: what an exported encoder
    (aclaudio.hear) takes, as it normalises itself.

    Stereo (or more) is averaged to mono and other rates are resampled: documented handling,
    not errors. A clip with NaN or Inf samples, or silent (nothing to describe: the cache and
    `aclaudio embed --audio` list it as a bad file), raises AudioError.
    """
    wave, rate = read_mono(path)
    if rate != sample_rate:  # soxr (librosa's default resampler): high quality and fast
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ")
    check_samples(path, wave)
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))


def load_audio(path: str | Path, preset: str | Preset) -> torch.Tensor:
    """decode_audio at the preset's rate, normalised as the preset says
    (features.normalise_audio): the waveform the cache's log-mels come from."""
    preset = get_preset(preset)
    return normalise_audio(decode_audio(path, preset.sample_rate), preset)


def clip_log_mel(path: str | Path, preset: str | Preset) -> np.ndarray:
    """The (n_mels, frames) log-mel of one file, float32."""
    return log_mel(load_audio(path, preset), preset).numpy()
