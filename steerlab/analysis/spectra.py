"""Waveform fragments behind a direction, their spectra, and how narrowband they are (analysis i).

A fragment is ``length`` input samples centred on the part of the input a frame (a
feature) or a pair of frames (an archetype: the transition between frames ``t`` and
``t + 1``) depends on. Centring uses the frame grid only (``t * hop``); convolution
padding can move the true receptive field by up to half its length, so fragments are
then aligned to their running mean by cross-correlation within ``max_lag`` samples,
as the source post aligned the troughs of its archetype-93 fragments.

Spectra use a Hann window and zero-padding to ``n_fft``; every fragment is scaled to
unit energy first, so a loud fragment does not dominate the mean. The narrowband
measure of a spectrum ``P(f)``:

- ``peak_hz``: the frequency of its maximum;
- ``fwhm_hz``: the width of the contiguous region around the peak where ``P`` stays at
  or above half the peak (linear power);
- ``effective_bandwidth_hz``: ``(sum P)^2 / sum P^2 x df`` (the participation ratio of
  the bins: robust to ripple, ~1.5 x fs / length for one Hann-windowed sinusoid, most of
  the band for white noise);
- ``peak_share``: the share of the energy within ``band_hz`` of the peak;
- ``low_share``: the share below ``low_hz`` (the post's "low-end-heavy" spectra).

Computed on the mean spectrum of a direction's fragments (does the direction select a
frequency?) and on each fragment (are the fragments themselves narrowband?).
"""

from __future__ import annotations

from typing import Any

import numpy as np

LOW_HZ = 1000.0


def fragment(wave: np.ndarray, centre: int, length: int) -> np.ndarray:
    """``length`` samples of a mono ``wave`` centred on sample ``centre`` (zeros outside)."""
    start = centre - length // 2
    out = np.zeros(length, dtype=np.float64)
    lo, hi = max(start, 0), min(start + length, len(wave))
    if hi > lo:
        out[lo - start : hi - start] = wave[lo:hi]
    return out


def align(fragments: np.ndarray, max_lag: int, iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Circularly shift each fragment (at most ``max_lag`` samples) to best correlate with the
    mean of the others; returns the aligned fragments and the shifts."""
    f = np.asarray(fragments, dtype=np.float64)
    shifts = np.zeros(len(f), dtype=int)
    if len(f) < 2 or max_lag < 1:
        return f.copy(), shifts
    lags = np.arange(-max_lag, max_lag + 1)
    for _ in range(iterations):
        cur = np.stack([np.roll(x, s) for x, s in zip(f, shifts)])
        template = cur.mean(axis=0)
        new = np.array([lags[int(np.argmax([np.dot(np.roll(x, lag), template) for lag in lags]))] for x in f])
        if np.array_equal(new, shifts):
            break
        shifts = new
    return np.stack([np.roll(x, s) for x, s in zip(f, shifts)]), shifts


def power_spectra(fragments: np.ndarray, sample_rate: float, n_fft: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed power spectra ``[n, bins]`` of unit-energy fragments, and the bin frequencies."""
    f = np.atleast_2d(np.asarray(fragments, dtype=np.float64))
    length = f.shape[1]
    n_fft = n_fft or int(2 ** np.ceil(np.log2(max(4 * length, 256))))
    energy = np.sqrt((f * f).sum(axis=1, keepdims=True))
    f = np.divide(f, energy, out=np.zeros_like(f), where=energy > 0)
    p = np.abs(np.fft.rfft(f * np.hanning(length), n=n_fft, axis=1)) ** 2
    return p, np.fft.rfftfreq(n_fft, 1.0 / sample_rate)


def narrowband(power: np.ndarray, freqs: np.ndarray, band_hz: float, low_hz: float = LOW_HZ) -> dict[str, Any]:
    """The narrowband measure of one power spectrum (see the module docstring)."""
    p = np.asarray(power, dtype=np.float64)
    total = p.sum()
    df = float(freqs[1] - freqs[0])
    if total <= 0:
        return {
            "peak_hz": None,
            "fwhm_hz": None,
            "effective_bandwidth_hz": None,
            "peak_share": None,
            "low_share": None,
            "reason": "the fragments hold no energy (silence): no spectrum to measure",
        }
    i = int(p.argmax())
    half = p[i] / 2
    lo = i
    while lo > 0 and p[lo - 1] >= half:
        lo -= 1
    hi = i
    while hi < len(p) - 1 and p[hi + 1] >= half:
        hi += 1
    near = np.abs(freqs - freqs[i]) <= band_hz
    return {
        "peak_hz": float(freqs[i]),
        "fwhm_hz": float((hi - lo + 1) * df),
        "effective_bandwidth_hz": float(total**2 / (p * p).sum() * df),
        "peak_share": float(p[near].sum() / total),
        "low_share": float(p[freqs < low_hz].sum() / total),
    }


def spectrum_report(fragments: np.ndarray, sample_rate: float, band_hz: float) -> dict[str, Any]:
    """Narrowband measures of the mean spectrum and the medians of the per-fragment ones."""
    p, freqs = power_spectra(fragments, sample_rate)
    per = [narrowband(row, freqs, band_hz) for row in p]
    keys = ("fwhm_hz", "effective_bandwidth_hz", "peak_share", "low_share")
    return {
        "mean_spectrum": narrowband(p.mean(axis=0), freqs, band_hz),
        "per_fragment_median": {
            k: float(np.median([m[k] for m in per if m[k] is not None])) if any(m[k] is not None for m in per) else None
            for k in keys
        },
        "band_hz": float(band_hz),
        "n_fragments": int(len(p)),
        "_power": p,
        "_freqs": freqs,
    }
