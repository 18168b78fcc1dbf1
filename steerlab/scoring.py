"""Spectral scoring of a steering intervention.

Step 4 of the partial-steerability protocol (see SCIENCE.md): the PATCHED decode
is always compared with the BASELINE decode of the same input, never with the raw
input, so that the codec's own reconstruction error cancels out and only the
intervention's effect is measured.

Everything here is numpy (float64 internally) except ``mrstft``, which reuses
:func:`steerlab.metrics.multires_stft_distance`. Audio is ``[samples]`` or
``[channels, samples]``; multichannel audio is reduced by averaging the power
spectra of the channels (inter-channel phase is ignored).

Spectra are Welch-style averages: Hann window of ``n_fft`` samples, hop
``n_fft // 4``, the signal zero-padded at both ends so that every sample gets the
same total window weight (a change at the very edge of a clip still counts, and a
clip shorter than ``n_fft`` is simply zero-padded). Power is one-sided and scaled
so that the bins sum exactly to the signal's mean square: a sinusoid of amplitude
``a`` has a band energy of ``a**2 / 2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from steerlab import validation as check
from steerlab.errors import AudioError, SteerlabError


@dataclass(frozen=True)
class ScoreConfig:
    """Options of :func:`score`; recorded with every result.

    band_hz: FULL width in Hz of the band centred on each target frequency: a bin
        at frequency ``b`` is in the band of ``f`` when ``|b - f| <= band_hz / 2``.
        The bin nearest to ``f`` is always included, however narrow the band.
    n_fft: window length of the averaged power spectrum (Hann, hop n_fft // 4); a
        multiple of 4 so the hop is exact.
    floor_db: power floor in dB (re 1.0 full scale, per bin) under which spectra
        count as silence; keeps every log finite.
    range_db: dynamic range of the log-spectral distances: bins more than this many dB
        below a reference peak count as silence (None: only ``floor_db``). For
        ``lsd_db`` the reference is the louder spectrum's peak bin. The off-band distance
        measures damage to what the baseline holds off the target, so it keeps only the
        bins within range_db of the BASELINE's peak; new energy spilled into bins the
        baseline leaves silent is what ``concentration`` measures. Without this, a
        perfectly clean added partial scored 10 to 30 dB of off-band distance: the window's
        leakage skirt and the partial's onset land on near-silent bins, and an unweighted
        RMS of dB differences over ~2,000 bins is dominated by them (measured on ideal
        with/without-partial pairs; tests/test_scoring.py).
    guard_hz: off-band distances leave out, beside each target band, this many Hz on
        either side: the skirt of the target's own spectrum (window leakage and the spread
        of onsets and fades), which an ideal add or remove of the partial changes too.
        Measured on ideal with/without pairs of the batch test's stimuli (1 s, 10 ms fades,
        densities 0 to 16, with and without noise; n_fft 4096 at 24 kHz): at range_db 60 the
        worst ideal off-band distance is 13.3 dB with a 25 Hz guard, 9.2 dB with 50 Hz and
        0.74 dB with 100 Hz. The price: damage to another partial within guard_hz of a
        target is not seen off-band (it still lowers the concentration).
    """

    band_hz: float = 50.0
    n_fft: int = 4096
    floor_db: float = -120.0
    range_db: float | None = 60.0
    guard_hz: float = 100.0

    def __post_init__(self) -> None:
        # checked, not converted: scores record the config as given
        check.positive("band_hz", self.band_hz, unit="Hz")
        if not isinstance(self.n_fft, int) or check.integer("n_fft", self.n_fft, low=16) % 4:
            raise check.fail("n_fft", "an integer >= 16 and a multiple of 4", self.n_fft)
        check.number("floor_db", self.floor_db, low=-300, high=0, high_open=True, unit="dB")
        check.number_or_none("range_db", self.range_db, low=0, low_open=True, unit="dB")
        check.non_negative("guard_hz", self.guard_hz, unit="Hz")

    @property
    def floor_power(self) -> float:
        return 10.0 ** (self.floor_db / 10.0)

    def distance_floor(self, *spectra: np.ndarray) -> float:
        """``floor_db``, raised to ``range_db`` below the largest bin of ``spectra``."""
        floor = self.floor_power
        if self.range_db is not None:
            floor = max(floor, max(float(p.max()) for p in spectra) * 10.0 ** (-self.range_db / 10.0))
        return floor


def offband_distance(pp: np.ndarray, pb: np.ndarray, offband: np.ndarray, config: ScoreConfig) -> float:
    """Log-spectral distance over the off-band bins where the baseline holds energy
    (within ``range_db`` of its peak): how much the patch damaged what was there."""
    floor = config.distance_floor(pb)
    return log_spectral_distance(pp, pb, floor, offband & (pb > floor))


def as_audio(x: Any, name: str = "audio") -> np.ndarray:
    """Return ``x`` as a float64 ``[channels, samples]`` array, or raise AudioError.

    Accepts ``[samples]`` or ``[channels, samples]`` numpy arrays, lists or CPU torch tensors.
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise AudioError(f"{name} must be [samples] or [channels, samples], got shape {tuple(a.shape)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise AudioError(f"{name} is empty (shape {tuple(a.shape)})")
    if not np.isfinite(a).all():
        raise AudioError(f"{name} holds non-finite samples (NaN or inf)")
    return a


def as_audio_pair(baseline: Any, patched: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both decodes as ``[channels, samples]`` float64 arrays of the same shape."""
    b, p = as_audio(baseline, "baseline"), as_audio(patched, "patched")
    if b.shape != p.shape:
        raise AudioError(
            f"baseline and patched decodes differ in shape: {tuple(b.shape)} vs {tuple(p.shape)} "
            "([channels, samples]); score the decodes of the same input"
        )
    return b, p


def check_targets(target_hz: Sequence[float], sr: float) -> tuple[float, ...]:
    """Validate target frequencies: each must lie strictly inside (0, sr/2)."""
    if not (math.isfinite(sr) and sr > 0):
        raise SteerlabError(f"sample rate must be a finite number > 0 Hz, got {sr!r}")
    out = []
    for f in target_hz:
        f = float(f)
        if not (math.isfinite(f) and 0.0 < f < sr / 2):
            raise SteerlabError(
                f"target frequency {f!r} Hz is outside the valid range (0, {sr / 2:g}) Hz "
                f"(strictly between 0 and the Nyquist frequency of sr={sr:g})"
            )
        out.append(f)
    return tuple(out)


def _frame_starts(n_samples: int, n_fft: int) -> tuple[int, int]:
    """(left padding, number of frames) so every sample lies under all four hop-shifted windows."""
    hop = n_fft // 4
    left = n_fft - hop
    return left, (n_samples - 1 + left) // hop + 1


@lru_cache(maxsize=8)
def _hann(n_fft: int) -> tuple[np.ndarray, float]:
    """Periodic Hann window (as torch.hann_window) and the scale ``n_fft * sum(w**2)``."""
    window = np.hanning(n_fft + 1)[:-1]
    window.setflags(write=False)
    return window, float(n_fft * np.sum(window**2))


def stft(x: np.ndarray, n_fft: int) -> np.ndarray:
    """Complex one-sided spectra of the Hann-windowed frames of :func:`power_spectrogram`,
    ``[channels, frames, n_fft // 2 + 1]``, unscaled. Linear in ``x``: the STFT of a change
    ``p - b`` is ``stft(p) - stft(b)``, which lets a caller scoring many patched decodes
    against one baseline transform only the patched ones."""
    hop = n_fft // 4
    left, n_frames = _frame_starts(x.shape[1], n_fft)
    right = (n_frames - 1) * hop + n_fft - left - x.shape[1]
    padded = np.pad(x, ((0, 0), (left, right)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]
    return np.fft.rfft(frames * _hann(n_fft)[0], axis=-1)


def _power_from_stft(spec: np.ndarray, n_fft: int) -> np.ndarray:
    """``[frames, bins]`` power of :func:`stft` frames, scaled and averaged over channels."""
    power = spec.real**2 + spec.imag**2
    power /= _hann(n_fft)[1]
    power[..., 1:-1] *= 2.0  # one-sided: fold in the mirrored negative frequencies (not DC, not Nyquist)
    return power.mean(axis=0)


def power_spectrogram(x: np.ndarray, n_fft: int) -> np.ndarray:
    """One-sided power of Hann-windowed frames (hop n_fft // 4), averaged over channels.

    x: ``[channels, samples]`` float64. Returns ``[frames, n_fft // 2 + 1]``, scaled so that
    the bins of one frame sum to its window-weighted mean square, ``sum((x*w)**2) / sum(w**2)``.
    """
    return _power_from_stft(stft(x, n_fft), n_fft)


def _welch(frames_power: np.ndarray, n_fft: int, n_samples: int) -> np.ndarray:
    return frames_power.sum(axis=0) * (n_fft // 4) / n_samples


def power_spectrum(x: np.ndarray, n_fft: int) -> np.ndarray:
    """Welch-averaged one-sided power spectrum ``[n_fft // 2 + 1]`` of ``[channels, samples]``.

    The squared periodic Hann window sums to a constant over hops of n_fft / 4, so with
    the padding of :func:`power_spectrogram` every sample carries the same weight and,
    by Parseval, the bins sum exactly to the mean square of ``x`` (mean over channels).
    """
    return _welch(power_spectrogram(x, n_fft), n_fft, x.shape[1])


def band_mask(freqs: np.ndarray, f: float, band_hz: float) -> np.ndarray:
    """Boolean ``[bins]``: bins within ``f ± band_hz/2``, always including the bin nearest ``f``."""
    mask = np.abs(freqs - f) <= band_hz / 2
    mask[np.argmin(np.abs(freqs - f))] = True
    return mask


def _db(p: np.ndarray | float, floor: float) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(p, floor))


def log_spectral_distance(pa: np.ndarray, pb: np.ndarray, floor: float, mask: np.ndarray | None = None) -> float:
    """RMS over bins of the dB difference of two power spectra, in dB.

    Bins where both spectra are at or below ``floor`` are silence in both and are
    excluded; the others are floored, so a bin silent in one spectrum counts as
    the distance from the floor. No bins left: 0.
    """
    keep = (pa > floor) | (pb > floor)
    if mask is not None:
        keep &= mask
    if not keep.any():
        return 0.0
    diff = _db(pa[keep], floor) - _db(pb[keep], floor)
    return float(np.sqrt(np.mean(diff**2)))


#: why a share of the change (a concentration) is None: there is no change to share out
NO_CHANGE = "the patched output equals the baseline exactly: a change of nothing has no concentration"


def _share(p: np.ndarray, mask: np.ndarray) -> float | None:
    """Fraction of the total of ``p`` inside ``mask``; None for an all-zero spectrum (0/0: the
    caller gives :data:`NO_CHANGE` as the reason)."""
    total = float(p.sum())
    return float(p[mask].sum() / total) if total > 0 else None


def _ratio_db(num: float, den: float, floor: float) -> float:
    return float(_db(num, floor) - _db(den, floor))


def spectral_shape(p: np.ndarray, freqs: np.ndarray, floor: float) -> tuple[float, float, float]:
    """(centroid Hz, spread Hz, flatness in [0, 1]) of a power spectrum.

    A silent spectrum (total power at or below ``floor``) has all three equal to 0.
    Flatness is the geometric over the arithmetic mean of the floored power.
    """
    total = float(p.sum())
    if total <= floor:
        return 0.0, 0.0, 0.0
    centroid = float((freqs * p).sum() / total)
    spread = float(np.sqrt(((freqs - centroid) ** 2 * p).sum() / total))
    pf = np.maximum(p, floor)
    flatness = float(np.exp(np.mean(np.log(pf))) / np.mean(pf))
    return centroid, spread, flatness


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def mrstft(baseline: np.ndarray, patched: np.ndarray) -> float:
    """Multi-resolution STFT distance of patched from baseline, mean over channels.

    Clips shorter than the largest resolution are zero-padded to it first, because
    torch.stft's centred (reflect) padding needs more samples than half a window.
    """
    import torch

    from steerlab.metrics import MRSTFT_FFTS, multires_stft_distance

    min_samples = max(MRSTFT_FFTS)
    if baseline.shape[1] < min_samples:
        width = ((0, 0), (0, min_samples - baseline.shape[1]))
        baseline, patched = np.pad(baseline, width), np.pad(patched, width)

    d = multires_stft_distance(torch.from_numpy(patched), torch.from_numpy(baseline))
    return float(d.mean())


def min_samples_for_band(sr: float, band_hz: float) -> int:
    """Samples a window needs to resolve a band ``band_hz`` wide at ``sr``: about ``sr / band_hz``
    (the Rayleigh limit: a record of ``n`` samples separates frequencies ``sr / n`` apart)."""
    return math.ceil(sr / band_hz)


def resolution(n_samples: int, sr: float, config: ScoreConfig = ScoreConfig()) -> dict[str, Any]:
    """What a clip of ``n_samples`` at ``sr`` can resolve, and why not when it cannot.

    Band scores (per-target gain, band energies, concentration, off-band distances) need
    ``min_samples_for_band(sr, band_hz)`` samples; the MR-STFT distance needs one full window
    of its longest resolution (``max(MRSTFT_FFTS)`` samples); the overall spectral numbers
    (``lsd_db`` and the centroid, flatness and bandwidth shifts), computed bin by bin on the
    averaged spectrum of ``config.n_fft`` bins, need one full window of ``n_fft`` samples
    (a shorter clip is zero-padded to it, and its ``n_fft // 2 + 1`` bins then interpolate
    fewer independent values than there are bins: a 1-sample clip has a flat spectrum whatever
    it holds). Below those, the scores are ``None`` and the ``*_reason`` keys say why: a number
    computed from a zero-padded clip too short to separate the band from its neighbours would
    describe the window, not the audio.

    Two frequency spacings, in Hz: ``resolution_hz`` is ``sr / n_samples``, the finest spacing
    the whole clip could resolve (0.5 Hz for 2 s at 24 kHz); ``scoring_bin_hz`` is
    ``sr / config.n_fft``, the bin width of the averaged spectrum the band and spectral scores
    are actually computed on (5.86 Hz for the default 4096-point FFT at 24 kHz), so a target
    band's edges (``band_lo_hz``, ``band_hi_hz``) fall on multiples of it.
    """
    from steerlab.metrics import MRSTFT_FFTS

    need_band = min_samples_for_band(sr, config.band_hz)
    need_mr = max(MRSTFT_FFTS)
    need_spec = config.n_fft
    bands = n_samples >= need_band
    mr = n_samples >= need_mr
    spec = n_samples >= need_spec
    out: dict[str, Any] = {
        "n_samples": int(n_samples),
        "resolution_hz": float(sr / n_samples),
        "scoring_bin_hz": float(sr / config.n_fft),
        "band_min_samples": need_band,
        "bands_resolved": bands,
        "mrstft_min_samples": need_mr,
        "mrstft_resolved": mr,
        "spectrum_min_samples": need_spec,
        "spectrum_resolved": spec,
    }
    out["band_reason"] = (
        None
        if bands
        else (
            f"{n_samples} samples resolve only {sr / n_samples:.0f} Hz, wider than the {config.band_hz:g} Hz band; "
            f"band scores need at least {need_band} samples ({1000 * need_band / sr:.1f} ms)"
        )
    )
    out["mrstft_reason"] = (
        None if mr else (f"{n_samples} samples are shorter than the longest MR-STFT window ({need_mr} samples)")
    )
    out["spectrum_reason"] = (
        None
        if spec
        else (
            f"{n_samples} samples are shorter than the {need_spec}-sample window of the averaged spectrum "
            f"({1000 * need_spec / sr:.0f} ms): its bins would describe the zero padding, not the audio"
        )
    )
    return out


def _unresolved_target(f: float, freqs: np.ndarray, config: ScoreConfig, reason: str) -> dict[str, Any]:
    mask = band_mask(freqs, f, config.band_hz)
    return {
        "target_hz": f,
        "band_lo_hz": float(freqs[mask].min()),
        "band_hi_hz": float(freqs[mask].max()),
        "baseline_band_energy": None,
        "patched_band_energy": None,
        "gain_db": None,
        "concentration": None,
        "offband_lsd_db": None,
        "unresolved": reason,
    }


def _target_scores(
    f: float, freqs: np.ndarray, pb: np.ndarray, pp: np.ndarray, pc: np.ndarray, config: ScoreConfig
) -> dict[str, Any]:
    mask = band_mask(freqs, f, config.band_hz)
    guarded = band_mask(freqs, f, config.band_hz + 2 * config.guard_hz)
    floor = config.floor_power
    eb, ep = float(pb[mask].sum()), float(pp[mask].sum())
    concentration = _share(pc, mask)
    out: dict[str, Any] = {
        "target_hz": f,
        "band_lo_hz": float(freqs[mask].min()),
        "band_hi_hz": float(freqs[mask].max()),
        "baseline_band_energy": eb,
        "patched_band_energy": ep,
        "gain_db": _ratio_db(ep, eb, floor),
        "concentration": concentration,
        "offband_lsd_db": offband_distance(pp, pb, ~guarded, config),
    }
    if concentration is None:
        out["concentration_reason"] = NO_CHANGE
    return out


def score(
    baseline: Any,
    patched: Any,
    sr: float,
    target_hz: Sequence[float] = (),
    config: ScoreConfig = ScoreConfig(),
    multires: bool = True,
    baseline_stft: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score how ``patched`` differs from ``baseline`` (two decodes of the same input).

    baseline, patched: ``[samples]`` or ``[channels, samples]``, same shape, at ``sr`` Hz.
    target_hz: frequencies the intervention aims at, each strictly inside (0, sr/2).

    Returns a JSON-serialisable dict; every number is finite, silence included, and a
    number the clip is too short to resolve is ``None`` (see :func:`resolution`):
      sr, n_channels, n_samples, config: what was scored and how.
      resolution: :func:`resolution` of the clip; when ``bands_resolved`` is False every
        band score below (per-target energies, gain_db, concentration, offband_lsd_db, and the
        overall concentration and offband_lsd_db) is None and each target carries
        ``unresolved`` with the reason; when ``mrstft_resolved`` is False, mrstft is None; when
        ``spectrum_resolved`` is False (fewer than ``n_fft`` samples), lsd_db and the three
        shape shifts are None.
      Every None number ``K`` of this top level has a sibling ``K_reason`` saying why (a number
        present has none); a target's None numbers share its ``unresolved`` reason.
      targets: one dict per target frequency f, in order:
        target_hz; band_lo_hz, band_hi_hz: centres of the lowest and highest bins of the band;
        baseline_band_energy, patched_band_energy: summed power in the band (mean-square
          units: a sinusoid of amplitude a gives a**2/2);
        gain_db: 10*log10(patched / baseline band energy), both floored at floor_db;
        concentration: share in [0, 1] of the power spectrum of the change (patched - baseline)
          inside the band; None when nothing changed (patched == baseline exactly: 0/0), with
          ``concentration_reason`` beside it;
        offband_lsd_db: log-spectral distance between patched and baseline outside this band
          and its guard (guard_hz either side), over the bins where the baseline is within
          range_db of its peak (0 when the baseline holds nothing off-band).
      concentration: share of the change's power inside the union of all target bands; None
        without targets (there is no band for the change to concentrate in) or when nothing
        changed.
      offband_lsd_db: the same outside the union of all bands widened by guard_hz; None without
        targets (it would be lsd_db again).
      lsd_db: log-spectral distance over all bins: RMS over bins of the dB difference, in dB,
        over the bins within range_db of the louder spectrum's peak.
      mrstft: metrics.multires_stft_distance(patched, baseline), mean over channels; None when
        ``multires`` is False (it is two thirds of the scoring time, and the batch test does not
        use it) or the clip is shorter than its longest window.
      centroid_shift_hz, bandwidth_shift_hz, flatness_shift: spectral centroid, spread
        (power-weighted standard deviation of frequency) and flatness (geometric / arithmetic
        mean) of patched minus those of baseline; a silent spectrum has all three 0.
      change_rms, baseline_rms: time-domain RMS of patched - baseline and of baseline.
      snr_change_db: 20*log10(baseline_rms / change_rms), both floored at floor_db; high means
        a small change.

    ``baseline_stft``: ``stft(baseline, config.n_fft)`` of the float64 ``[channels, samples]``
    baseline, when the caller scores many patched decodes against one baseline and keeps it
    (the batch test does); the change's spectra are then ``stft(patched) - baseline_stft``.
    """
    targets = check_targets(target_hz, sr)
    b, p = as_audio_pair(baseline, patched)
    change = p - b
    n_fft, n = config.n_fft, b.shape[1]
    sb = stft(b, n_fft) if baseline_stft is None else baseline_stft
    sp = stft(p, n_fft)
    pb, pp, pc = (_welch(_power_from_stft(x, n_fft), n_fft, n) for x in (sb, sp, sp - sb))
    freqs = np.fft.rfftfreq(config.n_fft, d=1.0 / sr)
    floor = config.floor_power

    res = resolution(n, sr, config)
    if res["bands_resolved"]:
        per_target = [_target_scores(f, freqs, pb, pp, pc, config) for f in targets]
    else:
        per_target = [_unresolved_target(f, freqs, config, res["band_reason"]) for f in targets]
    union = np.zeros(freqs.shape, dtype=bool)
    guarded = np.zeros(freqs.shape, dtype=bool)
    for f in targets:
        union |= band_mask(freqs, f, config.band_hz)
        guarded |= band_mask(freqs, f, config.band_hz + 2 * config.guard_hz)

    cb, spread_b, fb = spectral_shape(pb, freqs, floor)
    cp, spread_p, fp = spectral_shape(pp, freqs, floor)
    change_rms, baseline_rms = _rms(change), _rms(b)
    amp_floor = 10.0 ** (config.floor_db / 20.0)
    # why each overall number cannot be given (None: it can)
    no_band = (
        res["band_reason"]
        if not res["bands_resolved"]
        else None
        if targets
        else "no target frequency given (-t): there is no band to measure against"
    )
    no_spec = res["spectrum_reason"]
    no_mr = res["mrstft_reason"] or (None if multires else "not computed (multires=False)")
    no_change = None if np.any(pc) else NO_CHANGE
    overall: dict[str, tuple[str | None, Any]] = {
        "concentration": (no_band or no_change, lambda: _share(pc, union)),
        "offband_lsd_db": (no_band, lambda: offband_distance(pp, pb, ~guarded, config)),
        "lsd_db": (no_spec, lambda: log_spectral_distance(pp, pb, config.distance_floor(pp, pb))),
        "mrstft": (no_mr, lambda: mrstft(b, p)),
        "centroid_shift_hz": (no_spec, lambda: cp - cb),
        "flatness_shift": (no_spec, lambda: fp - fb),
        "bandwidth_shift_hz": (no_spec, lambda: spread_p - spread_b),
    }
    out: dict[str, Any] = {
        "sr": float(sr),
        "n_channels": int(b.shape[0]),
        "n_samples": int(b.shape[1]),
        "config": asdict(config),
        "resolution": res,
        "targets": per_target,
    }
    for key, (reason, value) in overall.items():
        out[key] = None if reason else value()
        if reason:
            out[f"{key}_reason"] = reason
    out.update(
        change_rms=change_rms,
        baseline_rms=baseline_rms,
        snr_change_db=float(20.0 * np.log10(max(baseline_rms, amp_floor) / max(change_rms, amp_floor))),
    )
    return out


# -- a note's own partials: scoring an edit whose ideal is a known sound (docs/partials.md) -----------


@dataclass(frozen=True)
class NoteRule:
    """Options of :func:`note_bands` (the note-partials rule of docs/partials.md); recorded with every
    row it scores.

    local_criterion_db: a band of the note counts as *held by the note* when the note's energy there
        exceeds the context's by this many dB: the local criterion of the ideal binary mask (Wang 2005,
        "On ideal binary mask as the computational goal of auditory scene analysis"), whose standard
        value 0 dB (the note is louder than everything else there) maximises the mask's SNR gain (Li &
        Wang 2009, "On the optimality of ideal binary time-frequency masks").
    tolerance_db: the off-band distance leaves out the bins where adding or removing the ideal note
        itself could move the baseline by more than this many dB whatever its phase: the note's own
        skirt (its noise, vibrato and leakage between its partials), which the band rule's guard_hz
        leaves out for one partial. A note of power ``n`` on a bin holding ``c`` moves it by at most
        ``20 log10(1 + sqrt(n / c))`` dB adding and ``-20 log10(1 - sqrt(n / c))`` removing, so the
        guard is ``n > (1 - 10 ** (-tolerance_db / 20)) ** 2 c`` (-19.27 dB at 1 dB, the default of
        ``max_offband_db``).
    """

    local_criterion_db: float = 0.0
    tolerance_db: float = 1.0

    def __post_init__(self) -> None:
        check.number("local_criterion_db", self.local_criterion_db, low=-60.0, high=60.0)
        check.positive("tolerance_db", self.tolerance_db, unit="dB")

    @property
    def guard_ratio(self) -> float:
        """The note-to-context power ratio above which the ideal edit may move a bin by more than
        ``tolerance_db``."""
        return (1.0 - 10.0 ** (-self.tolerance_db / 20.0)) ** 2


@dataclass(frozen=True)
class NoteBands:
    """Where a known note is, on the bins of :func:`power_spectrum` (``n_fft``), from the note alone
    and the context it is added to (:func:`note_bands`). ``bands``, ``held`` and ``guard`` are
    boolean ``[n_fft // 2 + 1]``."""

    peaks_hz: tuple[float, ...]  # the note's partials: the centres of its bands
    bands: np.ndarray  # the union of every partial's band (band_hz wide)
    held: np.ndarray  # the union of the bands the note holds against the context (gain, concentration)
    guard: np.ndarray  # bins the ideal edit may move by more than tolerance_db (left out off-band)
    n_fft: int
    band_hz: float
    rule: NoteRule

    def summary(self) -> dict[str, Any]:
        """What a row records of the bands (JSON)."""
        return {
            "rule": "note_partials",
            "note_partials": len(self.peaks_hz),
            "note_band_bins": int(self.bands.sum()),
            "note_held_bins": int(self.held.sum()),
            "note_guard_bins": int(self.guard.sum()),
            "note_local_criterion_db": self.rule.local_criterion_db,
            "note_tolerance_db": self.rule.tolerance_db,
        }


def spectral_peaks(p: np.ndarray, freqs: np.ndarray, band_hz: float, floor: float) -> np.ndarray:
    """Indices of the bins of ``p`` that are the largest of every bin within ``band_hz / 2`` of them
    (a peak resolved at the band's width: one per partial, not one per sidelobe) and above ``floor``."""
    half = int(np.floor((band_hz / 2) / (freqs[1] - freqs[0]))) if len(freqs) > 1 else 0
    padded = np.pad(p, half, constant_values=-np.inf)
    local = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1).max(axis=1)
    return np.flatnonzero((p >= local) & (p > floor))


def note_bands(
    note: Any, context: Any, sr: float, config: ScoreConfig = ScoreConfig(), rule: NoteRule = NoteRule()
) -> NoteBands:
    """The bands of a known note (the ideal edit of an ``instrument`` pair: the target note rendered
    alone) in the context it is added to (the pair's without-note signal), on the Welch-averaged
    spectra of :func:`power_spectrum` (``config.n_fft``):

    - its *partials*: the bins of the note's spectrum that are the largest within ``band_hz / 2``
      (:func:`spectral_peaks`) and within ``range_db`` of its largest bin (the scorer's dynamic-range
      convention: a bin farther below the peak is silence); each has the band rule's band
      (:func:`band_mask`, ``band_hz``) around it. One sinusoid has one partial and the band rule's band.
    - *held* bands: those where the note's energy exceeds the context's by ``rule.local_criterion_db``
      (the ideal binary mask, at band resolution): where the note can be heard as itself. Gain and
      concentration are measured there.
    - *guard*: the bins where the note's power exceeds ``rule.guard_ratio`` times the context's (the
      ideal edit may move them by more than ``tolerance_db``), left out of the off-band distance.

    note, context: ``[samples]`` or ``[channels, samples]``, the same length, at ``sr`` Hz; raises
    AudioError on empty, non-finite or mismatched input."""
    n, c = as_audio(note, "note"), as_audio(context, "context")
    if n.shape != c.shape:
        raise AudioError(
            f"note and context differ in shape: {tuple(n.shape)} vs {tuple(c.shape)} ([channels, samples])"
        )
    if not (math.isfinite(sr) and sr > 0):
        raise SteerlabError(f"sample rate must be a finite number > 0 Hz, got {sr!r}")
    pn, pc = power_spectrum(n, config.n_fft), power_spectrum(c, config.n_fft)
    freqs = np.fft.rfftfreq(config.n_fft, d=1.0 / sr)
    peaks = spectral_peaks(pn, freqs, config.band_hz, config.distance_floor(pn))
    bands = np.zeros(freqs.shape, dtype=bool)
    held = np.zeros(freqs.shape, dtype=bool)
    lc = 10.0 ** (rule.local_criterion_db / 10.0)
    for k in peaks:
        mask = band_mask(freqs, float(freqs[k]), config.band_hz)
        bands |= mask
        if pn[mask].sum() > lc * pc[mask].sum():
            held |= mask
    guard = pn > rule.guard_ratio * pc
    for a in (bands, held, guard):
        a.setflags(write=False)
    return NoteBands(tuple(float(freqs[k]) for k in peaks), bands, held, guard, config.n_fft, config.band_hz, rule)


def score_note(
    baseline: Any,
    patched: Any,
    sr: float,
    note: NoteBands,
    config: ScoreConfig = ScoreConfig(),
    baseline_stft: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score ``patched`` against ``baseline`` where the ideal edit is a known note whose
    :func:`note_bands` are ``note`` (the note-partials rule of docs/partials.md): the band rule of
    :func:`score` applied to the note's own partials.

    baseline, patched: ``[samples]`` or ``[channels, samples]``, same shape, at ``sr`` Hz.
    note: :func:`note_bands` with the same ``n_fft`` (raises AudioError otherwise).
    baseline_stft: as in :func:`score`.

    Returns a JSON-serialisable dict:
      gain_db: 10 log10(patched / baseline energy in the held bands), both floored at floor_db;
      concentration: share of the change's (patched - baseline) power in the held bands; None when
        nothing changed, with ``concentration_reason`` beside it;
      offband_lsd_db: :func:`offband_distance` outside every band of the note and its guard (bins where
        the baseline is within range_db of its peak);
      baseline_band_energy, patched_band_energy (mean-square units), ``note``
        (:meth:`NoteBands.summary`), and, as :func:`score`, sr, n_channels, n_samples, config,
        resolution, lsd_db, change_rms, baseline_rms, snr_change_db. When the clip cannot resolve bands
        (:func:`resolution`) or the note holds no band, gain_db, concentration and offband_lsd_db are
        None and ``unresolved`` says why.
    """
    b, p = as_audio_pair(baseline, patched)
    if not (math.isfinite(sr) and sr > 0):
        raise SteerlabError(f"sample rate must be a finite number > 0 Hz, got {sr!r}")
    n_fft, n = config.n_fft, b.shape[1]
    if note.n_fft != n_fft or note.bands.shape != (n_fft // 2 + 1,):
        raise AudioError(f"note bands were measured with n_fft {note.n_fft}, the decodes are scored with {n_fft}")
    sb = stft(b, n_fft) if baseline_stft is None else baseline_stft
    sp = stft(p, n_fft)
    pb, pp, pc = (_welch(_power_from_stft(x, n_fft), n_fft, n) for x in (sb, sp, sp - sb))
    res = resolution(n, sr, config)
    reason = (
        res["band_reason"]
        if not res["bands_resolved"]
        else (None if note.held.any() else "the note holds none of its bands against the context")
    )
    eb, ep = float(pb[note.held].sum()), float(pp[note.held].sum())
    out: dict[str, Any] = {"gain_db": None, "concentration": None, "offband_lsd_db": None}
    if reason is None:
        out = {
            "gain_db": _ratio_db(ep, eb, config.floor_power),
            "concentration": _share(pc, note.held),
            "offband_lsd_db": offband_distance(pp, pb, ~(note.bands | note.guard), config),
        }
        if out["concentration"] is None:
            out["concentration_reason"] = NO_CHANGE
    change_rms, baseline_rms = _rms(p - b), _rms(b)
    amp_floor = 10.0 ** (config.floor_db / 20.0)
    return {
        "sr": float(sr),
        "n_channels": int(b.shape[0]),
        "n_samples": int(n),
        "config": asdict(config),
        "resolution": res,
        **out,
        "unresolved": reason,
        "baseline_band_energy": eb,
        "patched_band_energy": ep,
        "note": note.summary(),
        "lsd_db": log_spectral_distance(pp, pb, config.distance_floor(pp, pb)),
        "change_rms": change_rms,
        "baseline_rms": baseline_rms,
        "snr_change_db": float(20.0 * np.log10(max(baseline_rms, amp_floor) / max(change_rms, amp_floor))),
    }


# -- output checks: patched outputs that clip or explode -----------------------------------------

FULL_SCALE = 1.0  # float audio beyond +-1 clips when written as PCM or played
LEVEL_JUMP_DB = 20.0  # a patched window this much louder than the baseline's (x10 in amplitude) is flagged
LEVEL_WINDOW_S = 0.05
LEVEL_FLOOR_DB = -60.0  # window levels are floored here, so steering in near-silence is measured from it


def output_check(baseline: Any, patched: Any, sr: float) -> dict[str, Any]:
    """Does the patched decode clip, or jump in level against the baseline?

    baseline, patched: ``[samples]`` or ``[channels, samples]`` at ``sr`` Hz.
    Returns ``peak`` (max |patched|), ``clipped_samples`` (samples beyond ``FULL_SCALE``),
    ``baseline_peak`` and ``baseline_clipped_samples`` (the same of the unpatched decode: a model
    that clips on its own is not the patch's doing), ``patch_clipped_samples`` (samples beyond
    full scale in the patched decode but not in the baseline),
    ``level_jump_db``: the largest rise, over consecutive ``LEVEL_WINDOW_S`` windows, of the
    patched RMS level above the baseline's (dBFS, both floored at ``LEVEL_FLOOR_DB``), and
    ``flags``: ``"clips"`` when any sample exceeds full scale, ``"level_jump"`` when the
    jump exceeds ``LEVEL_JUMP_DB``, ``"baseline_clips"`` when the unpatched decode itself clips;
    ``message`` says what in one line (None when no flag).
    """
    b, p = as_audio_pair(baseline, patched)
    peak = float(np.abs(p).max())
    over_p, over_b = np.abs(p) > FULL_SCALE, np.abs(b) > FULL_SCALE
    clipped = int(np.count_nonzero(over_p))
    base = (float(np.abs(b).max()), int(np.count_nonzero(over_b)), int(np.count_nonzero(over_p & ~over_b)))
    win = max(1, int(round(LEVEL_WINDOW_S * sr)))
    n = -(-b.shape[1] // win) * win

    def levels(x: np.ndarray) -> np.ndarray:
        x = np.pad(x, ((0, 0), (0, n - x.shape[1])))
        ms = (x.reshape(x.shape[0], -1, win) ** 2).mean(axis=(0, 2))
        return 10 * np.log10(np.maximum(ms, 10 ** (LEVEL_FLOOR_DB / 10)))

    jump = float((levels(p) - levels(b)).max())
    return _check_doc(peak, clipped, jump, *base)


def _check_doc(
    peak: float, clipped: int, jump: float, baseline_peak: float, baseline_clipped: int, patch_clipped: int
) -> dict[str, Any]:
    flags = (
        (["clips"] if clipped else [])
        + (["level_jump"] if jump > LEVEL_JUMP_DB else [])
        + (["baseline_clips"] if baseline_clipped else [])
    )
    parts = []
    if patch_clipped or jump > LEVEL_JUMP_DB:
        if clipped:
            parts.append(
                f"the patched output clips ({clipped} samples beyond full scale, {patch_clipped} of them "
                f"where the baseline does not; peak {peak:.2f})"
            )
        if jump > LEVEL_JUMP_DB:
            parts.append(
                f"its level jumps {jump:.1f} dB above the baseline's (over {1000 * LEVEL_WINDOW_S:g} ms "
                f"windows; flagged above {LEVEL_JUMP_DB:g} dB)"
            )
        parts[-1] += "; lower --alpha or shorten the span"
    elif clipped:
        parts.append(
            f"the patched output clips ({clipped} samples beyond full scale, peak {peak:.2f}) only where "
            "the baseline does"
        )
    if baseline_clipped:
        parts.append(
            f"the baseline (unpatched) decode itself clips ({baseline_clipped} samples beyond full scale, "
            f"peak {baseline_peak:.2f}): the model, not the patch; lower the input's level to avoid it"
        )
    return {
        "peak": peak,
        "clipped_samples": clipped,
        "patch_clipped_samples": patch_clipped,
        "baseline_peak": baseline_peak,
        "baseline_clipped_samples": baseline_clipped,
        "level_jump_db": jump,
        "full_scale": FULL_SCALE,
        "level_jump_limit_db": LEVEL_JUMP_DB,
        "level_window_s": LEVEL_WINDOW_S,
        "flags": flags,
        "message": "; ".join(parts) if parts else None,
    }


def merge_output_checks(checks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One :func:`output_check` for a chunked input: the largest peaks and jump, the clipped samples summed
    (samples in chunk overlaps may count twice)."""
    return _check_doc(
        max(c["peak"] for c in checks),
        sum(c["clipped_samples"] for c in checks),
        max(c["level_jump_db"] for c in checks),
        max(c["baseline_peak"] for c in checks),
        sum(c["baseline_clipped_samples"] for c in checks),
        sum(c["patch_clipped_samples"] for c in checks),
    )
