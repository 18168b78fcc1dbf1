"""Pictures of a steering intervention, for reports and for eyeballing a verdict.

:func:`spectrogram_figure` draws the baseline decode, the patched decode and their
difference in dB, with the target frequencies marked, so one glance tells whether
a change landed on the intended partial or smeared across the spectrum. It uses
the same framing and power scaling as :mod:`steerlab.scoring`; frequency runs on a
logarithmic axis (musical content sits in the lowest octaves), every colour scale has
a colour bar, and titles are wrapped to fit (:mod:`steerlab.reporting`). :func:`class_figure`
draws a classifier's class probabilities before and after a patch. matplotlib is
imported inside the functions (Agg canvas, no pyplot, no global backend switch),
so importing steerlab stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steerlab import reporting
from steerlab.errors import OutputError
from steerlab.scoring import as_audio_pair, check_targets, power_spectrogram

N_FFT = 1024  # about 43 ms at 24 kHz: enough time resolution for transients, 23 Hz bins
FLOOR_DB = -120.0
DYNAMIC_RANGE_DB = 100.0


def spectrogram_db(x: np.ndarray, n_fft: int = N_FFT) -> np.ndarray:
    """Power spectrogram in dB, ``[bins, frames]`` (frequency on the first axis), of ``[channels, samples]``."""
    power = power_spectrogram(x, n_fft)
    return 10.0 * np.log10(np.maximum(power, 10.0 ** (FLOOR_DB / 10.0))).T


def _diff_limit(diff: np.ndarray) -> float:
    """Symmetric colour limit for the difference panel: robust to a few extreme bins, at least 1 dB."""
    return max(float(np.percentile(np.abs(diff), 99.5)), 1.0)


def _edges(n_frames: int, n_bins: int, sr: float) -> tuple[np.ndarray, np.ndarray]:
    """pcolormesh edges placing each cell on its frame's centre time and its bin's centre frequency."""
    hop = N_FFT // 4
    # frame k starts at (k + 1) * hop - N_FFT (the padding of power_spectrogram), so it is
    # centred at (k + 1) * hop - N_FFT / 2; a cell spans one hop around that centre
    t0 = (hop / 2 - N_FFT / 2) / sr
    times = t0 + np.arange(n_frames + 1) * hop / sr
    freqs = (np.arange(n_bins + 1) - 0.5) * sr / N_FFT
    return times, freqs


def lowest_hz(sr: float) -> float:
    """The bottom of the log frequency axis: the first bin above DC, or 20 Hz if that is lower."""
    return max(sr / N_FFT, 20.0)


def _draw_panel(fig: Any, ax: Any, image: np.ndarray, edges: tuple, label: str, **mesh: Any) -> None:
    times, freqs = edges
    # the DC bin has no place on a log axis; every other bin is drawn from its lower edge up
    shown = ax.pcolormesh(times, freqs[1:], image[1:], shading="flat", rasterized=True, **mesh)
    fig.colorbar(shown, ax=ax, label="dB")
    ax.set_title(label)
    ax.set_ylabel("frequency (Hz, log)")


def _mark_targets(ax: Any, targets: Sequence[float], color: str) -> None:
    for f in targets:
        ax.axhline(f, linestyle="--", linewidth=0.9, color=color, alpha=0.9)


def spectrogram_figure(
    baseline: Any,
    patched: Any,
    sr: float,
    path: str | Path,
    target_hz: Sequence[float] = (),
    title: str = "",
) -> None:
    """Write a PNG of three spectrograms: baseline, patched, and patched dB minus baseline dB.

    baseline, patched: ``[samples]`` or ``[channels, samples]`` of the same shape, at ``sr`` Hz
    (channels are mixed by averaging power, as in scoring). target_hz: frequencies marked with
    dashed horizontal lines, each strictly inside (0, sr/2). The file is written atomically.
    """
    targets = check_targets(target_hz, sr)
    b, p = as_audio_pair(baseline, patched)
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write figure {str(path)!r}: folder {str(path.parent)!r} does not exist")

    sb, sp = spectrogram_db(b), spectrogram_db(p)
    diff = sp - sb
    edges = _edges(sb.shape[1], sb.shape[0], sr)
    top = max(float(sb.max()), float(sp.max()))
    level = {"vmin": top - DYNAMIC_RANGE_DB, "vmax": top, "cmap": "magma"}
    limit = _diff_limit(diff)

    fig = reporting.new_figure(figsize=(8, 9), dpi=100)
    axes = fig.subplots(3, 1, sharex=True, sharey=True)
    _draw_panel(fig, axes[0], sb, edges, "baseline", **level)
    _draw_panel(fig, axes[1], sp, edges, "patched", **level)
    _draw_panel(fig, axes[2], diff, edges, "patched − baseline", cmap="RdBu_r", vmin=-limit, vmax=limit)
    for ax, color in zip(axes, ("cyan", "cyan", "black")):  # visible on magma and on RdBu
        ax.set_xlim(0.0, b.shape[1] / sr)
        reporting.log_frequency(ax, lowest_hz(sr), sr / 2, axis="y")
        _mark_targets(ax, targets, color)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    reporting.save_png(fig, path)


def class_figure(scores: dict[str, Any], path: Path, title: str = "") -> None:
    """A bar chart of class probabilities before and after the patch (PNG, written atomically);
    ``scores``: :func:`steerlab.classifier.classification_scores`'s result."""
    rows = scores["classes"]
    x = np.arange(len(rows))
    fig = reporting.new_figure(figsize=(max(4.0, 0.5 * len(rows) + 2.0), 3.5), dpi=100)
    ax = fig.subplots()
    ax.bar(x - 0.2, [r["baseline_prob"] for r in rows], 0.4, label="baseline")
    ax.bar(x + 0.2, [r["patched_prob"] for r in rows], 0.4, label="patched")
    ax.set_xticks(
        x, [r["class"] for r in rows], rotation=45 if len(rows) > 6 else 0, ha="right" if len(rows) > 6 else "center"
    )
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("probability")
    ax.legend()
    ax.set_title(title + (f"\nKL {scores['kl_divergence']:.3g} nats" if title else ""))
    reporting.save_png(fig, path)
