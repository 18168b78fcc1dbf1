"""File-level interventions: what ``steerlab intervene`` does, callable from Python.

For each input, ``OUTDIR/<stem>/`` receives ``baseline.wav``, ``patched.wav``,
``scores.json`` and ``spectrogram.png``; for a model without a decoder, only
``scores.json`` (class probabilities and logits) and ``probabilities.png``. All
inputs are read and checked, and the intervention type's ``prepare`` step runs
once, before anything is written; each input's folder is built under a temporary
name and renamed into place at the end, so a failure never leaves partial outputs.

Inputs longer than ``chunk_s`` stream through the model in overlapping chunks
(the overlap warms the model up; see :class:`_StreamWriter`) and are written as they go, so memory stays
bounded for hour-long files. For those, the per-target band energies (and so
``gain_db``) are summed exactly over chunks, the other metrics are length-weighted
means of the per-chunk values, the figure shows the first chunk, and a relative
strength is resolved per chunk; ``scores.json`` says so. Types whose patch depends
on earlier frames or absolute time (``chunkable = False``: archetype, patch) and
models without a decoder take each input whole: a longer input is refused with
the ``chunk_s`` it needs.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from steerlab import api, audio
from steerlab.artifacts import atomic_write_json, normal_permissions
from steerlab.errors import InterventionError, SteerlabError
from steerlab.model import AudioModel

DEFAULT_CHUNK_S = 60.0
DEFAULT_OVERLAP_S = 1.0


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    stems, seen = [], {}
    for p in paths:
        stem = p.stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def _combine_scores(chunks: list[tuple[int, dict]]) -> dict:
    """Exact band-energy sums for gains; length-weighted means for everything else."""
    total = sum(n for n, _ in chunks)
    first = chunks[0][1]

    def mean(key: str, rows: list[tuple[int, dict]]) -> float:
        return float(sum(n * r[key] for n, r in rows) / total)

    out = {k: v for k, v in first.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
    for key, value in first.items():
        if isinstance(value, float):
            out[key] = mean(key, chunks)
    targets = []
    for i, t in enumerate(first.get("targets", [])):
        rows = [(n, r["targets"][i]) for n, r in chunks]
        b = sum(n * r["baseline_band_energy"] for n, r in rows) / total
        p = sum(n * r["patched_band_energy"] for n, r in rows) / total
        floor = 1e-12
        merged = {**t, "baseline_band_energy": b, "patched_band_energy": p,
                  "gain_db": 10 * math.log10(max(p, floor) / max(b, floor))}
        for key in ("concentration", "offband_lsd_db"):
            merged[key] = mean(key, rows)
        targets.append(merged)
    if targets:
        out["targets"] = targets
    out["n_samples"] = total
    out["chunked"] = {"chunks": len(chunks), "note": "gain exact over chunks; other metrics length-weighted means"}
    return out


class _StreamWriter:
    """Joins overlapping chunks and writes finished samples as they come.

    A chunk's first samples come from a model that has not yet seen the audio
    before them (cold convolution padding and LSTM state), so the overlap is
    used as warm-up: the previous chunk's output is kept through the first
    three quarters of the overlap and the last quarter is a linear crossfade.
    """

    def __init__(self, path: Path, sample_rate: int, channels: int, overlap: int) -> None:
        import soundfile as sf

        self.file = sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=channels, format="WAV", subtype="FLOAT")
        self.overlap = overlap
        self.tail: np.ndarray | None = None

    def add(self, piece: np.ndarray, last: bool) -> None:
        if self.tail is not None:
            k = min(self.tail.shape[-1], piece.shape[-1])
            fade = max(1, k // 4)
            ramp = np.concatenate([np.zeros(k - fade), np.linspace(0.0, 1.0, fade + 2)[1:-1]]).astype(np.float32)
            piece = piece.copy()
            piece[:, :k] = self.tail[:, :k] * (1 - ramp) + piece[:, :k] * ramp
        keep = 0 if last else min(self.overlap, piece.shape[-1])
        self.file.write(piece[:, : piece.shape[-1] - keep].T)
        self.tail = piece[:, piece.shape[-1] - keep :] if keep else None

    def close(self) -> None:
        self.file.close()


def _chunk_span(span, t0: float, duration: float):
    """``span`` in the time of a chunk starting at ``t0`` (an empty span if they do not meet)."""
    from steerlab.interventions import Span

    end = None if span.end_s is None else span.end_s - t0
    start = max(0.0, span.start_s - t0)
    if (end is not None and end <= 0) or start >= duration:
        return Span(duration, None)
    return Span(start, end, span.fade_in if span.start_s >= t0 else 0, span.fade_out)


def _process_long(model: AudioModel, path: Path, spec: api.InterventionSpec, target_hz, scorers, work: Path,
                  chunk_s: float, overlap_s: float, prepared=None) -> tuple[dict, np.ndarray, np.ndarray, dict]:
    from dataclasses import replace

    # Chunks start on the model's frame grid: a strided encoder is not shift-invariant,
    # so a chunk starting mid-frame would be encoded differently from the whole file.
    hop = model.hop
    chunk = max(2 * hop, round(chunk_s * model.sample_rate / hop) * hop)
    overlap = min(chunk - hop, max(hop, round(overlap_s * model.sample_rate / hop) * hop))
    chunk_s, overlap_s = chunk / model.sample_rate, overlap / model.sample_rate
    writers = {k: _StreamWriter(work / f"{k}.wav", model.sample_rate, model.channels, overlap) for k in ("baseline", "patched")}
    chunk_scores: list[tuple[int, dict]] = []
    first_pair = None
    record: dict = {}
    chunks = audio.iter_chunks(path, model.sample_rate, model.channels, chunk_s, overlap_s)
    try:
        pending = next(chunks, None)
        while pending is not None:
            start, x = pending
            pending = next(chunks, None)
            shifted = replace(spec, span=_chunk_span(spec.span, start / model.sample_rate, x.shape[-1] / model.sample_rate))
            res = api.intervene(model, [x], shifted, target_hz, scorers, prepared=prepared)[0]
            record = record or res.record
            new = x.shape[-1] if not chunk_scores else x.shape[-1] - overlap
            chunk_scores.append((max(new, 1), res.scores))
            if first_pair is None:
                first_pair = (res.baseline, res.patched)
            writers["baseline"].add(res.baseline, pending is None)
            writers["patched"].add(res.patched, pending is None)
    finally:
        for w in writers.values():
            w.close()
    scores = {name: _combine_scores([(n, s[name]) for n, s in chunk_scores]) for name in chunk_scores[0][1]}
    record = {**record, "chunk_s": chunk_s, "overlap_s": overlap_s, "spectrogram": "first chunk only"}
    return scores, first_pair[0], first_pair[1], record


def class_figure(scores: dict[str, Any], path: Path, title: str = "") -> None:
    """A bar chart of class probabilities before and after the patch (PNG, written atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from steerlab.artifacts import atomic_path

    rows = scores["classes"]
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(4.0, 0.5 * len(rows) + 2.0), 3.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.bar(x - 0.2, [r["baseline_prob"] for r in rows], 0.4, label="baseline")
    ax.bar(x + 0.2, [r["patched_prob"] for r in rows], 0.4, label="patched")
    ax.set_xticks(x, [r["class"] for r in rows], rotation=45 if len(rows) > 6 else 0, ha="right" if len(rows) > 6 else "center")
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("probability")
    ax.legend()
    ax.set_title(title + (f"\nKL {scores['kl_divergence']:.3g} nats" if title else ""))
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        fig.clear()


def intervene_files(
    model: AudioModel,
    paths: Sequence[str | Path],
    spec: api.InterventionSpec,
    out_dir: str | Path,
    target_hz: Sequence[float] = (),
    scorers: Sequence[str] | None = None,
    chunk_s: float = DEFAULT_CHUNK_S,
    overlap_s: float = DEFAULT_OVERLAP_S,
    progress: Callable[[str], Any] | None = None,
    notify: Callable[[str], Any] | None = None,
) -> list[dict[str, Any]]:
    """Patch each audio file and write its outputs; returns each input's ``scores.json`` content."""
    from steerlab import plugins
    from steerlab.figures import spectrogram_figure
    from steerlab.interventions import is_chunkable

    if not paths:
        raise SteerlabError("no audio inputs given")
    paths = [Path(p) for p in paths]
    infos = [audio.probe(p) for p in paths]
    # Fail before writing anything: check layer, direction, options and outputs first.
    layer = api.layers(model).get(spec.layer)
    kind = plugins.interventions().get(spec.kind)
    if spec.direction is not None:
        spec.direction.check_fits(layer)
    if all(spec.span.start_s >= info.duration_s for info in infos):
        raise InterventionError(f"--start {spec.span.start_s} s is past the end of every input")
    whole = not model.has_decoder or not is_chunkable(kind)
    for p, info in zip(paths, infos):
        if whole and info.duration_s > chunk_s:
            why = (f"{model.name} has no decoder and classifies each input whole" if not model.has_decoder
                   else f"intervention {kind.name!r} depends on earlier frames or absolute time")
            raise InterventionError(f"{p.name} is {info.duration_s:.1f} s, longer than --chunk-s {chunk_s:g}, but {why};"
                                    f" raise --chunk-s to at least {math.ceil(info.duration_s)} or shorten the input")
    loaded: dict[int, tuple[np.ndarray, Any]] = {}
    for i, (p, info) in enumerate(zip(paths, infos)):
        if info.duration_s <= chunk_s:
            loaded[i] = audio.load(p, model.sample_rate, model.channels)
    api.check_targets(model, target_hz)
    prepared = api.prepare(model, spec)
    api.check_inputs(model, spec, prepared, [loaded[i][0].shape[-1] for i in sorted(loaded)],
                     [paths[i].name for i in sorted(loaded)])
    out = audio.check_writable_dir(out_dir)
    results = []
    for i, (p, info, stem) in enumerate(zip(paths, infos, _unique_stems(paths))):
        if progress:
            progress(p.name)
        work = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=out))
        try:
            normal_permissions(work, directory=True)
            title = f"{model.name} {spec.layer} {spec.kind} alpha={spec.strength.alpha}"
            if i in loaded:
                wave, conversion = loaded.pop(i)
                res = api.intervene(model, [wave], spec, target_hz, scorers, names=[stem], prepared=prepared)[0]
                scores, base, patched, record = res.scores, res.baseline, res.patched, res.record
                conv = conversion.describe()
                if model.has_decoder:
                    audio.write_wav(work / "baseline.wav", res.baseline, model.sample_rate)
                    audio.write_wav(work / "patched.wav", res.patched, model.sample_rate)
            else:
                scores, base, patched, record = _process_long(model, p, spec, target_hz, scorers, work, chunk_s,
                                                              overlap_s, prepared)
                conv = "streamed in chunks"
            if notify and conv and not conv.startswith("no conversion"):
                notify(f"{p.name}: {conv}")
            if model.has_decoder:
                spectrogram_figure(base, patched, model.sample_rate, work / "spectrogram.png", target_hz, title=title)
            else:
                class_figure(scores["classification"], work / "probabilities.png", title=title)
            doc = {"input": {"path": str(p.resolve()), "sample_rate": info.sample_rate, "channels": info.channels,
                             "duration_s": info.duration_s, "conversion": conv},
                   **record, "scores": scores}
            atomic_write_json(doc, work / "scores.json")
            final = out / stem
            if final.exists():
                shutil.rmtree(final)
            work.rename(final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        results.append(doc)
    return results
