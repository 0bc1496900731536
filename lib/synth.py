"""The built-in dataset: procedurally synthesised sound events in the FSDnoisy18k layout.

Why: the study must run end to end on two CPU cores without a 13 GB download, on data that
behaves like FSDnoisy18k: 20 classes that differ in spectro-temporal structure, wide variation
within a class, confusable pairs, a small clean subset and a large noisy one whose wrong labels
lean towards the confusable partner. Written in the same layout, so one loader serves both.

Every clip draws from its own random stream, seeded by (seed, split, index): the files are
byte-identical for a seed whatever the order in which worker processes render them.
"""

from __future__ import annotations

import io
import json
import numbers
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.fft import next_fast_len
from scipy.special import ndtr, ndtri
from tqdm.auto import tqdm

from .atomic import atomic_write_text
from .datasets import AUDIO_DIRS, DOC_DIR, META_DIR
from .system import usable_cpus

SAMPLE_RATE = 22050
GENERATOR_VERSION = 2  # bump when a recipe changes: datasets made before are regenerated

WRONG_LABEL_RATE = 0.4  # share of the noisy subset whose label is wrong
PARTNER_SHARE = 0.6  # share of the wrong labels that name the confusable partner class
# Nuisances, tuned so that on the cpu profile a linear probe on clip-mean log-mel (clean subset)
# and one on a randomly initialised encoder both stay well below what self-supervised pretraining
# reaches, while models of the temporal structure do far better (test_synth).
SPEED_OCTAVES = 0.5  # each clip's event played up to this much faster or slower, like a tape
PLACED_PROB = 0.2  # chance that the event fills only part of its clip
OVERLAP_PROB = 0.3  # chance of a second, independent event of the same class on top
OVERLAP_DB = (0.0, 6.0)  # how far below the first event it sits
DISTRACTOR_PROB = 0.5  # chance of an event of another class in the background
DISTRACTOR_DB = (0.0, 12.0)  # how far below the main event it sits
SNR_DB = (0.0, 20.0)  # event level over the background noise
PEAK_DB = (-20.0, -1.0)  # peak level of the written clip
PARALLEL_MIN_SECONDS = 300.0  # below this much audio, starting worker processes costs more

MARKER = "synth.json"  # written last: its presence means the dataset is complete
PLAN_STREAM = 2  # random stream of the plan; clips use (seed, 0 = train | 1 = test, index)


@dataclass(frozen=True)
class Profile:
    """How many clips, and how long: durations follow a log-normal cut to [min, max] seconds,
    its median that of the profile times the class's relative duration."""

    train_per_class: int
    clean_per_class: int
    test_per_class: int
    median_seconds: float
    max_seconds: float
    min_seconds: float = 0.3
    log_spread: float = 0.7


PROFILES = {
    "smoke": Profile(
        train_per_class=3, clean_per_class=1, test_per_class=2, median_seconds=0.6, max_seconds=1.5
    ),
    "cpu": Profile(
        train_per_class=100,
        clean_per_class=10,
        test_per_class=20,
        median_seconds=1.2,
        max_seconds=30.0,
    ),
}


# ---------------------------------------------------------------------------------------------
# Building blocks (all signals are float64 arrays at SAMPLE_RATE)


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _times(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _phase(freq: np.ndarray | float, n: int) -> np.ndarray:
    """Running phase of a tone whose frequency may change every sample (no clicks at changes);
    a steady tone's directly, as summing is the slow part of the many short pings."""
    if np.ndim(freq) == 0:
        return (2 * np.pi * freq / SAMPLE_RATE) * np.arange(1, n + 1)
    return 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE


def _harmonic_tone(freq: np.ndarray | float, amplitudes: list[float], n: int) -> np.ndarray:
    """Sum of harmonics k * freq with the given amplitudes, dropping those that would alias."""
    phase = _phase(freq, n)
    top = np.max(freq)
    return sum(
        a * np.sin((k + 1) * phase)
        for k, a in enumerate(amplitudes)
        if (k + 1) * top < 0.45 * SAMPLE_RATE
    )


def _pulse_wave(freq: np.ndarray | float, brightness: float, n: int) -> np.ndarray:
    """exp(b (cos - 1)): a periodic pulse with many harmonics for one exp, brighter as b grows."""
    wave = np.exp(brightness * (np.cos(_phase(freq, n)) - 1))
    return wave - wave.mean()


def _noise(
    rng: np.random.Generator, n: int, *, low: float = 0.0, high: float = 1e9, tilt: float = 0.0
) -> np.ndarray:
    """Gaussian noise with power ~ f**-tilt, band-passed between low and high (gentle edges),
    drawn as a random spectrum of a length that FFTs fast (a prime length is 10x slower)."""
    size = next_fast_len(n, real=True)
    freqs = np.fft.rfftfreq(size, 1 / SAMPLE_RATE)
    freqs[0] = freqs[1]
    gain = freqs ** (-tilt / 2) / np.sqrt((1 + (low / freqs) ** 4) * (1 + (freqs / high) ** 4))
    spectrum = rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))
    return np.fft.irfft(spectrum * gain, size)[:n]


def _wander(rng: np.random.Generator, n: int, rate: float, low: float, high: float) -> np.ndarray:
    """A curve wandering between low and high, through random points about rate times a second."""
    knots = int(n / SAMPLE_RATE * rate) + 2
    return np.interp(np.arange(n), np.linspace(0, n, knots), rng.uniform(low, high, knots))


def _onsets(rng: np.random.Generator, n: int, rate: float, *, jitter: float) -> np.ndarray:
    """Event start samples about rate per second, gaps log-normally jittered; at least one."""
    gap = SAMPLE_RATE / rate
    first = rng.uniform(0, min(gap, n / 2))
    gaps = gap * np.exp(jitter * rng.standard_normal(int(3 * n / gap) + 4))
    starts = first + np.concatenate([[0.0], np.cumsum(gaps)])
    return starts[starts < n].astype(int)


def _add(out: np.ndarray, event: np.ndarray, at: int) -> None:
    """Add an event into out from sample at, cut at the end of out."""
    end = min(len(out), at + len(event))
    out[at:end] += event[: end - at]


def _ping(
    freq: np.ndarray | float, tau: float, length: int, rng: np.random.Generator
) -> np.ndarray:
    """A decaying sinusoid: the impulse response of a resonance."""
    t = _times(length)
    return np.sin(_phase(freq, length) + rng.uniform(0, 2 * np.pi)) * np.exp(-t / tau)


def _fade(n: int, seconds: float) -> np.ndarray:
    """1 in the middle, raised-cosine ramps of the given length at both ends."""
    ramp = min(int(seconds * SAMPLE_RATE), n // 2)
    env = np.ones(n)
    env[:ramp] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    env[n - ramp :] = env[:ramp][::-1]
    return env


def _unit(x: np.ndarray) -> np.ndarray:
    """Scale to unit *active* level: the RMS of the loudest quarter of 1024-sample frames, so
    a sparse event and a steady texture sound equally loud against the same background."""
    frames = np.pad(x, (0, -len(x) % 1024)).reshape(-1, 1024)
    energy = np.sort((frames**2).mean(axis=1))[::-1]
    level = np.sqrt(energy[: max(1, len(energy) // 4)].mean())
    return x / max(level, 1e-12)


# ---------------------------------------------------------------------------------------------
# The recipes: one per class; each docstring line is the class's line in the dataset README.


def _chirps(rng: np.random.Generator, n: int, *, rising: bool) -> np.ndarray:
    out = np.zeros(n)
    low, ratio = _loguniform(rng, 300, 1500), rng.uniform(1.5, 4)
    amplitudes = [0.6**k for k in range(rng.integers(1, 4))]
    for at in _onsets(rng, n, rng.uniform(0.8, 4), jitter=0.4):
        length = int(rng.uniform(0.08, 0.5) * SAMPLE_RATE)
        start = low * rng.uniform(0.9, 1.1)
        sweep = np.geomspace(start, start * ratio * rng.uniform(0.9, 1.1), length)
        sweep = sweep if rising else sweep[::-1]
        _add(out, _harmonic_tone(sweep, amplitudes, length) * np.hanning(length), at)
    return out


def rising_chirps(rng: np.random.Generator, n: int) -> np.ndarray:
    """Upward sweeps (0.08-0.5 s, from 0.3-1.5 kHz up 1.5-4x, 1-3 harmonics), 0.8-4 a second."""
    return _chirps(rng, n, rising=True)


def falling_chirps(rng: np.random.Generator, n: int) -> np.ndarray:
    """The mirror image of Rising_chirps: the same sweeps run downwards."""
    return _chirps(rng, n, rising=False)


def _clicks(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    out = np.zeros(n)
    centre, tau = _loguniform(rng, 500, 4000), rng.uniform(0.002, 0.012)
    for at in _onsets(rng, n, rate, jitter=0.15):
        freq = centre * rng.uniform(0.85, 1.15)
        _add(out, rng.uniform(0.4, 1) * _ping(freq, tau, int(5 * tau * SAMPLE_RATE), rng), at)
    return out


def slow_clicks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Resonant clicks (0.5-4 kHz, 2-12 ms decay) at a steady 1.5-5 per second, like a clock."""
    return _clicks(rng, n, rng.uniform(1.5, 5))


def fast_clicks(rng: np.random.Generator, n: int) -> np.ndarray:
    """The same clicks at 10-30 per second, like a rattle or a ratchet."""
    return _clicks(rng, n, rng.uniform(10, 30))


def _hiss_band(rng: np.random.Generator) -> tuple[float, float]:
    low = _loguniform(rng, 1500, 4000)
    return low, min(low * rng.uniform(1.8, 3.5), 10000.0)


def hiss(rng: np.random.Generator, n: int) -> np.ndarray:
    """Steady high-band noise (from 1.5-4 kHz up to 10 kHz), slowly wavering, like steam."""
    low, high = _hiss_band(rng)
    return _noise(rng, n, low=low, high=high) * _wander(rng, n, 1.0, 0.7, 1.0)


def hiss_bursts(rng: np.random.Generator, n: int) -> np.ndarray:
    """The same high-band noise cut into 50-400 ms bursts, 1-5 a second, like spraying."""
    low, high = _hiss_band(rng)
    envelope = np.zeros(n)
    for at in _onsets(rng, n, rng.uniform(1, 5), jitter=0.5):
        _add(envelope, np.sqrt(np.hanning(int(rng.uniform(0.05, 0.4) * SAMPLE_RATE))), at)
    return _noise(rng, n, low=low, high=high) * envelope


def rain(rng: np.random.Generator, n: int) -> np.ndarray:
    """Dense droplets (40-200 a second, 1.5-6 kHz pings of 2-10 ms) over a soft noise bed."""
    drops = np.zeros(n)
    for at in _onsets(rng, n, rng.uniform(40, 200), jitter=0.8):
        tau = rng.uniform(0.002, 0.01)
        ping = _ping(_loguniform(rng, 1500, 6000), tau, int(4 * tau * SAMPLE_RATE), rng)
        _add(drops, rng.lognormal(0, 0.5) * ping, at)
    bed = _noise(rng, n, low=_loguniform(rng, 300, 1000), high=rng.uniform(6000, 10000))
    return _unit(drops) + rng.uniform(0.1, 0.4) * _unit(bed)


def crackle(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sparse sharp broadband cracks (5-40 a second, heavy-tailed loudness) over a low rumble."""
    cracks = np.zeros(n)
    for at in _onsets(rng, n, rng.uniform(5, 40), jitter=1.0):
        length = int(rng.uniform(0.001, 0.004) * SAMPLE_RATE)
        loudness = min(1 + rng.pareto(1.5), 10)
        _add(cracks, loudness * rng.standard_normal(length) * np.hanning(length), at)
    rumble = _noise(rng, n, low=30, high=rng.uniform(150, 400))
    return _unit(cracks) + rng.uniform(0.2, 0.6) * _unit(rumble)


def engine(rng: np.random.Generator, n: int) -> np.ndarray:
    """A low pulse wave (25-70 Hz firing rate, drifting speed) plus pulsing rumble, like a motor."""
    freq = _loguniform(rng, 25, 70) * _wander(rng, n, 0.5, 0.85, 1.15)
    rumble = _noise(rng, n, low=40, high=rng.uniform(500, 1500))
    rumble *= 1 + 0.5 * np.cos(_phase(freq, n))
    return _unit(_pulse_wave(freq, rng.uniform(3, 12), n)) + rng.uniform(0.2, 0.7) * _unit(rumble)


def buzz(rng: np.random.Generator, n: int) -> np.ndarray:
    """A bright steady pulse wave at 80-250 Hz with slight pitch jitter, like a buzzer."""
    freq = _loguniform(rng, 80, 250) * _wander(rng, n, 8, 0.99, 1.01)
    return _pulse_wave(freq, rng.uniform(8, 25), n)


def whistle(rng: np.random.Generator, n: int) -> np.ndarray:
    """A near-pure tone (1-3.5 kHz): 1-4 held notes with vibrato and breath noise, a whistle."""
    base = _loguniform(rng, 1000, 3500)
    notes = base * 2 ** rng.uniform(-0.3, 0.3, rng.integers(1, 5))
    vibrato = 1 + rng.uniform(0.005, 0.03) * np.sin(2 * np.pi * rng.uniform(4, 7) * _times(n))
    freq = np.repeat(notes, -(-n // len(notes)))[:n] * vibrato
    breath = _noise(rng, n, low=0.8 * base, high=1.25 * base)
    return _unit(np.sin(_phase(freq, n))) + rng.uniform(0.05, 0.3) * _unit(breath)


def siren(rng: np.random.Generator, n: int) -> np.ndarray:
    """A tone sweeping up and down 0.3-1 octave, 0.2-1.2 times a second, around 0.6-1.8 kHz."""
    swing = (
        rng.uniform(0.3, 1)
        / 2
        * np.sin(2 * np.pi * rng.uniform(0.2, 1.2) * _times(n) + rng.uniform(0, 2 * np.pi))
    )
    return _harmonic_tone(_loguniform(rng, 600, 1800) * 2**swing, [1, rng.uniform(0, 0.5)], n)


def organ(rng: np.random.Generator, n: int) -> np.ndarray:
    """Held harmonic notes (200-900 Hz, 0.5-3 s each, soft attack and release), like an organ."""
    out, at = np.zeros(n), 0
    while at < n:
        length = min(int(rng.uniform(0.5, 3) * SAMPLE_RATE), n - at)
        note = _pulse_wave(_loguniform(rng, 200, 900), rng.uniform(1, 4), length)
        _add(out, note * _fade(length, 0.05), at)
        at += length
    return out


def plucks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Plucked notes (200-900 Hz, 1-5 a second, 0.1-0.8 s decay, upper partials fading first)."""
    out, tau = np.zeros(n), rng.uniform(0.1, 0.8)
    for at in _onsets(rng, n, rng.uniform(1, 5), jitter=0.4):
        freq = _loguniform(rng, 200, 900)
        for k in range(1, 7):
            if k * freq < 0.45 * SAMPLE_RATE:
                decay = tau / (1 + 0.5 * (k - 1))
                _add(out, _ping(k * freq, decay, int(3 * decay * SAMPLE_RATE), rng) / k, at)
    return out


BELL_PARTIALS = (0.5, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.1)  # about those of a church bell


def bell(rng: np.random.Generator, n: int) -> np.ndarray:
    """Struck bells: inharmonic partials (base 300-1200 Hz) ringing 0.4-2 s, every 0.5-3 s."""
    out, base, tau = np.zeros(n), _loguniform(rng, 300, 1200), rng.uniform(0.4, 2)
    for at in _onsets(rng, n, rng.uniform(0.33, 2), jitter=0.3):
        for ratio in BELL_PARTIALS:
            if ratio * base < 0.45 * SAMPLE_RATE:
                decay = tau / ratio**0.5
                ping = _ping(ratio * base, decay, min(int(3 * decay * SAMPLE_RATE), n - at), rng)
                _add(out, rng.uniform(0.3, 1) * ping, at)
    return out


def drip(rng: np.random.Generator, n: int) -> np.ndarray:
    """Water drops: short upward-gliding pings (0.5-3 kHz, 10-50 ms), 1-6 a second, irregular."""
    out = np.zeros(n)
    for at in _onsets(rng, n, rng.uniform(1, 6), jitter=0.7):
        tau, start = rng.uniform(0.01, 0.05), _loguniform(rng, 500, 3000)
        length = int(4 * tau * SAMPLE_RATE)
        glide = np.geomspace(start, start * rng.uniform(1.3, 2), length)
        _add(out, rng.uniform(0.3, 1) * _ping(glide, tau, length, rng), at)
    return out


def wind(rng: np.random.Generator, n: int) -> np.ndarray:
    """Gusting dark noise (gusts every 1-5 s) with a faint wandering howl at 200-900 Hz."""
    gusts = _wander(rng, n, rng.uniform(0.2, 1), 0.2, 1)
    noise = _noise(rng, n, low=rng.uniform(30, 80), high=rng.uniform(600, 2000), tilt=1)
    howl = np.sin(_phase(_loguniform(rng, 200, 900) * _wander(rng, n, 0.5, 0.8, 1.25), n))
    return (_unit(noise) + rng.uniform(0, 0.5) * howl) * gusts


def rumble(rng: np.random.Generator, n: int) -> np.ndarray:
    """Low noise swells (30-300 Hz, 0.3-2 s, slow attack and release), like distant thunder."""
    envelope = np.zeros(n)
    for at in _onsets(rng, n, rng.uniform(0.4, 1.5), jitter=0.5):
        _add(envelope, np.hanning(int(rng.uniform(0.3, 2) * SAMPLE_RATE)), at)
    return _noise(rng, n, low=30, high=rng.uniform(120, 300), tilt=1) * envelope


def drone(rng: np.random.Generator, n: int) -> np.ndarray:
    """A steady low pulse wave (50-150 Hz, soft to bright), like mains hum or a fridge."""
    freq = _loguniform(rng, 50, 150) * _wander(rng, n, 0.3, 0.98, 1.02)
    return _pulse_wave(freq, rng.uniform(2, 10), n)


def throb(rng: np.random.Generator, n: int) -> np.ndarray:
    """The Drone's tone pulsing in loudness 0.7-4 times a second, like a motor under load."""
    pulse = np.cos(np.pi * rng.uniform(0.7, 4) * _times(n) + rng.uniform(0, np.pi)) ** 2
    return drone(rng, n) * pulse ** rng.uniform(1, 3)


@dataclass(frozen=True)
class SoundClass:
    name: str
    partner: str  # the confusable class that wrong labels lean towards
    recipe: Callable[[np.random.Generator, int], np.ndarray]
    duration: float  # median clip duration relative to the profile's median_seconds


# The confusable pairs, each recipe with its relative duration: as in FSDnoisy18k, classes of
# short events are mostly short clips and steady textures mostly long ones (medians 7x apart).
PAIRS = [
    ((rising_chirps, 0.5), (falling_chirps, 0.5)),
    ((slow_clicks, 1.0), (fast_clicks, 0.7)),
    ((hiss, 2.0), (hiss_bursts, 0.8)),
    ((rain, 2.5), (crackle, 1.5)),
    ((engine, 2.0), (buzz, 0.7)),
    ((whistle, 0.6), (siren, 1.5)),
    ((organ, 1.5), (plucks, 0.6)),
    ((bell, 1.0), (drip, 0.4)),
    ((wind, 2.5), (rumble, 1.2)),
    ((drone, 2.8), (throb, 2.0)),
]


def _class_name(recipe: Callable) -> str:
    return recipe.__name__.capitalize()


CLASSES = [
    SoundClass(_class_name(recipe), _class_name(partner), recipe, duration)
    for pair in PAIRS
    for (recipe, duration), (partner, _) in (pair, pair[::-1])
]
CLASS_NAMES = [c.name for c in CLASSES]


# ---------------------------------------------------------------------------------------------
# Rendering one clip


def _place(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Real recordings rarely hold their event from start to end: sometimes keep only a span."""
    if rng.random() >= PLACED_PROB:
        return x
    length = max(int(rng.uniform(0.4, 1) * len(x)), 1)
    start = rng.integers(0, len(x) - length + 1)
    kept = np.zeros_like(x)
    kept[start : start + length] = x[start : start + length] * _fade(length, 0.01)
    return kept


def _event(rng: np.random.Generator, sound: SoundClass, n: int) -> np.ndarray:
    """One event of the class at unit level, played faster or slower (pitch and rate together):
    rendered to another length and resampled through the spectrum (fast lengths, no aliasing)."""
    size = next_fast_len(n, real=True)
    speed = 2 ** rng.uniform(-SPEED_OCTAVES, SPEED_OCTAVES)
    rendered = sound.recipe(rng, next_fast_len(round(size * speed), real=True))
    return _unit(_place(rng, np.fft.irfft(np.fft.rfft(rendered), size)[:n]))


def _render(task: tuple[str, int, float, tuple[int, ...]]) -> None:
    """Event (+ perhaps a second one, a distractor of another class) over coloured noise, peak
    level varied; to wav."""
    path, class_index, seconds, entropy = task
    rng = np.random.default_rng(entropy)
    n = round(seconds * SAMPLE_RATE)
    mix = _event(rng, CLASSES[class_index], n)
    if rng.random() < OVERLAP_PROB:
        mix += 10 ** (-rng.uniform(*OVERLAP_DB) / 20) * _event(rng, CLASSES[class_index], n)
    if rng.random() < DISTRACTOR_PROB:
        other = CLASSES[(class_index + rng.integers(1, len(CLASSES))) % len(CLASSES)]
        mix += 10 ** (-rng.uniform(*DISTRACTOR_DB) / 20) * _event(rng, other, n)
    background = _unit(_noise(rng, n, tilt=rng.uniform(0, 2)))
    mix += 10 ** (-rng.uniform(*SNR_DB) / 20) * background
    peak = 10 ** (rng.uniform(*PEAK_DB) / 20)
    wav = io.BytesIO()  # soundfile's many small writes to disk are 3-5x slower than one
    sf.write(wav, mix * (peak / np.abs(mix).max()), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    Path(path).write_bytes(wav.getvalue())


# ---------------------------------------------------------------------------------------------
# The plan: labels, subsets and durations, decided up front from one random stream


def _durations(rng: np.random.Generator, classes: np.ndarray, profile: Profile) -> np.ndarray:
    """Log-normal durations around each clip's class median, cut to [min, max] by inverting the
    CDF (no pile-up at the bounds), rounded to whole samples."""
    median = profile.median_seconds * np.array([CLASSES[c].duration for c in classes])
    bounds = np.log([[profile.min_seconds], [profile.max_seconds]] / median) / profile.log_spread
    u = rng.uniform(*ndtr(bounds))
    seconds = median * np.exp(profile.log_spread * ndtri(u))
    return np.round(seconds * SAMPLE_RATE) / SAMPLE_RATE


def _corrupt(rng: np.random.Generator, true: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """Given labels: WRONG_LABEL_RATE of the noisy clips relabelled, PARTNER_SHARE of those to
    the confusable partner, the rest uniformly to any class but the true one and the partner."""
    given = true.copy()
    candidates = np.flatnonzero(noisy)
    wrong = rng.choice(candidates, round(WRONG_LABEL_RATE * len(candidates)), replace=False)
    partner = np.array([CLASS_NAMES.index(c.partner) for c in CLASSES])
    for i in np.sort(wrong):
        if rng.random() < PARTNER_SHARE:
            given[i] = partner[true[i]]
        else:
            others = [c for c in range(len(CLASSES)) if c not in (true[i], partner[true[i]])]
            given[i] = rng.choice(others)
    return given


def _noisy_small(
    rng: np.random.Generator, given: np.ndarray, seconds: np.ndarray, clean: np.ndarray
) -> np.ndarray:
    """Per (given) class, random noisy clips adding up to about as long as that class's clean
    clips: the FSDnoisy18k recipe for a noisy subset the size of the clean one."""
    small = np.zeros(len(given), dtype=bool)
    for c in range(len(CLASSES)):
        target = seconds[clean & (given == c)].sum()
        pool = rng.permutation(np.flatnonzero(~clean & (given == c)))
        if len(pool) == 0:
            continue
        total = np.cumsum(seconds[pool])
        small[pool[: np.argmin(np.abs(total - target)) + 1]] = True
    return small


def _plan(profile: Profile, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test tables: fname, labels, subsets, duration and class index per clip."""
    rng = np.random.default_rng([seed, PLAN_STREAM])
    classes = np.arange(len(CLASSES))
    true = rng.permutation(np.repeat(classes, profile.train_per_class))
    clean = np.zeros(len(true), dtype=bool)
    for c in classes:
        clean[np.flatnonzero(true == c)[: profile.clean_per_class]] = True
    given = _corrupt(rng, true, ~clean)
    seconds = _durations(rng, true, profile)
    train = pd.DataFrame(
        {
            "fname": [f"{i}.wav" for i in range(len(true))],
            "label": [CLASS_NAMES[c] for c in given],
            "aso_id": [f"synth/{c:02d}" for c in given],
            "manually_verified": clean.astype(int),
            "noisy_small": _noisy_small(rng, given, seconds, clean).astype(int),
            "true_label": [CLASS_NAMES[c] for c in true],
            "seconds": seconds,
            "class_index": true,
        }
    )
    test_true = rng.permutation(np.repeat(classes, profile.test_per_class))
    test = pd.DataFrame(
        {
            "fname": [f"{len(true) + i}.wav" for i in range(len(test_true))],
            "label": [CLASS_NAMES[c] for c in test_true],
            "aso_id": [f"synth/{c:02d}" for c in test_true],
            "seconds": _durations(rng, test_true, profile),
            "class_index": test_true,
        }
    )
    return train, test


# ---------------------------------------------------------------------------------------------
# Writing the dataset


def _validate(root: Path, profile: str, seed: int) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown synth profile {profile!r}; choose one of {sorted(PROFILES)}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if root.exists() and not root.is_dir():
        raise ValueError(f"synth target {root} exists and is not a directory")
    # synth's own output, even half written, has its marker or its true_label column
    train_csv = root / META_DIR / "train.csv"
    ours = (root / DOC_DIR / MARKER).exists() or (
        train_csv.exists() and "true_label" in pd.read_csv(train_csv, nrows=0).columns
    )
    if not ours and any((root / d).exists() for d in (*AUDIO_DIRS.values(), META_DIR)):
        raise ValueError(
            f"{root} already holds an FSDnoisy18k-style dataset that synth did not make; "
            "refusing to overwrite it: choose another directory"
        )


def _is_complete(root: Path, settings: dict) -> dict | None:
    """The stored summary if root holds every file of a dataset made with these settings."""
    marker = root / DOC_DIR / MARKER
    if not marker.exists():
        return None
    stored = json.loads(marker.read_text())
    if stored.get("settings") != settings:
        return None
    try:
        for split, folder in AUDIO_DIRS.items():
            wanted = set(pd.read_csv(root / META_DIR / f"{split}.csv")["fname"])
            if not wanted <= set(os.listdir(root / folder)):
                return None
    except FileNotFoundError:  # a table or a folder removed by hand
        return None
    return stored["summary"]


def _render_all(tasks: list[tuple], *, progress: bool) -> None:
    """Longest clips first so that the workers finish together."""
    tasks = sorted(tasks, key=lambda task: -task[2])
    total = sum(task[2] for task in tasks)
    workers = usable_cpus() if total >= PARALLEL_MIN_SECONDS else 1
    with tqdm(total=len(tasks), desc="synth", unit="clip", disable=not progress) as bar:
        if workers == 1:
            for task in tasks:
                _render(task)
                bar.update()
            return
        # forkserver: safe even when the caller has already started threads (torch does)
        with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
            for _ in pool.map(_render, tasks, chunksize=4):
                bar.update()


def _readme(profile: str, seed: int, summary: dict) -> str:
    settings = asdict(PROFILES[profile])
    lines = [
        "# Synthetic stand-in for FSDnoisy18k",
        "",
        f"Made by `aclaudio.synth` (generator version {GENERATOR_VERSION}), profile `{profile}`,"
        f" seed {seed}: the same profile and seed give byte-identical files.",
        f"Profile settings: {json.dumps(settings)}.",
        "",
        f"Clips: {json.dumps(summary['clips'])}; hours: {json.dumps(summary['hours'])}.",
        "",
        "Each clip: one event of its class, played up to "
        f"{SPEED_OCTAVES:g} octave faster or slower (over part of the clip with probability "
        f"{PLACED_PROB}); with probability {OVERLAP_PROB} a second event of its class "
        f"({OVERLAP_DB[0]:g}-{OVERLAP_DB[1]:g} dB down) and with probability {DISTRACTOR_PROB} "
        f"an event of another class ({DISTRACTOR_DB[0]:g}-{DISTRACTOR_DB[1]:g} dB down) on top; "
        f"coloured background noise at an SNR of {SNR_DB[0]:g}-{SNR_DB[1]:g} dB, peak level "
        f"{PEAK_DB[0]:g} to {PEAK_DB[1]:g} dBFS; 16-bit PCM mono at {SAMPLE_RATE} Hz. "
        "Durations depend on the class: its median is the profile's median_seconds times the "
        "relative duration in the table.",
        "",
        "Labels: train clips with manually_verified=1 (the clean subset) and all test clips are "
        f"correct. In the noisy subset {WRONG_LABEL_RATE:.0%} of the labels are wrong, "
        f"{PARTNER_SHARE:.0%} of those naming the confusable partner class. noisy_small=1 marks "
        "noisy clips adding up, per class, to about the clean subset's duration. The column "
        "true_label (absent from the real dataset) gives every train clip's real class.",
        "",
        "| aso_id | class | confusable partner | relative duration | recipe |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| synth/{i:02d} | {c.name} | {c.partner} | {c.duration:g} | {c.recipe.__doc__.strip()} |"
        for i, c in enumerate(CLASSES)
    ]
    return "\n".join(lines) + "\n"


def synthesize(
    root: str | Path, *, profile: str = "cpu", seed: int = 0, progress: bool = True
) -> dict:
    """Write the built-in dataset under root in the FSDnoisy18k layout; return a JSON-able summary.

    Reuses root as is when it already holds the complete dataset of this profile and seed
    (summary["reused"] is then True); otherwise (re)generates it from scratch. Refuses a root
    holding an FSDnoisy18k-style dataset that synth did not make. Large sets are rendered by
    worker processes: call it from a notebook, the CLI or a script's `if __name__ == "__main__"`.
    """
    started = time.perf_counter()
    root = Path(root)
    _validate(root, profile, seed)
    seed = int(seed)
    settings = {"generator_version": GENERATOR_VERSION, "profile": profile, "seed": seed}
    settings |= asdict(PROFILES[profile])
    stored = _is_complete(root, settings)
    if stored is not None:
        elapsed = round(time.perf_counter() - started, 3)
        return stored | {"root": str(root), "reused": True, "seconds": elapsed}

    (root / DOC_DIR / MARKER).unlink(missing_ok=True)
    for folder in AUDIO_DIRS.values():
        shutil.rmtree(root / folder, ignore_errors=True)
    for folder in (*AUDIO_DIRS.values(), META_DIR, DOC_DIR):
        (root / folder).mkdir(parents=True, exist_ok=True)

    train, test = _plan(PROFILES[profile], seed)
    public = ["fname", "label", "aso_id", "manually_verified", "noisy_small", "true_label"]
    atomic_write_text(root / META_DIR / "train.csv", train[public].to_csv(index=False))
    atomic_write_text(root / META_DIR / "test.csv", test[public[:3]].to_csv(index=False))

    tasks = [
        (str(root / folder / clip.fname), clip.class_index, clip.seconds, (seed, code, i))
        for code, folder, table in ((0, AUDIO_DIRS["train"], train), (1, AUDIO_DIRS["test"], test))
        for i, clip in enumerate(table.itertuples())
    ]
    _render_all(tasks, progress=progress)

    clean = train.manually_verified == 1
    subsets = {
        "train": train,
        "clean": train[clean],
        "noisy": train[~clean],
        "noisy_small": train[train.noisy_small == 1],
        "test": test,
    }
    noisy = subsets["noisy"]
    summary = {
        "root": str(root),
        "profile": profile,
        "seed": seed,
        "classes": CLASS_NAMES,
        "clips": {name: len(table) for name, table in subsets.items()},
        "hours": {name: round(float(t.seconds.sum()) / 3600, 4) for name, t in subsets.items()},
        "label_noise_rate": round(float((noisy.label != noisy.true_label).mean()), 4),
    }
    atomic_write_text(root / DOC_DIR / "README.md", _readme(profile, seed, summary))
    atomic_write_text(
        root / DOC_DIR / MARKER, json.dumps({"settings": settings, "summary": summary})
    )
    return summary | {"reused": False, "seconds": round(time.perf_counter() - started, 3)}
