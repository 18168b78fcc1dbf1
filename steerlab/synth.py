"""Synthetic music corpus: the project's own training and test audio.

Every clip is a pure function of (kind, seed, sample_rate, seconds), so a corpus
is reproducible from its manifest alone. The mix covers what the research cares
about: harmonic tones with varied partial amplitudes and envelopes, chords,
melodies, pure tones, noise bursts and percussion-like transients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steerlab import validation as check
from steerlab.errors import ConfigError

KINDS: tuple[str, ...] = ("tone", "harmonic", "chord", "melody", "noise_burst", "percussion", "mixture")


@dataclass(frozen=True)
class ClipSpec:
    """One synthetic clip; the spec alone regenerates it."""

    kind: str
    seed: int
    sample_rate: int = 24_000
    seconds: float = 1.0

    def __post_init__(self) -> None:
        check.choice("kind", self.kind, KINDS)  # "unknown kind": the CLI names --kind
        for name in ("sample_rate", "seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}", parameter=name)


def _envelope(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """ADSR-like envelope with random attack/decay times."""
    attack = max(1, int(sr * rng.uniform(0.002, 0.08)))
    release = max(1, int(sr * rng.uniform(0.01, 0.3)))
    sustain = rng.uniform(0.3, 1.0)
    env = np.full(n, sustain, dtype=np.float64)
    a = min(attack, n)
    env[:a] = np.linspace(0.0, 1.0, a)
    decay = min(n - a, int(sr * rng.uniform(0.02, 0.2)))
    if decay > 0:
        env[a : a + decay] = np.linspace(1.0, sustain, decay)
    r = min(release, n)
    env[n - r :] *= np.linspace(1.0, 0.0, r)
    return env


def _harmonic(rng: np.random.Generator, f0: float, n: int, sr: int) -> np.ndarray:
    """A harmonic tone: partials k*f0 below Nyquist with random spectral tilt and jitter."""
    t = np.arange(n) / sr
    tilt = rng.uniform(0.5, 2.0)
    n_partials = int(min(int(rng.integers(2, 20)), (sr / 2 - 1) // f0))
    out = np.zeros(n)
    for k in range(1, max(n_partials, 1) + 1):
        amp = k ** (-tilt) * rng.uniform(0.3, 1.0)
        out += amp * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    return out * _envelope(rng, n, sr)


def _midi_hz(m: float) -> float:
    return 440.0 * 2 ** ((m - 69) / 12)


def synthesize(spec: ClipSpec) -> np.ndarray:
    """Return a float32 mono clip of ``spec`` with peak amplitude in [0.1, 0.9]."""
    rng = np.random.default_rng([spec.seed, KINDS.index(spec.kind)])
    sr = spec.sample_rate
    n = int(round(spec.seconds * sr))
    t = np.arange(n) / sr
    if spec.kind == "tone":
        f = float(np.exp(rng.uniform(np.log(50), np.log(min(8000, sr / 2.5)))))
        x = np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * _envelope(rng, n, sr)
    elif spec.kind == "harmonic":
        x = _harmonic(rng, _midi_hz(rng.uniform(36, 84)), n, sr)
    elif spec.kind == "chord":
        root = rng.uniform(40, 72)
        shape = [(0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10), (0, 5, 7)][rng.integers(5)]
        x = sum(_harmonic(rng, _midi_hz(root + s), n, sr) for s in shape)
    elif spec.kind == "melody":
        x = np.zeros(n)
        pos = 0
        pitch = rng.uniform(48, 76)
        while pos < n:
            dur = int(sr * rng.uniform(0.08, 0.4))
            seg = min(dur, n - pos)
            x[pos : pos + seg] += _harmonic(rng, _midi_hz(pitch), seg, sr)
            pos += seg
            pitch = float(np.clip(pitch + rng.integers(-5, 6), 36, 88))
    elif spec.kind == "noise_burst":
        x = np.zeros(n)
        for _ in range(rng.integers(1, 5)):
            start = rng.integers(0, n)
            length = min(n - start, int(sr * rng.uniform(0.02, 0.3)))
            # coloured noise: white noise with a random spectral slope
            spectrum = np.fft.rfft(rng.standard_normal(length))
            freqs = np.arange(1, len(spectrum) + 1, dtype=np.float64)
            burst = np.fft.irfft(spectrum * freqs ** (-rng.uniform(0.0, 1.0)), n=length)
            burst /= np.max(np.abs(burst)) + 1e-12
            x[start : start + length] += burst * _envelope(rng, length, sr)
    elif spec.kind == "percussion":
        x = np.zeros(n)
        for _ in range(rng.integers(1, 8)):
            start = rng.integers(0, n)
            length = min(n - start, int(sr * rng.uniform(0.05, 0.3)))
            tt = np.arange(length) / sr
            decay = np.exp(-tt * rng.uniform(10, 60))
            f = rng.uniform(40, 200)
            sweep = np.sin(2 * np.pi * f * tt * (1 + rng.uniform(0, 3) * np.exp(-tt * 30)))
            click = rng.standard_normal(length) * np.exp(-tt * rng.uniform(100, 400))
            x[start : start + length] += (rng.uniform(0.2, 1) * sweep + rng.uniform(0.1, 1) * click) * decay
    else:  # mixture: a melody over a chord with some percussion
        parts = [
            synthesize(ClipSpec(k, int(rng.integers(2**31)), sr, spec.seconds)) * rng.uniform(0.3, 1.0)
            for k in ("chord", "melody", "percussion")
        ]
        x = np.sum(parts, axis=0)
    peak = float(np.max(np.abs(x)))
    if peak < 1e-9:
        return np.zeros(n, dtype=np.float32)
    return (x / peak * rng.uniform(0.1, 0.9)).astype(np.float32)


def corpus(n_clips: int, seed: int, sample_rate: int = 24_000, seconds: float = 1.0) -> list[ClipSpec]:
    """A reproducible list of clip specs cycling through every kind."""
    rng = np.random.default_rng(seed)
    return [ClipSpec(KINDS[i % len(KINDS)], int(rng.integers(2**31)), sample_rate, seconds) for i in range(n_clips)]
