"""One PNG per analysis, returned as bytes for the self-contained HTML report.

Figures come from :mod:`steerlab.reporting` (Agg canvas, no pyplot, no global backend;
titles wrapped to fit their axes), so importing steerlab stays cheap. Every colour scale
has a colour bar, and spectra use a logarithmic frequency axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from steerlab import reporting


def _figure(w: float, h: float, cols: int = 1, rows: int = 1):
    return reporting.figure(w, h, rows=rows, cols=cols, dpi=90)


def _png(fig: Any) -> bytes:
    return reporting.png(fig)


def coverage(best: np.ndarray, curve: dict[str, Any], random_curve: dict[str, Any], threshold: float) -> bytes:
    fig, ax = _figure(10, 3.6, cols=2)
    ax[0, 0].hist(best, bins=50, range=(-1, 1), color="tab:blue")
    ax[0, 0].axvline(threshold, color="k", ls="--", label=f"threshold {threshold:g}")
    ax[0, 0].set(xlabel="cosine with the nearest direction", ylabel="vectors", title="best cosine per vector")
    ax[0, 0].legend()
    ax[0, 1].plot(curve["thresholds"], curve["share_covered"], "o-", label="dictionary")
    ax[0, 1].plot(
        random_curve["thresholds"],
        random_curve["share_covered"],
        "s--",
        color="gray",
        label="random directions (same number)",
    )
    ax[0, 1].axvline(threshold, color="k", ls="--")
    ax[0, 1].set(xlabel="cosine threshold", ylabel="share of vectors covered", title="coverage vs threshold")
    ax[0, 1].legend()
    return _png(fig)


def reconstruction(
    ms: Sequence[int], curves: Mapping[str, Sequence[float]], top_n: int, example: dict[str, Any]
) -> bytes:
    fig, ax = _figure(11, 3.8, cols=2)
    for name, ys in curves.items():
        ax[0, 0].semilogy(
            ms, np.maximum(np.asarray(ys, dtype=float), 1e-18), label=name, ls="--" if "random" in name else "-"
        )
    ax[0, 0].axvline(top_n, color="k", ls=":", label=f"m = {top_n}")
    ax[0, 0].set(
        xlabel="directions used (m, most used first)",
        ylabel="relative squared error",
        title="(a) reconstruction error vs number of directions",
    )
    ax[0, 0].legend(fontsize=8)
    x = np.arange(len(example["original"]))
    ax[0, 1].bar(x - 0.2, example["original"], 0.4, label="original")
    ax[0, 1].bar(x + 0.2, example["reconstruction"], 0.4, label=f"{example['m']} directions")
    ax[0, 1].set(xlabel="channel", ylabel="value", title="(b) one vector and its reconstruction")
    ax[0, 1].legend()
    return _png(fig)


def usage(curves: dict[str, Sequence[float]], top_n: int, title: str) -> bytes:
    fig, ax = _figure(7, 3.8)
    for name, ys in curves.items():
        ax[0, 0].plot(np.arange(1, len(ys) + 1), ys, marker=".", label=name, ls="--" if "retrained" in name else "-")
    ax[0, 0].axvline(top_n, color="k", ls=":", label=f"rank {top_n}")
    ax[0, 0].set(xlabel="rank", ylabel="share of vectors strongly active", title=title)
    ax[0, 0].legend(fontsize=8)
    return _png(fig)


def redundancy(matrix: np.ndarray, ids: Sequence[int], examples: dict[int, np.ndarray]) -> bytes:
    fig, ax = _figure(12, 4.2, cols=1 + len(examples))
    im = ax[0, 0].imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
    ax[0, 0].set_xticks(range(len(ids)), [str(i) for i in ids], rotation=90, fontsize=6)
    ax[0, 0].set_yticks(range(len(ids)), [str(i) for i in ids], fontsize=6)
    ax[0, 0].set_title(f"cosine of the {len(ids)} most used")
    fig.colorbar(im, ax=ax[0, 0])
    for a, (i, v) in zip(ax[0, 1:], examples.items()):
        a.bar(np.arange(len(v)), v, color=np.where(np.asarray(v) >= 0, "tab:red", "tab:blue"))
        a.set(xlabel="channel", title=f"direction {i}")
    return _png(fig)


def stability(pairs: Sequence[dict[str, Any]], random_mean: float) -> bytes:
    fig, ax = _figure(7, 3.6)
    labels = [f"{p['a']} vs {p['b']}" for p in pairs]
    x = np.arange(len(pairs))
    ax[0, 0].bar(x - 0.2, [p["top_vs_top"] for p in pairs], 0.4, label="top-N vs top-N")
    ax[0, 0].bar(x + 0.2, [p["top_vs_all"] for p in pairs], 0.4, label="top-N vs all")
    ax[0, 0].axhline(random_mean, color="gray", ls="--", label="random directions")
    ax[0, 0].set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    ax[0, 0].set(
        ylabel="mean matched cosine",
        ylim=(min(0, random_mean - 0.1), 1.05),
        title="Hungarian-matched cosine between seeds",
    )
    ax[0, 0].legend(fontsize=8)
    return _png(fig)


def dependence(curves: dict[str, Sequence[float]], alignment: dict[str, float | None], top_n: int, title: str) -> bytes:
    fig, ax = _figure(11, 3.8, cols=2)
    for name, ys in curves.items():
        ax[0, 0].plot(np.arange(1, len(ys) + 1), ys, marker=".", label=name, ls="--" if "retrained" in name else "-")
    ax[0, 0].axvline(top_n, color="k", ls=":")
    ax[0, 0].set(xlabel="rank", ylabel="share of vectors strongly active", title=f"(a) {title}: usage")
    ax[0, 0].legend(fontsize=7)
    names = list(alignment)
    ax[0, 1].bar(names, [alignment[n] if alignment[n] is not None else 0 for n in names], color="tab:green")
    ax[0, 1].set(ylabel=f"mean top-1 cosine (top {top_n})", ylim=(0, 1.05), title="(b) alignment with the baseline")
    return _png(fig)


def locality(
    table: Sequence[dict[str, Any]], accuracy: float | None, chance: float | None, majority: float | None
) -> bytes:
    fig, ax = _figure(11, 3.8, cols=2)
    names = ["logistic regression", "chance (1/classes)", "chance (majority)"]
    ax[0, 0].bar(names, [v or 0 for v in (accuracy, chance, majority)], color=["tab:blue", "gray", "silver"])
    ax[0, 0].set(ylabel="held-out accuracy", ylim=(0, 1.05), title="(a) top archetype from the starting vector")
    x = np.arange(len(table))
    ax[0, 1].bar(x - 0.2, [t["radius"] for t in table], 0.4, label="archetype")
    ax[0, 1].bar(x + 0.2, [t["random_radius"] for t in table], 0.4, label="random subset", color="gray")
    ax[0, 1].set_xticks(x, [str(t["archetype"]) for t in table], rotation=90, fontsize=7)
    ax[0, 1].set(xlabel="archetype (most used first)", ylabel="dispersion radius", title="(b) dispersion of starts")
    ax[0, 1].legend(fontsize=8)
    return _png(fig)


def fragments(panels: Sequence[dict[str, Any]], sample_rate: float, main_lobe_hz: float) -> bytes:
    if not panels:  # no usable fragment: the figure says so instead of failing
        fig, ax = _figure(8, 2.0)
        ax[0, 0].text(0.5, 0.5, "no usable fragment (see the table: usable_rule)", ha="center", va="center")
        ax[0, 0].set_axis_off()
        return _png(fig)
    fig, ax = _figure(11, 3.2 * len(panels), cols=2, rows=len(panels))
    for row, p in zip(ax, panels):
        frags = p["fragments"]
        t = (np.arange(frags.shape[1]) - frags.shape[1] // 2) / sample_rate * 1000
        for f in frags:
            row[0].plot(t, f, color="tab:blue", alpha=0.3, lw=0.8)
        row[0].plot(t, frags.mean(axis=0), color="k", lw=1.6, label="mean")
        row[0].set(xlabel="time from centre (ms)", title=f"{p['label']}: aligned fragments")
        row[0].legend(fontsize=7)
        power, freqs = p["power"], p["freqs"]
        low = float(freqs[1]) if len(freqs) > 1 else 1.0  # the lowest bin above DC: a log axis starts there
        db = 10 * np.log10(np.maximum(power, 1e-12))
        for s in db:
            row[1].plot(freqs[1:], s[1:], color="tab:orange", alpha=0.25, lw=0.7)
        mean_db = 10 * np.log10(np.maximum(power.mean(axis=0), 1e-12))
        row[1].plot(freqs[1:], mean_db[1:], color="k", lw=1.6, label="mean spectrum")
        peak = freqs[int(power.mean(axis=0).argmax())]
        row[1].axvspan(
            max(peak - main_lobe_hz / 2, low),
            max(peak + main_lobe_hz / 2, low * 1.05),
            color="tab:green",
            alpha=0.15,
            label=f"layer main lobe fs/N = {main_lobe_hz:.0f} Hz",
        )
        reporting.log_frequency(row[1], low, sample_rate / 2)
        row[1].set(
            xlabel="frequency (Hz, log)", ylabel="dB", title=f"{p['label']}: spectra", ylim=(mean_db.max() - 60, None)
        )
        row[1].legend(fontsize=7)
    return _png(fig)


def trajectories(projections: dict[str, np.ndarray], ratios: Sequence[float]) -> bytes:
    fig, ax = _figure(12, 3.8, cols=len(projections))
    for a, (name, p) in zip(ax[0], projections.items()):
        a.plot(p[:, 0], p[:, 1], "-", lw=0.8)
        dots = a.scatter(p[:, 0], p[:, 1], c=np.arange(len(p)), s=6, cmap="viridis")
        fig.colorbar(dots, ax=a, label="frame")
        a.set(title=name, xlabel=f"PC1 ({ratios[0]:.0%})", ylabel=f"PC2 ({ratios[1]:.0%})" if len(ratios) > 1 else "")
    return _png(fig)
