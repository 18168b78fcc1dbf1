"""Pictures of a steering intervention, for reports and for eyeballing a verdict.

:func:`spectrogram_figure` draws the baseline decode, the patched decode and their
difference in dB, with the target frequencies marked, so one glance tells whether
a change landed on the intended partial or smeared across the spectrum. It uses
the same framing and power scaling as :mod:`steerlab.scoring`. :func:`class_figure`
draws a classifier's class probabilities before and after a patch. matplotlib is
imported inside the functions (Agg canvas, no pyplot, no global backend switch),
so importing steerlab stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.artifacts import atomic_path
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


def _extent(n_frames: int, sr: float) -> list[float]:
    """imshow extent placing each pixel on its frame's centre time and its bin's centre frequency."""
    hop = N_FFT // 4
    # frame k starts at (k + 1) * hop - N_FFT (the padding of power_spectrogram), so it is
    # centred at (k + 1) * hop - N_FFT / 2; a pixel spans one hop around that centre
    t0 = (hop / 2 - N_FFT / 2) / sr
    half_bin = sr / (2 * N_FFT)
    return [t0, t0 + n_frames * hop / sr, -half_bin, sr / 2 + half_bin]


def _draw_panel(fig: Any, ax: Any, image: np.ndarray, extent: list[float], label: str, **imshow: Any) -> None:
    shown = ax.imshow(image, origin="lower", aspect="auto", extent=extent, interpolation="nearest", **imshow)
    fig.colorbar(shown, ax=ax, label="dB")
    ax.set_title(label)
    ax.set_ylabel("frequency (Hz)")


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

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sb, sp = spectrogram_db(b), spectrogram_db(p)
    diff = sp - sb
    extent = _extent(sb.shape[1], sr)
    top = max(float(sb.max()), float(sp.max()))
    level = {"vmin": top - DYNAMIC_RANGE_DB, "vmax": top, "cmap": "magma"}
    limit = _diff_limit(diff)

    fig = Figure(figsize=(8, 9), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True, sharey=True)
    _draw_panel(fig, axes[0], sb, extent, "baseline", **level)
    _draw_panel(fig, axes[1], sp, extent, "patched", **level)
    _draw_panel(fig, axes[2], diff, extent, "patched − baseline", cmap="RdBu_r", vmin=-limit, vmax=limit)
    for ax, color in zip(axes, ("cyan", "cyan", "black")):  # visible on magma and on RdBu
        ax.set_xlim(0.0, b.shape[1] / sr)
        ax.set_ylim(0.0, sr / 2)
        _mark_targets(ax, targets, color)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        fig.clear()  # not registered with pyplot, so nothing else holds it once cleared


def class_figure(scores: dict[str, Any], path: Path, title: str = "") -> None:
    """A bar chart of class probabilities before and after the patch (PNG, written atomically);
    ``scores``: :func:`steerlab.classifier.classification_scores`'s result."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = scores["classes"]
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(4.0, 0.5 * len(rows) + 2.0), 3.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
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
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        fig.clear()
