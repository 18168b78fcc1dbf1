"""The ``pitch_salience`` scorer: how a patch changed a pitch salience, per target frequency.

Any model whose output is a pitch salience ``[bins, frames]`` can use it by declaring, on
the model: ``has_decoder = False``, ``output_kind = "pitch_salience"``,
``output_bins_hz`` (the centre frequency of each bin, increasing, log-spaced or not),
``output_frame_rate`` (columns per second) and ``output_frame_offset_s`` (the time of
column 0). Nothing here names a model.

Per target ``f`` the band is every bin within ``BAND_CENTS`` (50) cents of ``f`` (5 bins
on CREPE's 20-cent grid). With ``b``, ``p`` the baseline and patched salience:

- ``baseline_band_salience`` / ``patched_band_salience``: the band's peak salience per
  frame (max over its bins), averaged over frames; ``gain`` = patched - baseline (salience
  units) and ``gain_db`` = ``10 log10`` of their ratio (floored at ``FLOOR``);
- ``concentration``: ``sum_band (p - b)^2 / sum_all (p - b)^2``, the share of the change's
  energy inside the band (null with a reason when nothing changed);
- ``offband_rms_change`` / ``offband_max_abs_change``: the change in every other bin;
- ``offband_db``: the salience counterpart of the audio scorer's off-band distance (damage
  to what the baseline holds off the target): over the cells (bin, frame) farther than
  ``GUARD_CENTS`` from the target where the baseline holds a pitch (salience >=
  ``VOICING_THRESHOLD``), the RMS of ``10 log10(p / b)`` (salience as a power-like quantity,
  as in ``gain_db``; ``p`` floored at ``FLOOR``); 0 when the baseline holds no pitch there.
  Salience the patch creates where the baseline held none is what ``concentration``
  measures, as in :mod:`steerlab.scoring`;
- the decoded pitch track before and after: per frame, the salience-weighted mean of the
  bins within 4 of the peak bin, in cents on a log scale (Kim et al. 2018, section 2.1),
  as Hz; ``periodicity`` is the peak salience (the voicing confidence), ``voiced`` =
  periodicity >= ``VOICING_THRESHOLD``; ``frames_at_target_*`` counts voiced frames whose
  pitch lies within the band. A target outside the bins' range gives nulls with a reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from steerlab.errors import SteerlabError

OUTPUT_KIND = "pitch_salience"
BAND_CENTS = 50.0
# a sigmoid salience's midpoint: a bin is voiced when more likely present than not
VOICING_THRESHOLD = 0.5
LOCAL_BINS = 4  # bins each side of the peak averaged by the pitch decoder
FLOOR = 1e-6
# Off-band cells lie farther than this from the target: the band (50 cents) plus a guard of
# 50 cents, 4 standard deviations of the 25-cent Gaussian blur CREPE's training targets have
# (Kim et al. 2018, section 2.2), so the skirt of the target's own salience stays out.
GUARD_CENTS = 100.0


def _cents(hz: np.ndarray | float) -> np.ndarray:
    return 1200.0 * np.log2(np.asarray(hz, dtype=np.float64) / 10.0)


def decode_pitch(salience: np.ndarray, bins_hz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pitch (Hz) and periodicity of each frame of ``salience [bins, frames]``.

    The pitch is the salience-weighted mean, in cents, of the ``LOCAL_BINS`` bins each side
    of the peak bin (the local weighted average of Kim et al. 2018); the periodicity is the
    peak salience. Returns two arrays ``[frames]``; a frame with zero salience everywhere
    has pitch NaN."""
    s = np.asarray(salience, dtype=np.float64)
    cents = _cents(bins_hz)
    peak = s.argmax(0)
    idx = np.arange(s.shape[0])[:, None]
    mask = np.abs(idx - peak[None, :]) <= LOCAL_BINS
    w = np.where(mask, s, 0.0)
    total = w.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (w * cents[:, None]).sum(0) / total
    return np.where(total > 0, 10.0 * 2.0 ** (c / 1200.0), np.nan), s.max(0)


def _band(bins_hz: np.ndarray, f: float) -> np.ndarray:
    return np.abs(_cents(bins_hz) - _cents(f)) <= BAND_CENTS + 1e-9


def _track(hz: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(x) else round(float(x), 3) for x in hz]


def _target(b: np.ndarray, p: np.ndarray, bins_hz: np.ndarray, f: float, tracks: dict) -> dict[str, Any]:
    band = _band(bins_hz, f)
    row: dict[str, Any] = {"target_hz": f, "band_cents": BAND_CENTS}
    if not band.any():
        reason = (
            f"{f:g} Hz is outside the salience bins' range ({bins_hz[0]:.1f} to {bins_hz[-1]:.1f} Hz, "
            f"+-{BAND_CENTS:g} cents)"
        )
        return {
            **row,
            "band_bins": [],
            "baseline_band_salience": None,
            "patched_band_salience": None,
            "gain": None,
            "gain_db": None,
            "concentration": None,
            "offband_rms_change": None,
            "offband_max_abs_change": None,
            "offband_db": None,
            "offband_cells": None,
            "frames_at_target_before": None,
            "frames_at_target_after": None,
            "reason": reason,
        }
    d = p - b
    bb, pb = float(b[band].max(0).mean()), float(p[band].max(0).mean())
    energy = float((d**2).sum())
    off = d[~band]
    held = (np.abs(_cents(bins_hz) - _cents(f)) > GUARD_CENTS)[:, None] & (b >= VOICING_THRESHOLD)
    ratio = np.log10(np.maximum(p[held], FLOOR) / b[held]) * 10.0

    def at_target(hz: np.ndarray, voiced: np.ndarray) -> int:
        ok = voiced & np.isfinite(hz)
        return int(np.sum(ok & (np.abs(_cents(np.where(ok, hz, 1.0)) - _cents(f)) <= BAND_CENTS)))

    return {
        **row,
        "band_bins": [int(i) for i in np.flatnonzero(band)],
        "baseline_band_salience": bb,
        "patched_band_salience": pb,
        "gain": pb - bb,
        "gain_db": 10.0 * math.log10(max(pb, FLOOR) / max(bb, FLOOR)),
        "concentration": float((d[band] ** 2).sum()) / energy if energy > 0 else None,
        **({} if energy > 0 else {"reason": "the patch changed no salience value"}),
        "offband_rms_change": float(np.sqrt(np.mean(off**2))) if off.size else None,
        "offband_max_abs_change": float(np.abs(off).max()) if off.size else None,
        "offband_db": float(np.sqrt(np.mean(ratio**2))) if ratio.size else 0.0,
        "offband_cells": int(held.sum()),
        "frames_at_target_before": at_target(tracks["before"], tracks["voiced_before"]),
        "frames_at_target_after": at_target(tracks["after"], tracks["voiced_after"]),
    }


def score_salience(
    baseline: np.ndarray,
    patched: np.ndarray,
    bins_hz: np.ndarray,
    frame_rate: float,
    frame_offset_s: float,
    target_hz: Sequence[float],
) -> dict[str, Any]:
    """Scores of one pair of saliences ``[bins, frames]`` (``bins_hz`` ``[bins]``: each bin's
    centre frequency; ``frame_rate`` in frames per second; ``frame_offset_s``: the time of
    frame 0). Raises ``SteerlabError`` on arrays of different or wrong shapes."""
    b = np.asarray(baseline, dtype=np.float64)
    p = np.asarray(patched, dtype=np.float64)
    bins_hz = np.asarray(bins_hz, dtype=np.float64)
    if b.ndim != 2 or b.shape != p.shape or b.shape[0] != bins_hz.size:
        raise SteerlabError(f"salience must be two [bins={bins_hz.size}, frames] arrays; got {b.shape} and {p.shape}")
    hz_b, per_b = decode_pitch(b, bins_hz)
    hz_p, per_p = decode_pitch(p, bins_hz)
    vb, vp = per_b >= VOICING_THRESHOLD, per_p >= VOICING_THRESHOLD
    tracks = {"before": hz_b, "after": hz_p, "voiced_before": vb, "voiced_after": vp}
    both = vb & vp & np.isfinite(hz_b) & np.isfinite(hz_p)
    shift = _cents(np.where(both, hz_p, 1.0)) - _cents(np.where(both, hz_b, 1.0))
    d = p - b
    return {
        "output_kind": OUTPUT_KIND,
        "frames": int(b.shape[1]),
        "frame_rate_hz": frame_rate,
        "targets": [_target(b, p, bins_hz, float(f), tracks) for f in target_hz],
        "rms_change": float(np.sqrt(np.mean(d**2))) if d.size else 0.0,
        "max_abs_change": float(np.abs(d).max()) if d.size else 0.0,
        "median_pitch_shift_cents": float(np.median(shift[both])) if both.any() else None,
        **({} if both.any() else {"median_pitch_shift_reason": "no frame is voiced both before and after"}),
        "voicing_threshold": VOICING_THRESHOLD,
        "pitch_track": {
            "times_s": [round(frame_offset_s + i / frame_rate, 6) for i in range(b.shape[1])],
            "before_hz": _track(hz_b),
            "after_hz": _track(hz_p),
            "periodicity_before": [round(float(x), 5) for x in per_b],
            "periodicity_after": [round(float(x), 5) for x in per_p],
            "voiced_before": [bool(x) for x in vb],
            "voiced_after": [bool(x) for x in vp],
        },
    }


def pitch_salience(
    baseline: np.ndarray, patched: np.ndarray, sample_rate: int, target_hz: Sequence[float], model: Any = None
) -> dict[str, Any]:
    """The registered scorer: :func:`score_salience` with the bins and frame timing the model
    declares (``output_bins_hz``, ``output_frame_rate``, ``output_frame_offset_s``)."""
    if model is None or getattr(model, "output_bins_hz", None) is None:
        raise SteerlabError(
            "the pitch_salience scorer needs the model's output_bins_hz; "
            "it scores models whose output_kind is 'pitch_salience'"
        )
    return score_salience(
        baseline,
        patched,
        model.output_bins_hz,
        float(model.output_frame_rate),
        float(getattr(model, "output_frame_offset_s", 0.0)),
        target_hz,
    )
