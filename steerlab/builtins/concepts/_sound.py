"""Synthetic sounds and spectral measures the built-in concepts share.

Every sound is a sum of harmonic notes (harmonic ``h`` of ``f0`` at amplitude ``1/h`` times the
note's level, random phase, harmonics below :data:`TOP_HZ`) under one envelope, placed between
silent margins; both signals of a pair come from one seed and one scale, so they differ only by
the concept's change. The measures are steerlab's own spectra (:func:`steerlab.scoring.power_spectrum`,
Welch-averaged, ``n_fft`` 4096) and its floored log-spectral distance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

N_FFT = 4096
TOP_HZ = 8_000.0  # the highest partial rendered: inside every built-in model's band
PEAK = 0.5  # the louder signal of a pair peaks here (re full scale)


def midi_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def envelope(n: int, sr: int, attack_ms: float, release_ms: float) -> np.ndarray:
    """``[n]``: raised-cosine attack and release of the given lengths, 1 between."""
    env = np.ones(n)
    for ms, rev in ((attack_ms, False), (release_ms, True)):
        k = min(n // 2, max(1, int(round(ms / 1000 * sr))))
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
        if rev:
            env[n - k :] *= ramp[::-1]
        else:
            env[:k] *= ramp
    return env


def partial_list(f0s: Sequence[float], levels: Sequence[float], n_harmonics: int, sr: int) -> list[tuple[float, float]]:
    """``(frequency Hz, amplitude)`` of every harmonic of every note, below TOP_HZ and Nyquist."""
    top = min(TOP_HZ, 0.45 * sr)
    return [(h * f0, lv / h) for f0, lv in zip(f0s, levels) for h in range(1, n_harmonics + 1) if h * f0 < top]


def sines(partials: Sequence[tuple[float, float]], n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``[n]`` sum of sinusoids with random phases (one draw per partial, in order)."""
    t = np.arange(n) / sr
    out = np.zeros(n)
    for f, a in partials:
        out += a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out


def place(sound: np.ndarray, margin: int) -> np.ndarray:
    return np.concatenate([np.zeros(margin), sound, np.zeros(margin)])


def scale_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both signals times one gain, so the louder peaks at :data:`PEAK`."""
    peak = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-12)
    return a * PEAK / peak, b * PEAK / peak


def power(x: np.ndarray) -> np.ndarray:
    """Welch power spectrum ``[N_FFT // 2 + 1]`` of a mono ``[samples]`` signal (bins at
    :func:`freqs_for`)."""
    from steerlab.scoring import power_spectrum

    return power_spectrum(np.asarray(x, dtype=np.float64)[None], N_FFT)


def powers(xs: np.ndarray) -> np.ndarray:
    """``[signals, N_FFT // 2 + 1]``: :func:`power` of each row of ``xs`` ``[signals, samples]``,
    the frames of every row transformed in one call (each row's values are those of
    :func:`power` on it alone, bit for bit: the same frames, window and reductions)."""
    from steerlab.scoring import _power_from_stft, _welch, stft

    xs = np.asarray(xs, dtype=np.float64)
    spectra = stft(xs, N_FFT)
    return np.stack([_welch(_power_from_stft(spectra[i : i + 1], N_FFT), N_FFT, xs.shape[1]) for i in range(len(xs))])


def freqs_for(sr: int) -> np.ndarray:
    return np.arange(N_FFT // 2 + 1) * sr / N_FFT


def lsd_outside(baseline: np.ndarray, patched: np.ndarray, sr: int, bands_hz: Sequence[float]) -> float:
    """The off-band log-spectral distance (dB) of ``patched`` from ``baseline`` outside the bands
    of ``bands_hz``, each ``f +- (band_hz / 2 + guard_hz)`` as partials' off-band rule leaves out
    (:class:`steerlab.scoring.ScoreConfig` defaults: 50 Hz bands, 100 Hz guards, the floor 60 dB
    under the baseline's largest bin; :func:`steerlab.scoring.offband_distance`)."""
    return lsd_outside_power(power(baseline), power(patched), sr, bands_hz)


def lsd_outside_power(pb: np.ndarray, pp: np.ndarray, sr: int, bands_hz: Sequence[float]) -> float:
    """:func:`lsd_outside` from the two signals' :func:`power` spectra."""
    from steerlab.scoring import ScoreConfig, offband_distance

    return offband_distance(pp, pb, _offband(sr, tuple(bands_hz)), ScoreConfig(n_fft=N_FFT))


@lru_cache(maxsize=64)
def _offband(sr: int, bands_hz: tuple[float, ...]) -> np.ndarray:
    """Boolean ``[bins]`` (read-only): the bins outside the guarded bands of :func:`lsd_outside`."""
    from steerlab.scoring import ScoreConfig, band_mask

    config = ScoreConfig(n_fft=N_FFT)
    freqs = freqs_for(sr)
    inside = np.zeros(len(freqs), dtype=bool)
    for f in bands_hz:
        inside |= band_mask(freqs, f, config.band_hz + 2 * config.guard_hz)
    out = ~inside
    out.setflags(write=False)
    return out


def db_change_per_bin(
    baseline: np.ndarray, patched: np.ndarray, sr: int, peaks_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(freqs, dB change)`` of the Welch power spectra over the bins where either holds energy,
    each spectrum floored 60 dB under its *own* largest bin, so a pure gain changes every bin by
    exactly the gain (a floor shared by both clips the gain's change at the quiet bins: measured,
    0.7-1.4 dB of spurious shape change for a 6 dB gain). ``peaks_only``: only the bins that are
    local maxima of either spectrum (the partials themselves; the bins between two partials mix
    their leakage, and a per-frequency gain does not move them by the gain at their frequency:
    measured, 2.9-3.3 dB of residual for an exact tilt over every bin)."""
    return db_change_from_power(power(baseline), power(patched), sr, peaks_only)


def db_change_from_power(
    pb: np.ndarray, pp: np.ndarray, sr: int, peaks_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`db_change_per_bin` from the two signals' :func:`power` spectra."""
    fb, fp = max(float(pb.max()) * 1e-6, 1e-30), max(float(pp.max()) * 1e-6, 1e-30)
    keep = (pb > fb) | (pp > fp)
    if peaks_only:
        keep = _peaks(pb, fb) | _peaks(pp, fp)
    freqs = freqs_for(sr)
    return freqs[keep], 10 * np.log10(np.maximum(pp[keep], fp) / np.maximum(pb[keep], fb))


def _peaks(p: np.ndarray, floor: float) -> np.ndarray:
    out = np.zeros(len(p), dtype=bool)
    out[1:-1] = (p[1:-1] > p[:-2]) & (p[1:-1] >= p[2:]) & (p[1:-1] > floor)
    return out


def rms_db(x: np.ndarray) -> float:
    return 10 * math.log10(max(float(np.mean(np.asarray(x, dtype=np.float64) ** 2)), 1e-20))
