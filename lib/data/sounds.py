"""The sounds of the built-in dataset: one recipe per class, in confusable pairs.

Each recipe renders one event of its class as a float64 signal at SAMPLE_RATE from a random
generator, so a clip's audio depends on its own random stream only. synth.py plans the
dataset and mixes these events with backgrounds into clips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.fft import next_fast_len

SAMPLE_RATE = 22050


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


def coloured_noise(
    rng: np.random.Generator, n: int, *, low: float = 0.0, high: float = 1e9, tilt: float = 0.0
) -> np.ndarray:
    """Gaussian noise with power ~ f**-tilt, band-passed between low and high (gentle edges),
    drawn as a random spectrum of a length that FFTs fast (a prime length is much slower)."""
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


def fade(n: int, seconds: float) -> np.ndarray:
    """1 in the middle, raised-cosine ramps of the given length at both ends."""
    ramp = min(int(seconds * SAMPLE_RATE), n // 2)
    env = np.ones(n)
    env[:ramp] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    env[n - ramp :] = env[:ramp][::-1]
    return env


def unit(x: np.ndarray) -> np.ndarray:
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
    return coloured_noise(rng, n, low=low, high=high) * _wander(rng, n, 1.0, 0.7, 1.0)


def hiss_bursts(rng: np.random.Generator, n: int) -> np.ndarray:
    """The same high-band noise cut into 50-400 ms bursts, 1-5 a second, like spraying."""
    low, high = _hiss_band(rng)
    envelope = np.zeros(n)
    for at in _onsets(rng, n, rng.uniform(1, 5), jitter=0.5):
        _add(envelope, np.sqrt(np.hanning(int(rng.uniform(0.05, 0.4) * SAMPLE_RATE))), at)
    return coloured_noise(rng, n, low=low, high=high) * envelope


def rain(rng: np.random.Generator, n: int) -> np.ndarray:
    """Dense droplets (40-200 a second, 1.5-6 kHz pings of 2-10 ms) over a soft noise bed."""
    drops = np.zeros(n)
    for at in _onsets(rng, n, rng.uniform(40, 200), jitter=0.8):
        tau = rng.uniform(0.002, 0.01)
        ping = _ping(_loguniform(rng, 1500, 6000), tau, int(4 * tau * SAMPLE_RATE), rng)
        _add(drops, rng.lognormal(0, 0.5) * ping, at)
    bed = coloured_noise(rng, n, low=_loguniform(rng, 300, 1000), high=rng.uniform(6000, 10000))
    return unit(drops) + rng.uniform(0.1, 0.4) * unit(bed)


def crackle(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sparse sharp broadband cracks (5-40 a second, heavy-tailed loudness) over a low rumble."""
    cracks = np.zeros(n)
    for at in _onsets(rng, n, rng.uniform(5, 40), jitter=1.0):
        length = int(rng.uniform(0.001, 0.004) * SAMPLE_RATE)
        loudness = min(1 + rng.pareto(1.5), 10)
        _add(cracks, loudness * rng.standard_normal(length) * np.hanning(length), at)
    rumble = coloured_noise(rng, n, low=30, high=rng.uniform(150, 400))
    return unit(cracks) + rng.uniform(0.2, 0.6) * unit(rumble)


def engine(rng: np.random.Generator, n: int) -> np.ndarray:
    """A low pulse wave (25-70 Hz firing rate, drifting speed) plus pulsing rumble, like a motor."""
    freq = _loguniform(rng, 25, 70) * _wander(rng, n, 0.5, 0.85, 1.15)
    rumble = coloured_noise(rng, n, low=40, high=rng.uniform(500, 1500))
    rumble *= 1 + 0.5 * np.cos(_phase(freq, n))
    return unit(_pulse_wave(freq, rng.uniform(3, 12), n)) + rng.uniform(0.2, 0.7) * unit(rumble)


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
    breath = coloured_noise(rng, n, low=0.8 * base, high=1.25 * base)
    return unit(np.sin(_phase(freq, n))) + rng.uniform(0.05, 0.3) * unit(breath)


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
        _add(out, note * fade(length, 0.05), at)
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
    noise = coloured_noise(rng, n, low=rng.uniform(30, 80), high=rng.uniform(600, 2000), tilt=1)
    howl = np.sin(_phase(_loguniform(rng, 200, 900) * _wander(rng, n, 0.5, 0.8, 1.25), n))
    return (unit(noise) + rng.uniform(0, 0.5) * howl) * gusts


def rumble(rng: np.random.Generator, n: int) -> np.ndarray:
    """Low noise swells (30-300 Hz, 0.3-2 s, slow attack and release), like distant thunder."""
    envelope = np.zeros(n)
    for at in _onsets(rng, n, rng.uniform(0.4, 1.5), jitter=0.5):
        _add(envelope, np.hanning(int(rng.uniform(0.3, 2) * SAMPLE_RATE)), at)
    return coloured_noise(rng, n, low=30, high=rng.uniform(120, 300), tilt=1) * envelope


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
