"""Front end against librosa, and the feature cache: contents, patches, resume, keying."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import librosa
import numpy as np
import psutil
import pytest
import soundfile as sf
import torch
import torchaudio

from aclaudio.data import atomic, audio, datasets, features
from aclaudio.data.cache import build_cache, cache_key


@pytest.mark.parametrize(
    "name, norm", [("ssl_paper", None), ("sup_paper", None), ("cpu", None), ("cpu", "slaney")]
)
def test_log_mel_matches_librosa(name, norm):
    """The authors' unnormalised filters (librosa.filters.mel(norm=None)) and librosa's default."""
    preset = dataclasses.replace(features.PRESETS[name], mel_norm=norm)
    rng = np.random.default_rng(1)
    t = np.arange(preset.sample_rate * 2) / preset.sample_rate
    wave = (np.sin(2 * np.pi * 440 * t * (1 + t)) + 0.1 * rng.standard_normal(len(t))).astype(
        np.float32
    )
    ours = features.log_mel(torch.from_numpy(wave), preset).numpy()
    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=preset.sample_rate,
        n_fft=preset.n_fft,
        win_length=preset.win_length,
        hop_length=preset.hop_length,
        window="hamming",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=preset.n_mels,
        fmin=preset.f_min,
        fmax=preset.f_max,
        htk=False,
        norm=norm,
    )
    reference = np.log10(mel + preset.log_offset)
    assert ours.shape == reference.shape == (preset.n_mels, 1 + len(wave) // preset.hop_length)
    energetic = mel > 1e-6 * mel.max()
    assert energetic.mean() > 0.5
    # relative error of the mel power, i.e. an absolute error of log10(1 + 1e-3) on the log
    relative = np.abs(10**ours - 10**reference)[energetic] / mel[energetic]
    assert relative.max() < 1e-3
    assert np.abs(ours - reference).max() < np.log10(1 + 1e-3)


def test_log_mel_equals_torchaudio_melspectrogram_batched():
    preset = features.PRESETS["ssl_paper"]
    waves = torch.randn(3, 2, 5000)
    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=preset.sample_rate,
        n_fft=preset.n_fft,
        win_length=preset.win_length,
        hop_length=preset.hop_length,
        f_min=preset.f_min,
        f_max=preset.f_max,
        n_mels=preset.n_mels,
        window_fn=torch.hamming_window,
        pad_mode="constant",
        mel_scale="slaney",
        norm=None,
    )(waves)
    ours = features.log_mel(waves, preset)
    assert ours.shape == (3, 2, 96, 1 + 5000 // 220)
    torch.testing.assert_close(10**ours, reference + preset.log_offset, rtol=1e-4, atol=1e-9)
    in_chunks = features.log_mel(waves, preset, chunk=5)  # 23 frames: 4 full chunks and 3 left
    torch.testing.assert_close(in_chunks, ours, rtol=0, atol=1e-5)


def test_audio_is_normalised_as_the_authors_do():
    """y - mean(y), divided by max |y - mean(y)| + 0.005, one waveform at a time."""
    waves = torch.tensor([[0.5, -0.5, 1.0, 0.0], [0.02, 0.0, 0.0, 0.0]], dtype=torch.float64)
    got = features.normalise_audio(waves, "ssl_paper")
    expected = [[0.25, -0.75, 0.75, -0.25], [0.015, -0.005, -0.005, -0.005]]
    expected[0] = [v / (0.75 + 0.005) for v in expected[0]]
    expected[1] = [v / (0.015 + 0.005) for v in expected[1]]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    # a quiet clip is attenuated by the headroom: peak 0.01 -> 0.01 / 0.015, 3.5 dB below 1
    quiet = features.normalise_audio(torch.tensor([0.01, -0.01]), "cpu")
    assert 20 * math.log10(float(quiet.abs().max())) == pytest.approx(-3.52, abs=0.01)


def test_load_audio_downmixes_resamples_and_normalises(tmp_path):
    rate = 44100
    t = np.arange(rate) / rate
    left = 0.2 * np.sin(2 * np.pi * 1000 * t)
    sf.write(tmp_path / "stereo.wav", np.stack([left, 0.5 * left], axis=1), rate, subtype="PCM_24")
    wave = audio.load_audio(tmp_path / "stereo.wav", "cpu").numpy()
    assert len(wave) == 16000
    # the mix (0.15 peak) minus its mean, divided by its peak plus the 0.005 headroom
    assert np.abs(wave).max() == pytest.approx(0.15 / 0.155, rel=1e-3)
    assert abs(wave.mean()) < 1e-6
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.argmax(spectrum) == pytest.approx(1000, abs=2)  # 1 Hz bins: still a 1 kHz tone


def test_load_audio_rejects_silence(tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(1000), 22050)
    with pytest.raises(datasets.AudioError, match="quiet.wav: all-silent"):
        audio.load_audio(tmp_path / "quiet.wav", "ssl_paper")


def test_unknown_preset():
    with pytest.raises(ValueError, match="choose one of ssl_paper"):
        features.get_preset("nope")


def test_cache_holds_every_clip_and_patches(tiny_dataset, tmp_path):
    dataset = datasets.load_dataset(tiny_dataset)
    cache = build_cache(dataset, "cpu", cache_dir=tmp_path / "cache", progress=False)
    assert len(cache) == len(dataset.clips) == 15
    for row in (0, 7, 14):
        expected = audio.clip_log_mel(dataset.clips["path"][row], "cpu")
        np.testing.assert_allclose(cache.clip(row), expected, atol=2e-3 * np.abs(expected).max())
    # the same object is found again without rebuilding
    again = build_cache(dataset, "cpu", cache_dir=tmp_path / "cache", progress=False)
    assert again.path == cache.path

    rng = np.random.default_rng(0)
    rows = np.arange(len(cache))
    patches = cache.random_patches(rows, 64, rng=rng)
    assert patches.shape == (15, 64, 64) and patches.dtype == np.float32
    short = int(np.argmin(cache.clips["length"]))  # 0.5 s = 51 frames < 64: repeated
    full = cache.clip(short)
    np.testing.assert_array_equal(patches[short][:, : full.shape[1]], full)
    np.testing.assert_array_equal(patches[short][:, full.shape[1] :], full[:, : 64 - full.shape[1]])
    long = int(np.argmax(cache.clips["length"]))
    clip = cache.clip(long)
    windows = np.lib.stride_tricks.sliding_window_view(clip, 64, axis=1)  # (mels, starts, 64)
    assert any(np.array_equal(windows[:, s], patches[long]) for s in range(windows.shape[1]))


def test_clip_patches_cover_the_clip(tiny_dataset, tmp_path):
    cache = build_cache(
        datasets.load_dataset(tiny_dataset), "cpu", cache_dir=tmp_path, progress=False
    )
    long = int(np.argmax(cache.clips["length"]))
    length = cache.clips["length"][long]
    patches = cache.clip_patches(long, 32, 16, end_patch=True)
    starts = list(range(0, length - 32 + 1, 16))
    if starts[-1] + 32 < length:
        starts.append(length - 32)
    assert patches.shape == (len(starts), 64, 32)
    np.testing.assert_array_equal(patches[-1], cache.clip(long)[:, -32:])
    np.testing.assert_array_equal(patches[1], cache.clip(long)[:, 16:48])


def test_patch_starts_with_and_without_the_end_patch():
    assert features.patch_starts(250, 100, 100, end_patch=True).tolist() == [0, 100, 150]
    assert features.patch_starts(250, 100, 100, end_patch=False).tolist() == [0, 100]
    assert features.patch_starts(300, 100, 100, end_patch=False).tolist() == [0, 100, 200]
    assert features.patch_starts(300, 100, 100, end_patch=True).tolist() == [0, 100, 200]
    assert features.patch_starts(60, 100, 100, end_patch=True).tolist() == [
        0
    ]  # short: one, repeated to fit
    assert features.patch_starts(60, 100, 100, end_patch=False).tolist() == [0]


def test_cache_key_follows_files_and_preset(tiny_dataset, tmp_path):
    dataset = datasets.load_dataset(tiny_dataset)
    key = cache_key(dataset, features.PRESETS["cpu"])
    assert key != cache_key(dataset, features.PRESETS["ssl_paper"])
    path = Path(dataset.clips["path"][3])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert cache_key(datasets.load_dataset(tiny_dataset), features.PRESETS["cpu"]) != key


def test_decode_failures_are_reported_not_dropped(tiny_dataset, tmp_path):
    quiet = tiny_dataset / "FSDnoisy18k.audio_train" / "2.wav"
    sf.write(quiet, np.zeros(5000), 22050)
    cache = build_cache(
        datasets.load_dataset(tiny_dataset), "cpu", cache_dir=tmp_path, progress=False
    )
    assert len(cache) == 14
    assert "2.wav" not in set(cache.clips["fname"])
    problems = dict(zip(cache.bad_files["fname"], cache.bad_files["problem"], strict=True))
    assert "all-silent" in problems["2.wav"]


KILL_SCRIPT = """
import os, sys
from aclaudio.data import cache, datasets
calls = 0
original = cache.atomic_write_text
def write_then_die(path, text):
    global calls
    original(path, text)
    calls += 1
    if path.name == "progress.json" and calls == 2:
        os._exit(9)  # killed right after the second committed chunk
cache.atomic_write_text = write_then_die
cache.build_cache(datasets.load_dataset(sys.argv[1]), "cpu", cache_dir=sys.argv[2],
                  workers=1, chunk=4, progress=False)
"""


def test_killed_build_continues(tiny_dataset, tmp_path):
    cache_dir = tmp_path / "cache"
    run = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tiny_dataset), str(cache_dir)])
    assert run.returncode == 9
    (partial,) = cache_dir.glob("cpu-*")
    assert not (partial / "meta.json").exists()  # never mistaken for a finished cache
    assert len(json.loads((partial / "progress.json").read_text())["rows"]) == 8
    with open(partial / "features.f16.partial", "ab") as handle:
        handle.write(b"\x00" * 1000)  # bytes written after the last commit are discarded
    dataset = datasets.load_dataset(tiny_dataset)
    resumed = build_cache(dataset, "cpu", cache_dir=cache_dir, progress=False)
    fresh = build_cache(dataset, "cpu", cache_dir=tmp_path / "fresh", progress=False)
    np.testing.assert_array_equal(resumed.data, fresh.data)
    assert resumed.clips["offset"].tolist() == fresh.clips["offset"].tolist()


KILL_MID_WRITE_SCRIPT = """
import multiprocessing, os, signal, sys
from aclaudio.data import datasets
from aclaudio.data.cache import build_cache
replace, calls = os.replace, 0
def replace_or_die(source, target):
    global calls
    calls += 1
    if calls == 2:  # the second commit's temporary file is written, not yet renamed: kill -9
        print(*[worker.pid for worker in multiprocessing.active_children()], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    replace(source, target)
os.replace = replace_or_die
build_cache(datasets.load_dataset(sys.argv[1]), "cpu", cache_dir=sys.argv[2],
            workers=2, chunk=4, progress=False)
"""


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_killed_build_takes_its_workers_along_and_leaves_nothing_behind(tiny_dataset, tmp_path):
    cache_dir, log = tmp_path / "cache", tmp_path / "log"
    with open(log, "w") as out:  # a file, not a pipe: surviving workers would hold a pipe open
        build = subprocess.Popen(
            [sys.executable, "-c", KILL_MID_WRITE_SCRIPT, str(tiny_dataset), str(cache_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        assert build.wait(timeout=120) == -signal.SIGKILL, log.read_text()
    workers = [int(pid) for pid in log.read_text().split()]
    assert len(workers) == 2
    deadline = time.monotonic() + 5
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in workers if running(pid)]
    for pid in survivors:  # before the fix they waited for work forever
        os.kill(pid, signal.SIGKILL)
    assert not survivors
    (partial,) = cache_dir.glob("cpu-*")
    leftover = f".progress.json.{build.pid}@{atomic.HOST}.tmp"
    assert [p.name for p in partial.glob(".*.tmp")] == [leftover]
    elsewhere = partial / f".progress.json.{build.pid}@another_machine.tmp"
    elsewhere.write_text("a writer on another machine of a shared store")
    cache = build_cache(
        datasets.load_dataset(tiny_dataset), "cpu", cache_dir=cache_dir, progress=False
    )
    assert len(cache) == 15 and [p.name for p in partial.glob(".*.tmp")] == [elsewhere.name]


def test_edited_labels_reach_a_reused_cache(tiny_dataset, tmp_path):
    first = build_cache(
        datasets.load_dataset(tiny_dataset), "cpu", cache_dir=tmp_path, progress=False
    )
    csv = tiny_dataset / "FSDnoisy18k.meta" / "train.csv"
    csv.write_text(csv.read_text().replace("1.wav,Bell,/m/0,1,0", "1.wav,Chirp,/m/2,0,1"))
    again = build_cache(
        datasets.load_dataset(tiny_dataset), "cpu", cache_dir=tmp_path, progress=False
    )
    assert again.path == first.path  # the audio did not change: features reused
    row = again.clips.set_index("fname").loc["1.wav"]
    assert (row["label"], row["target"], row["manually_verified"], row["noisy_small"]) == (
        "Chirp",
        2,
        0,
        1,
    )
    np.testing.assert_array_equal(again.clip(0), first.clip(0))
