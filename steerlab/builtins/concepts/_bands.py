"""Where a concept's change sits in the spectrum, found from the pair's own sounds: the measures
``note``, ``chord-quality`` and ``brightness`` share, correct on synthetic and rendered sounds.

The first measures of these concepts were designed on sums of sinusoids and placed the change
where the sine model puts it: harmonics 1-6 of a note, every spectral peak read against a floor
60 dB under the spectrum's peak. A rendered note (:mod:`steerlab.builtins.concepts._rendered`) has
more: higher harmonics, an attack's noise, peaks deeper than 60 dB, and chroma that its
neighbours' partials share. Measured with ``python -m steerlab.battery.check --stimuli
instrument``, the ideal edits failed their own rules there (note: 5.0 dB of damage; chord-quality:
7.5 dB of damage and 3.4-5.0 dB of chroma change; brightness: 4.2 dB of residual). So:

- :func:`edit_bands`: the bands of a known sound (the note a pair adds, a chord's third) are the
  note-partials rule of ``steerlab partials`` (:func:`steerlab.scoring.note_bands`, docs/partials.md):
  the note's own partials found as peaks of its spectrum within 60 dB, one per 50 Hz band, and the
  bins where the ideal edit itself may move the context by more than 1 dB (its guard). Damage is
  the off-band log-spectral distance outside them (:func:`damage_outside`), the partials' off-band
  rule (:func:`steerlab.scoring.offband_distance`) with the sound's own bands.
- :func:`held_bins`: the bins a sound holds against the rest of a mixture, the ideal binary mask
  at local criterion 0 dB (Wang 2005, "On ideal binary mask as the computational goal of auditory
  scene analysis"); :func:`masked_chroma` reads a pitch class's chroma only there.
- :func:`tilt_residual_censored`: the residual of a level change after the best tilt, with a
  spectral peak below the other spectrum's floor read as a bound on the change (a censored
  observation, Tobit 1958, "Estimation of relationships for limited dependent variables"), not as
  the floor's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from steerlab.battery.concept import PairSpec
from steerlab.scoring import NoteBands, ScoreConfig

RANGE_DB = 60.0  # the scorer's dynamic range (steerlab.scoring.ScoreConfig.range_db)


def _config() -> ScoreConfig:
    from steerlab.builtins.concepts._sound import N_FFT

    return ScoreConfig(n_fft=N_FFT)


def edit_bands(sound: np.ndarray, context: np.ndarray, sr: int) -> NoteBands:
    """The bands of ``sound`` (``[samples]``, the part a pair adds or removes, alone) added to
    ``context`` (``[samples]``, the rest of the pair, the same length): :func:`steerlab.scoring.note_bands`
    on the battery's spectra (Welch, ``n_fft`` 4096, 50 Hz bands, 60 dB range, guard at 1 dB).
    Raises AudioError on empty, non-finite or mismatched input."""
    from steerlab.scoring import note_bands

    return note_bands(sound, context, float(sr), _config())


def damage_outside(baseline: np.ndarray, patched: np.ndarray, bands: Sequence[NoteBands]) -> float:
    """The off-band log-spectral distance (dB) of ``patched`` from ``baseline`` (``[samples]``
    each) outside every band and guard of ``bands`` (:func:`edit_bands`): the bins where the
    baseline is within 60 dB of its peak (:func:`steerlab.scoring.offband_distance`), as
    :func:`steerlab.scoring.score_note` measures a rendered note's damage."""
    from steerlab.builtins.concepts._sound import power

    return damage_outside_power(power(baseline), power(patched), bands)


def damage_outside_power(pb: np.ndarray, pp: np.ndarray, bands: Sequence[NoteBands]) -> float:
    """:func:`damage_outside` from the two signals' Welch power spectra (``[n_fft // 2 + 1]``
    each, :func:`steerlab.builtins.concepts._sound.power`)."""
    from steerlab.scoring import offband_distance

    inside = np.zeros(len(pb), dtype=bool)
    for b in bands:
        inside |= b.bands | b.guard
    return offband_distance(pp, pb, ~inside, _config())


def held_bins(sound: np.ndarray, rest: np.ndarray, local_criterion_db: float = 0.0) -> np.ndarray:
    """``[n_fft // 2 + 1]`` bool: the bins of the Welch power spectrum where ``sound`` (``[samples]``)
    exceeds ``rest`` (``[samples]``, what the mixture holds without it) by ``local_criterion_db``:
    the ideal binary mask (Wang 2005) at the 0 dB criterion whose SNR gain is largest (Li & Wang
    2009), per frequency bin, summed over time (the pairs' sounds are held notes)."""
    from steerlab.builtins.concepts._sound import power

    ps, pr = power(sound), power(rest)
    return ps > 10.0 ** (local_criterion_db / 10.0) * pr


def masked_chroma(x: np.ndarray, sr: int, mask: np.ndarray) -> np.ndarray:
    """``[12]`` mean chroma (C = 0) of ``x`` (``[samples]``) over the frequency bins ``mask``
    (``[n_fft // 2 + 1]`` bool) only: librosa.feature.chroma_stft of the power STFT (Hann,
    ``n_fft`` 4096, hop 1024, ``norm=None``, ``tuning=0``) with the other bins zeroed. With every
    bin kept it equals ``chroma_stft(y=x, ...)``."""
    import librosa

    from steerlab.builtins.concepts._sound import N_FFT

    s = np.abs(librosa.stft(np.asarray(x, dtype=np.float64), n_fft=N_FFT, hop_length=N_FFT // 4)) ** 2
    return np.asarray(chroma_of_power(s * mask[:, None], sr).mean(axis=1))


def chroma_of_power(s: np.ndarray, sr: int) -> np.ndarray:
    """``[12, frames]``: ``librosa.feature.chroma_stft(S=s, sr=sr, n_fft=4096, norm=None,
    tuning=0.0)`` of a power STFT ``s`` (``[n_fft // 2 + 1, frames]``), by chroma_stft's own
    steps (its einsum, its normalisation with ``norm=None``) with the filter bank built once
    per ``sr`` (:func:`_chroma_bank`): the same values bit for bit (tests check)."""
    import librosa

    raw = np.einsum("cf,...ft->...ct", _chroma_bank(sr), s, optimize=True)
    return np.asarray(librosa.util.normalize(raw, norm=None, axis=-2))


@lru_cache(maxsize=8)
def _chroma_bank(sr: int) -> np.ndarray:
    """librosa.feature.chroma_stft's filter bank at ``sr`` (n_fft 4096, 12 classes, tuning 0), read-only."""
    import librosa

    from steerlab.builtins.concepts._sound import N_FFT

    bank = librosa.filters.chroma(sr=sr, n_fft=N_FFT, tuning=0.0, n_chroma=12)
    bank.setflags(write=False)
    return bank


def tilt_residual_censored(baseline: np.ndarray, patched: np.ndarray, sr: int, low_hz: float) -> float:
    """RMS residual (dB) of the level change at the spectral peaks of either signal
    (``[samples]`` each; Welch spectra, local maxima above the spectrum's floor, from ``low_hz``
    up), after the least-squares line in ``log2(f)`` (a gain and a tilt cost nothing).

    Each spectrum is floored 60 dB under its own peak, so a gain is exact at every bin. A peak of
    one spectrum that lies below the other's floor gives only a bound on its change (its value
    there is unknown under the floor): it is *censored*, left out of the line's fit and counted
    only by how far the line falls on the wrong side of the bound (0 when the line is consistent
    with it). Reading the floor as the value instead charged the ideal tilt 4.2 dB of residual on
    rendered notes, whose deep peaks a +-16 dB tilt moves across the floor (measured); a partial
    added where the baseline is below its floor still counts in full (it is far above the line).
    With fewer than 3 peaks held by both spectra no tilt can be read, and the damage is the whole
    range, 60 dB: a decode left with nothing but its own rumble under ``low_hz`` (every peak of the
    baseline under its floor) is otherwise consistent with a gain of -100 dB and costs nothing
    (measured: logspec_24khz's ablations of rendered pairs, centroid 4-9 Hz, scored 0.00 dB before
    this rule). 0 when the two spectra have fewer than 3 peaks in all."""
    from steerlab.builtins.concepts._sound import power

    return tilt_residual_censored_power(power(baseline), power(patched), sr, low_hz)


def tilt_residual_censored_power(pb: np.ndarray, pp: np.ndarray, sr: int, low_hz: float) -> float:
    """:func:`tilt_residual_censored` from the two signals' Welch power spectra (``[n_fft // 2 + 1]``
    each, :func:`steerlab.builtins.concepts._sound.power`)."""
    from steerlab.builtins.concepts._sound import _peaks, freqs_for

    fb, fp = max(float(pb.max()) * 10 ** (-RANGE_DB / 10), 1e-30), max(float(pp.max()) * 10 ** (-RANGE_DB / 10), 1e-30)
    freqs = freqs_for(sr)
    keep = (_peaks(pb, fb) | _peaks(pp, fp)) & (freqs >= low_hz)
    observed = 10 * np.log10(np.maximum(pp[keep], fp) / np.maximum(pb[keep], fb))
    low_b, low_p = pb[keep] <= fb, pp[keep] <= fp  # the change is >= observed, <= observed
    exact = ~low_b & ~low_p
    if keep.sum() < 3:
        return 0.0
    if exact.sum() < 3:  # the two spectra share no peaks within the range: no tilt to read
        return RANGE_DB
    x = np.log2(freqs[keep])
    a = np.vstack([x, np.ones_like(x)]).T
    coef, *_ = np.linalg.lstsq(a[exact], observed[exact], rcond=None)
    residual = observed - a @ coef
    residual[low_b] = np.maximum(residual[low_b], 0.0)
    residual[low_p] = np.minimum(residual[low_p], 0.0)
    return float(np.sqrt(np.mean(residual**2)))


@lru_cache(maxsize=64)
def layout(concept: Any, spec: PairSpec) -> Any:
    """``concept.layout(spec)`` (where its change sits, from the pair's own render), computed once
    per pair: every decode of a pair is scored against the same layout."""
    return concept.layout(spec)
