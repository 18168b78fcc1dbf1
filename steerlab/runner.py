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
means of the per-chunk values, and the figure shows the first chunk; ``scores.json``
says so. A relative strength is resolved once for the whole input, by a capture
pass over all chunks before the run (:func:`resolve_whole_strength`), so the patched
output does not depend on the chunk size beyond the chunk joins themselves. Types whose patch depends
on earlier frames or absolute time (``chunkable = False``: archetype, patch) and
models without a decoder take each input whole: a longer input is refused with
the ``chunk_s`` it needs.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steerlab import audio, engine
from steerlab.artifacts import atomic_write_json, normal_permissions
from steerlab.errors import InterventionError, SteerlabError
from steerlab.loading import layers
from steerlab.metrics import SiSdrAccumulator
from steerlab.model import AudioModel
from steerlab.outputs import check_targets
from steerlab.running import intervene
from steerlab.spec import InterventionSpec, check_n_q

DEFAULT_CHUNK_S = 60.0
DEFAULT_OVERLAP_S = 1.0
# `steerlab intervene` fades every span in and out over this long unless --fade-in/--fade-out say
# otherwise: the batch test's stimuli and ideal edits have 10 ms fades, and an ideal edit that
# starts and ends abruptly over the whole clip scores 1.16 dB off-band (over the batch test's 1 dB
# rule) against 0.11 dB with these fades (filterbank_24khz, bands channel 21, docs/interventions.md).
DEFAULT_FADE_MS = 10.0


def default_fade_frames(layer, fade_ms: float = DEFAULT_FADE_MS) -> int:
    """Frames of ``layer`` in ``fade_ms`` milliseconds, rounded, at least 1: the CLI's default fades."""
    return max(1, round(fade_ms / 1000.0 * layer.frame_rate))


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    stems: list[str] = []
    seen: dict[str, int] = {}
    for p in paths:
        stem = p.stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def _combine_scores(chunks: list[tuple[int, dict]]) -> dict:
    """Exact band-energy sums for gains; length-weighted means for everything else.

    A value a chunk could not resolve (None: a last chunk too short for the band) is left
    out, and the others are weighted over the chunks that have it; None if no chunk has it."""
    total = sum(n for n, _ in chunks)
    first = chunks[0][1]

    def mean(key: str, rows: list[tuple[int, dict]]) -> float | None:
        have = [(n, r[key]) for n, r in rows if isinstance(r.get(key), (int, float))]
        weight = sum(n for n, _ in have)
        return float(sum(n * v for n, v in have) / weight) if weight else None

    numeric = {k for _, r in chunks for k, v in r.items() if isinstance(v, float)}
    out = {
        k: v for k, v in first.items() if k not in numeric and (not isinstance(v, (int, float)) or isinstance(v, bool))
    }
    for key in numeric:
        out[key] = mean(key, chunks)
    targets = []
    for i, t in enumerate(first.get("targets", [])):
        rows = [(n, r["targets"][i]) for n, r in chunks if r["targets"][i].get("gain_db") is not None]
        merged = {k: v for k, v in t.items() if k != "unresolved"}
        if rows:
            weight = sum(n for n, _ in rows)
            b = sum(n * r["baseline_band_energy"] for n, r in rows) / weight
            p = sum(n * r["patched_band_energy"] for n, r in rows) / weight
            floor = 1e-12
            merged.update(
                baseline_band_energy=b, patched_band_energy=p, gain_db=10 * math.log10(max(p, floor) / max(b, floor))
            )
            for key in ("concentration", "offband_lsd_db"):
                merged[key] = mean(key, rows)
            if len(rows) < len(chunks):
                merged["chunks_left_out"] = len(chunks) - len(rows)
        else:
            merged["unresolved"] = t.get("unresolved")
        targets.append(merged)
    if targets:
        out["targets"] = targets
    # a reason goes with a null only: a chunk's reason for a number the others resolved is dropped, and
    # a number no chunk resolved keeps the first reason given
    for key in [k for k in out if k.endswith("_reason") and k[: -len("_reason")] in numeric]:
        del out[key]
    for key in numeric:
        if out[key] is None:
            out[f"{key}_reason"] = next(
                (r[f"{key}_reason"] for _, r in chunks if r.get(f"{key}_reason")), "no chunk resolved it"
            )
    if isinstance(first.get("resolution"), dict):
        out["resolution"] = _combine_resolution([(n, r["resolution"]) for n, r in chunks], total)
    out["n_samples"] = total
    out["chunked"] = {
        "chunks": len(chunks),
        "note": "gain exact over chunks; other metrics length-weighted means over the chunks that resolve them",
    }
    return out


def _combine_resolution(rows: list[tuple[int, dict]], total: int) -> dict:
    """The :func:`steerlab.scoring.resolution` of a chunked input: each chunk was scored on its own
    samples, so a number is resolved when some chunk resolved it (the combined value is over those
    chunks) and the frequency resolution is that of the chunks, not of the whole input."""
    first = rows[0][1]
    out: dict[str, Any] = {
        "n_samples": total,
        "per_chunk": True,
        "chunks": len(rows),
        "chunk_n_samples": [int(r.get("n_samples", 0)) for _, r in rows],
        "resolution_hz": max(float(r["resolution_hz"]) for _, r in rows if "resolution_hz" in r)
        if any("resolution_hz" in r for _, r in rows)
        else None,
        "note": "each chunk is scored on its own samples (resolution_hz: the coarsest chunk's); "
        "a score is resolved when at least one chunk resolves it, and is combined over "
        "those chunks",
    }
    if out["resolution_hz"] is None:
        out["resolution_hz_reason"] = "the scorer reported no frequency resolution"
    if "scoring_bin_hz" in first:  # the scoring FFT's bin width: the same for every chunk
        out["scoring_bin_hz"] = first["scoring_bin_hz"]
    for what in ("band", "mrstft", "spectrum"):
        flag = "bands_resolved" if what == "band" else f"{what}_resolved"
        if flag not in first:
            continue
        have = sum(1 for _, r in rows if r.get(flag))
        out[f"{what}_min_samples"] = first.get(f"{what}_min_samples")
        out[flag] = have > 0
        out[f"{what}_chunks_resolved"] = have
        out[f"{what}_reason"] = None if have else next((r.get(f"{what}_reason") for _, r in rows), None)
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

        self.file = sf.SoundFile(
            str(path), "w", samplerate=sample_rate, channels=channels, format="WAV", subtype="FLOAT"
        )
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


def _chunk_span(span, t0: float, duration: float, last: bool = False):
    """``span`` in the time of a chunk starting at ``t0`` (an empty span if they do not meet).

    Fades stay where the span's own ends are: the fade-in only in the chunk holding the span's
    start, the fade-out only in the chunk holding its end (the last chunk for an open span), so a
    chunk boundary never fades the patch out and back in."""
    from steerlab.interventions import Span

    end = None if span.end_s is None else span.end_s - t0
    start = max(0.0, span.start_s - t0)
    if (end is not None and end <= 0) or start >= duration:
        return Span(duration, None)
    ends_here = last if end is None else end <= duration
    return Span(
        start, end if ends_here else None, span.fade_in if span.start_s >= t0 else 0, span.fade_out if ends_here else 0
    )


def _chunk_grid(model: AudioModel, chunk_s: float, overlap_s: float) -> tuple[int, int]:
    """(chunk, overlap) in samples, on the model's frame grid: a strided encoder is not
    shift-invariant, so a chunk starting mid-frame would be encoded differently from the whole file."""
    hop = model.hop
    chunk = max(2 * hop, round(chunk_s * model.sample_rate / hop) * hop)
    overlap = min(chunk - hop, max(hop, round(overlap_s * model.sample_rate / hop) * hop))
    return chunk, overlap


def smallest_chunk_s(model: AudioModel, overlap_s: float) -> float:
    """The smallest valid ``chunk_s``: twice the overlap (rounded up to whole frames), so
    each chunk advances by at least the overlap and a file of length L makes at most about
    ``2 L / chunk_s`` chunks (a chunk barely longer than the overlap would advance one hop
    at a time: 114 chunks for 2.5 s)."""
    hop = model.hop
    overlap = max(hop, round(overlap_s * model.sample_rate / hop) * hop)
    return 2 * overlap / model.sample_rate


def check_chunking(model: AudioModel, chunk_s: float, overlap_s: float) -> None:
    """Refuse a ``chunk_s`` that is not a number of seconds at least twice ``overlap_s``."""
    if not (isinstance(chunk_s, (int, float)) and math.isfinite(chunk_s) and chunk_s > 0):
        raise InterventionError(f"chunk_s must be a positive number of seconds, got {chunk_s!r}", parameter="chunk_s")
    if not (isinstance(overlap_s, (int, float)) and math.isfinite(overlap_s) and overlap_s >= 0):
        raise InterventionError(f"the chunk overlap must be a number of seconds >= 0, got {overlap_s!r}")
    smallest = smallest_chunk_s(model, overlap_s)
    if chunk_s < smallest - 1e-9:
        raise InterventionError(
            f"chunk_s {chunk_s:g} is too small: chunks overlap by {overlap_s:g} s (model "
            f"warm-up), so chunk_s must be at least {smallest:g} s (twice the overlap)",
            parameter="chunk_s",
        )


def _new_frames(layer, start: int, overlap: int, n_frames: int, first: bool) -> tuple[int, int]:
    """Frames ``[lo, n_frames)`` of a chunk that no earlier chunk covered (its overlap is skipped)."""
    lo = 0 if first else min(n_frames, -(-overlap // layer.hop))
    return lo, n_frames


def resolve_whole_strength(
    model: AudioModel, path: Path, info, spec: InterventionSpec, prepared, chunk: int, overlap: int
) -> dict | None:
    """One relative strength for a whole chunked input, from a capture pass before the run.

    For the value scale ``strength`` the value is ``alpha * sqrt(sum |a_t|^2 / N)`` and for
    ``motion`` ``alpha * sqrt(sum |a_{t+1} - a_t|^2 / N')``, the sums running over every frame
    of the layer exactly once: each chunk contributes the frames past its overlap with the
    previous one (steps only between frames of one chunk). Returns None when nothing is
    relative (absolute mode, factor or no value), else a record of what was used."""
    import torch

    from steerlab import tracing

    scale = prepared.value_scale
    if spec.strength.mode != "relative" or scale not in ("strength", "motion"):
        return None
    layer = layers(model).get(spec.layer)
    run_path = model.check_path(spec.path or model.default_path)
    sq = steps = 0.0
    n = n_steps = chunks = 0
    for start, x in audio.iter_chunks(
        path, model.sample_rate, model.channels, chunk / model.sample_rate, overlap / model.sample_rate, info=info
    ):
        act = tracing.capture(model, [torch.from_numpy(x)], [layer], path=run_path)[0][layer.name].double()
        lo, hi = _new_frames(layer, start, overlap, act.shape[-1], chunks == 0)
        part = act[:, lo:hi]
        sq += float(part.pow(2).sum())
        n += part.shape[-1]
        seg = act[:, max(lo - 1, 0) : hi]
        steps += float((seg[:, 1:] - seg[:, :-1]).pow(2).sum()) if seg.shape[-1] > 1 else 0.0
        n_steps += max(seg.shape[-1] - 1, 0)
        chunks += 1
    rms = math.sqrt(sq / n) if n else 0.0
    step = math.sqrt(steps / n_steps) if n_steps else 0.0
    value = spec.strength.alpha * (step if scale == "motion" else rms)
    return {
        "value": value,
        "layer_rms_norm": rms,
        "layer_rms_step_norm": step,
        "method": "one pre-pass over all chunks before the run: the layer's activations captured on the run's "
        "decode path, each frame counted once (a chunk's overlap with the previous one skipped), then "
        "alpha times the RMS norm over all frames (motion: over all steps); every chunk is patched with "
        "this one value",
        "frames": n,
        "steps": n_steps,
        "chunks": chunks,
    }


def _process_long(
    model: AudioModel,
    path: Path,
    spec: InterventionSpec,
    target_hz,
    scorers,
    work: Path,
    chunk_s: float,
    overlap_s: float,
    prepared=None,
    info=None,
) -> tuple[dict, np.ndarray, np.ndarray, dict]:
    from dataclasses import replace

    from steerlab.interventions import Strength
    from steerlab.scoring import merge_output_checks

    chunk, overlap = _chunk_grid(model, chunk_s, overlap_s)
    chunk_s, overlap_s = chunk / model.sample_rate, overlap / model.sample_rate
    if prepared is None:
        prepared = engine.prepare(model, spec)
    whole = resolve_whole_strength(model, path, info, spec, prepared, chunk, overlap)
    run_spec = spec if whole is None else replace(spec, strength=Strength(whole["value"], "absolute"))
    writers = {
        k: _StreamWriter(work / f"{k}.wav", model.sample_rate, model.channels, overlap) for k in ("baseline", "patched")
    }
    chunk_scores: list[tuple[int, dict]] = []
    checks: list[dict] = []
    first_pair = None
    record: dict = {}
    norms: dict[str, list] = {"layer_rms_norm": [], "layer_rms_step_norm": []}
    fidelity = SiSdrAccumulator()
    chunks = audio.iter_chunks(path, model.sample_rate, model.channels, chunk_s, overlap_s, info=info)
    try:
        pending = next(chunks, None)
        while pending is not None:
            start, x = pending
            pending = next(chunks, None)
            shifted = replace(
                run_spec,
                span=_chunk_span(
                    spec.span, start / model.sample_rate, x.shape[-1] / model.sample_rate, pending is None
                ),
            )
            res = intervene(model, [x], shifted, target_hz, scorers, prepared=prepared)[0]
            record = record or res.record
            for key in norms:
                norms[key].append((x.shape[-1] if not chunk_scores else x.shape[-1] - overlap, res.record.get(key)))
            if "output_check" in res.record:
                checks.append(res.record["output_check"])
            new = x.shape[-1] if not chunk_scores else x.shape[-1] - overlap
            fidelity.add(x[..., x.shape[-1] - new :], res.baseline[..., x.shape[-1] - new :])
            chunk_scores.append((max(new, 1), res.scores))
            if first_pair is None:
                first_pair = (res.baseline, res.patched)
            writers["baseline"].add(res.baseline, pending is None)
            writers["patched"].add(res.patched, pending is None)
    finally:
        for w in writers.values():
            w.close()
    if first_pair is None:  # never for a scanned file: it yields at least one chunk
        raise SteerlabError(f"{path}: no audio chunk to run")
    scores = {name: _combine_scores([(n, s[name]) for n, s in chunk_scores]) for name in chunk_scores[0][1]}
    # The record describes the whole run, never the first chunk's shifted span: the user's span and
    # fades, and the span's frames over the whole input.
    layer = layers(model).get(spec.layer)
    total = sum(n for n, _ in chunk_scores)
    record = {
        **record,
        **spec.to_json(layer, prepared),
        "span_frames": list(spec.span.frames(layer, layer.frames_for(total))),
        "chunk_s": chunk_s,
        "overlap_s": overlap_s,
        "chunks": len(chunk_scores),
        "spectrogram": "first chunk only",
    }
    if whole is not None:  # the record states the user's strength and the one value every chunk used
        record.update(
            alpha=spec.strength.alpha,
            strength_mode=spec.strength.mode,
            effective_value=whole["value"],
            layer_rms_norm=whole["layer_rms_norm"],
            layer_rms_step_norm=whole["layer_rms_step_norm"],
            strength_resolution=whole,
        )
    else:
        record["strength_resolution"] = {"method": "not relative: the same value in every chunk"}
        for key in ("layer_rms_norm", "layer_rms_step_norm"):  # over all chunks, not the first one's
            have = [(n, v) for n, v in norms[key] if v is not None]
            weight = sum(n for n, _ in have)
            record[key] = math.sqrt(sum(n * v * v for n, v in have) / weight) if weight else None
        record["layer_norms"] = (
            "root of the mean square over chunks of each chunk's norm, weighted by the "
            "chunk's new samples (information: not used, the strength is not relative)"
        )
    if checks:
        record["output_check"] = merge_output_checks(checks)
    record["fidelity"] = fidelity_record(fidelity, record.get("path"), "chunk by chunk, over each chunk's new samples")
    return scores, first_pair[0], first_pair[1], record


def check_input_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Every input must name an existing file: checked on all of them, before any is decoded
    (a mistyped second argument fails at once, not after the first file's minutes of decoding).
    Raises AudioError naming the first bad path; a path that reads as a number says so (``-t 220 440``
    makes 440 an input: -t takes one value and is repeated)."""
    from steerlab.errors import AudioError

    out = []
    for p in map(Path, paths):
        if not p.exists():
            hint = ""
            try:
                float(str(p))
                hint = (
                    f" ({p} reads as a number: options take one value each, so repeat the option, e.g. -t 220 -t {p})"
                )
            except ValueError:
                pass
            raise AudioError(f"audio file not found: {p}{hint}")
        if not p.is_file():
            raise AudioError(
                f"audio path {p} is {'a directory' if p.is_dir() else 'not a regular file'}; "
                "pass an audio file (WAV, FLAC, OGG, MP3)"
            )
        out.append(p)
    return out


def fidelity_record(acc: SiSdrAccumulator, path: str | None, how: str = "over the whole input") -> dict:
    """The model's fidelity on the input it patched: SI-SDR of the unpatched decode against the input."""
    value = acc.result()
    out: dict = {
        "si_sdr_db": value,
        "reference": "the input, at the model's rate and channels",
        "estimate": f"the baseline (unpatched) decode through the {path} path",
        "computed": how,
    }
    if value is None:
        out["reason"] = "the input has no energy about its mean: SI-SDR is undefined"
    return out


def intervene_files(
    model: AudioModel,
    paths: Sequence[str | Path],
    spec: InterventionSpec,
    out_dir: str | Path,
    target_hz: Sequence[float] = (),
    scorers: Sequence[str] | None = None,
    chunk_s: float = DEFAULT_CHUNK_S,
    overlap_s: float = DEFAULT_OVERLAP_S,
    progress: Callable[[str], Any] | None = None,
    notify: Callable[[str], Any] | None = None,
) -> list[dict[str, Any]]:
    """Patch each audio file and write its outputs; returns each input's ``scores.json`` content."""
    from steerlab import plugins, provenance
    from steerlab.figures import class_figure, spectrogram_figure
    from steerlab.interventions import is_chunkable

    if not paths:
        raise SteerlabError("no audio inputs given")
    started = time.time()
    # Cheap checks first, on every input and option, before any file is decoded: paths that exist,
    # headers that read, then layer, type, direction, decode path and codebooks, targets.
    paths = check_input_paths(paths)
    for p in paths:
        audio.probe(p)
    layer = layers(model).get(spec.layer)
    itype = plugins.interventions().get(spec.intervention)
    if spec.direction is not None:
        spec.direction.check_fits(layer)
    check_n_q(model, model.check_path(spec.path or model.default_path), spec.n_q)
    check_targets(model, target_hz)
    # Every input is decoded once before any model work: a file that cannot be used (unreadable,
    # NaN, no samples) fails here, and lengths are the samples that decode, not the header's estimate.
    infos = [audio.scan(p) for p in paths]  # a file decoding far short of its header warns (scan)
    if all(spec.span.start_s >= info.duration_s for info in infos):
        raise InterventionError(f"start_s {spec.span.start_s} s is past the end of every input", parameter="start_s")
    for p, info in zip(paths, infos):  # one input the span misses would be a silent no-op, scored as "no change"
        if spec.span.start_s >= info.duration_s:
            span = f"start_s {spec.span.start_s:g} s" + (
                "" if spec.span.end_s is None else f" to end_s {spec.span.end_s:g} s"
            )
            raise InterventionError(
                f"the span ({span}) lies beyond {p.name}, which is {info.duration_s:.3g} s long: "
                f"set start_s below {info.duration_s:.3g} s or leave {p.name} out",
                parameter=("start_s", "end_s"),
            )
    whole = not model.has_decoder or not is_chunkable(itype)
    for p, info in zip(paths, infos):
        if whole and info.duration_s > chunk_s:
            why = (
                f"{model.name} has no decoder and classifies each input whole"
                if not model.has_decoder
                else f"intervention {itype.name!r} depends on earlier frames or absolute time"
            )
            raise InterventionError(
                f"{p.name} is {info.duration_s:.1f} s, longer than chunk_s {chunk_s:g}, but {why};"
                f" raise chunk_s to at least {math.ceil(info.duration_s)} or shorten the input",
                parameter="chunk_s",
            )
    if not whole:
        check_chunking(model, chunk_s, overlap_s)
    loaded: dict[int, tuple[np.ndarray, Any]] = {}
    for i, (p, info) in enumerate(zip(paths, infos)):
        if info.duration_s <= chunk_s:
            loaded[i] = audio.load(p, model.sample_rate, model.channels, info=info)
    check_targets(model, target_hz)
    resolved = engine.resolve(model, spec)
    engine.check_items(
        resolved, [loaded[i][0].shape[-1] for i in sorted(loaded)], [paths[i].name for i in sorted(loaded)]
    )
    prepared = resolved.prepared
    with audio.output_dir(out_dir) as out:  # removed again if the run fails or is interrupted before a result
        results = []
        for i, (p, info, stem) in enumerate(zip(paths, infos, _unique_stems(paths))):
            if progress:
                progress(p.name)
            work = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=out))
            try:
                normal_permissions(work, directory=True)
                title = f"{model.name} {spec.layer} {spec.intervention} alpha={spec.strength.alpha}"
                if i in loaded:
                    wave, conversion = loaded.pop(i)
                    res = intervene(model, [wave], spec, target_hz, scorers, names=[stem], prepared=prepared)[0]
                    scores, base, patched, record = res.scores, res.baseline, res.patched, res.record
                    if model.has_decoder:
                        acc = SiSdrAccumulator()
                        acc.add(wave, res.baseline)
                        record = {**record, "fidelity": fidelity_record(acc, record.get("path"))}
                    conv = conversion.describe()
                    if model.has_decoder:
                        audio.write_wav(work / "baseline.wav", res.baseline, model.sample_rate)
                        audio.write_wav(work / "patched.wav", res.patched, model.sample_rate)
                else:
                    scores, base, patched, record = _process_long(
                        model, p, spec, target_hz, scorers, work, chunk_s, overlap_s, prepared, info
                    )
                    # the same conversion as a short input's, done chunk by chunk (audio.iter_chunks)
                    conversion = audio.Conversion(info.sample_rate, info.channels, model.sample_rate, model.channels)
                    conv = (
                        f"{conversion.describe()}; streamed in {record['chunks']} chunks of {record['chunk_s']:g} s "
                        f"overlapping {record['overlap_s']:g} s"
                    )
                if notify and conv and (not conv.startswith("no conversion") or "streamed" in conv):
                    notify(f"{p.name}: {conv}")
                if model.has_decoder:
                    spectrogram_figure(
                        base, patched, model.sample_rate, work / "spectrogram.png", target_hz, title=title
                    )
                elif "classification" in scores:
                    class_figure(scores["classification"], work / "probabilities.png", title=title)
                else:  # an output space of its own (e.g. pitch salience [bins, frames]): keep both arrays
                    np.save(work / "baseline.npy", np.asarray(base, dtype=np.float32))
                    np.save(work / "patched.npy", np.asarray(patched, dtype=np.float32))
                check = record.get("output_check")
                if notify and check and check["flags"]:
                    notify(f"warning: {p.name}: {check['message']}")
                doc = {
                    "input": {**info.to_dict(), "path": str(p.resolve()), "conversion": conv},
                    **record,
                    "scores": scores,
                    "provenance": provenance.record(inputs=[p], started=started, device=model),
                }
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
