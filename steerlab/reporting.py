"""Pieces every steerlab HTML report is built from, so each report reads and behaves the same.

A report is one self-contained HTML page (figures as ``data:image/png`` URIs, audio as
``data:audio/wav`` URIs: it can be mailed or archived alone) that a researcher can both
read and listen to. This module owns the page frame and its stylesheet (tables never wider
than the page: wide ones scroll inside their own box), inlined images, audio players with a
declared source type, listening reels of short fragments, and the matplotlib side of a
figure: an Agg canvas (no pyplot, no global backend), titles wrapped until their rendered
width fits their axes, logarithmic frequency axes, and PNG output. ``steerlab analyze``,
``steerlab partials`` (and the battery and survey reports built on them) use it;
:mod:`steerlab.reportcheck` loads a finished page in a headless browser to prove it works.
matplotlib is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.artifacts import atomic_path

#: the stylesheet of every report: readable width, tables that wrap long cells and scroll when wider
CSS = """body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;font-size:14px;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:left;vertical-align:top;overflow-wrap:break-word}
.scroll{max-width:100%;overflow-x:auto;margin:.5em 0}.scroll>table{margin:0}
img{max-width:100%;height:auto}audio{width:100%;max-width:360px;min-width:200px;display:block}
.players{display:flex;flex-wrap:wrap;gap:.6em 1.4em;margin:.4em 0}.player{font-size:12px}
.note{font-size:12px;color:#555}code{background:#eee;overflow-wrap:break-word}section{margin-bottom:2.5em}"""

AUDIO_TYPE = "audio/wav"  # 16-bit PCM WAV: every browser plays it, no encoder needed


def page(title: str, body: str | Iterable[str], css: str = "") -> str:
    """A whole self-contained HTML document: ``title`` (plain text, escaped), ``body`` (HTML)."""
    text = body if isinstance(body, str) else "\n".join(body)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{CSS}\n{css}</style></head><body>\n{text}\n</body></html>"
    )


def scroll(table_html: str) -> str:
    """Wrap a table so that, when wider than the page, it scrolls in its own box."""
    return f"<div class=scroll>{table_html}</div>"


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, alt: str, style: str = "") -> str:
    """An ``<img>`` with the PNG inlined (single-quoted ``src``, as reports have always written it)."""
    extra = f" style='{html.escape(style)}'" if style else ""
    return f"<img alt='{html.escape(alt)}'{extra} src='{png_uri(png)}'>"


def wav_bytes(wave: Any, sample_rate: float) -> bytes:
    """16-bit PCM WAV of ``wave`` (``[samples]`` or ``[channels, samples]``, floats in [-1, 1],
    clipped), at ``sample_rate`` Hz: a third of a float WAV's size, exact enough to listen to."""
    import soundfile as sf

    x = np.asarray(wave, dtype=np.float32)
    x = x.T if x.ndim == 2 else x  # soundfile wants [samples, channels]
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), int(round(sample_rate)), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def audio_player(wav: bytes, label: str = "") -> str:
    """An ``<audio controls>`` player with the WAV inlined as its one ``<source>`` of declared
    type, and ``label`` (plain text) above it when given."""
    src = f"data:{AUDIO_TYPE};base64," + base64.b64encode(wav).decode("ascii")
    player = f"<audio controls preload=metadata><source type='{AUDIO_TYPE}' src='{src}'></audio>"
    return f"<div class=player>{html.escape(label)}{player}</div>" if label else player


def audio_file_player(path: str | Path, label: str = "") -> str:
    """:func:`audio_player` of an audio file on disk, re-encoded as 16-bit PCM for the page."""
    from steerlab import audio

    info = audio.probe(path)
    blocks = list(audio.iter_blocks(path))  # [C, T] each; decoder chatter captured
    x = np.concatenate(blocks, axis=1) if blocks else np.zeros((info.channels, 0), np.float32)
    sr = info.sample_rate
    return audio_player(wav_bytes(x, sr), label)


def listening_reel(fragments: np.ndarray, sample_rate: float, gap_s: float = 0.15, fade_s: float = 0.01) -> np.ndarray:
    """One clip that plays ``fragments`` (``[n, samples]``) one after another: each faded in and
    out over ``fade_s`` seconds (no clicks), separated by ``gap_s`` seconds of silence, the whole
    reel scaled to a peak of 0.9 (fragments keep their relative loudness). Returns ``[samples]``."""
    f = np.asarray(fragments, dtype=np.float64)
    if f.ndim != 2 or not len(f):
        return np.zeros(0)
    n = min(int(fade_s * sample_rate), f.shape[1] // 2)
    ramp = np.ones(f.shape[1])
    if n > 0:
        ramp[:n] = ramp[-n:][::-1] = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    gap = np.zeros(int(gap_s * sample_rate))
    reel = np.concatenate([part for row in f for part in (row * ramp, gap)][:-1])
    peak = float(np.abs(reel).max())
    return reel * (0.9 / peak) if peak > 0 else reel


# ---- figures ------------------------------------------------------------------------------------


def figure(width: float, height: float, rows: int = 1, cols: int = 1, dpi: int = 90) -> tuple[Any, np.ndarray]:
    """A constrained-layout matplotlib Figure on an Agg canvas and its axes ``[rows, cols]``."""
    fig = new_figure(figsize=(width, height), dpi=dpi)
    return fig, fig.subplots(rows, cols, squeeze=False)


def new_figure(**kwargs: Any) -> Any:
    """A constrained-layout matplotlib Figure on its own Agg canvas (not registered with pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _titles(fig: Any) -> list[tuple[Any, Any]]:
    """(text, the box it must fit in) for every non-empty axes title and the figure's suptitle."""
    out = []
    for ax in fig.axes:
        for t in (ax.title, ax._left_title, ax._right_title):
            if t.get_text():
                out.append((t, ax))
    if fig._suptitle is not None and fig._suptitle.get_text():
        out.append((fig._suptitle, fig))
    return out


def overflowing_titles(fig: Any, slack_px: float = 1.0) -> list[str]:
    """The titles whose rendered width exceeds their axes' width (the suptitle: the figure's),
    measured with matplotlib's text extent after a layout pass (a draw without rasterizing)."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    return [
        t.get_text()
        for t, box in _titles(fig)
        if t.get_window_extent(renderer).width > box.get_window_extent(renderer).width + slack_px
    ]


def fit_titles(fig: Any, rounds: int = 4) -> None:
    """Wrap every title (and the suptitle) onto more lines until its rendered width fits the
    width of its axes (the suptitle: of the figure); a single word wider than that is left whole."""
    for _ in range(rounds):
        fig.draw_without_rendering()  # layout and text extents, no pixels: a fraction of a draw
        renderer = fig.canvas.get_renderer()
        changed = False
        for t, box in _titles(fig):
            have, room = t.get_window_extent(renderer).width, box.get_window_extent(renderer).width
            if have <= room:
                continue
            text = t.get_text()
            longest = max(len(line) for line in text.split("\n"))
            width = max(8, int(longest * room / have * 0.95))
            wrapped = "\n".join(textwrap.fill(line, width, break_long_words=False) for line in text.split("\n"))
            if wrapped != text:
                t.set_text(wrapped)
                changed = True
        if not changed:
            return


def log_frequency(ax: Any, low_hz: float, high_hz: float, axis: str = "x") -> None:
    """A logarithmic frequency axis from ``low_hz`` to ``high_hz`` with plain-number ticks
    (musical content sits in the lowest octaves, which a linear axis squeezes into a corner)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    a = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    (ax.set_xlim if axis == "x" else ax.set_ylim)(low_hz, high_hz)
    a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"))
    a.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def png(fig: Any) -> bytes:
    """The figure as PNG bytes, titles fitted first; the figure is cleared afterwards."""
    buf = io.BytesIO()
    try:
        fit_titles(fig)
        fig.savefig(buf, format="png")
    finally:
        fig.clear()
    return buf.getvalue()


def save_png(fig: Any, path: str | Path, dpi: float | None = None) -> Path:
    """Write the figure as a PNG atomically (titles fitted first); the figure is cleared afterwards."""
    path = Path(path)
    try:
        fit_titles(fig)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", **({} if dpi is None else {"dpi": dpi}))
    finally:
        fig.clear()
    return path
