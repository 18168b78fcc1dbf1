"""Corpora and activation streams: the data that features and archetypes are learned from.

A :class:`Corpus` turns specs (the CLI's ``--data``) into clips ``(clip_id, wave [channels, samples])``
at a model's rate, lazily, one clip at a time:

- a folder (searched recursively) or a single file of audio (``.wav .flac .ogg .mp3``,
  any rate and channel count, converted by :func:`steerlab.audio.load`); files longer
  than ``chunk_seconds`` are read in consecutive chunks (:func:`steerlab.audio.iter_chunks`,
  no overlap) and each chunk is its own clip;
- ``synth:N``: N clips of the synthetic music corpus (:mod:`steerlab.synth`);
- reference sets: ``noise:N`` (white Gaussian noise, RMS 0.1), ``flat:N`` (constant
  signals at levels uniform in [-0.9, 0.9]) and ``sines:N`` (pure sines of amplitude 0.5,
  log-spaced from 50 to 8000 Hz, capped at 0.45 of the sample rate).

Bad input files (unreadable, empty, holding NaN or infinite samples) are found before
any capture, by one decode pass over every file (:func:`check_audio_files`, shared by
every command that reads a ``--data`` folder): by default the first pass fails with one
line naming the first bad file and how many there are (:class:`BadFilesError`); with
``skip_bad_files=True`` (``--skip-bad-files``) they are skipped and recorded in the
:class:`Manifest`. A corpus that yields no vectors at all is a :class:`CorpusError`, and
one whose audio is a single constant (silence, DC) is refused by :func:`refuse_constant`,
the check every capture of user data calls.

:func:`stream_vectors` runs clips through the model a few at a time
(:func:`steerlab.tracing.capture`) and yields float32 blocks ``[b, channels]``: response
vectors ``r_t`` (``mode="features"``) or generators ``g_t = r_{t+1} - r_t``
(``mode="archetypes"``), computed only between adjacent frames of one clip. Chunks of a
long file are clips, so the one pair spanning each chunk boundary is dropped (one
generator per ``chunk_seconds`` of audio) rather than stitched across a boundary where
the model restarted from silence. Only a few clips' activations and one block of vectors
are ever held, so memory does not grow with the corpus.

:func:`write_shards` stores a stream as safetensors shards plus ``manifest.json``;
:class:`ShardReader` reads them back as the block factory :func:`steerlab.sae.train_sae`
takes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from steerlab import validation as check
from steerlab.errors import AudioError, BadFilesError, ConfigError, CorpusError, OutputError, first_line

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MODES = ("features", "archetypes")
REFERENCE_KINDS = ("synth", "noise", "flat", "sines")
SHARD_FORMAT, SHARD_VERSION, SHARD_MANIFEST = "steerlab-shards", 1, "manifest.json"
NOISE_RMS, SINE_AMPLITUDE, SINE_LOW_HZ, SINE_HIGH_HZ = 0.1, 0.5, 50.0, 8000.0

Clip = tuple[str, Any]  # (clip_id, wave [channels, samples]: numpy array or torch tensor)


def check_audio_files(
    paths: Iterable[str | Path], skip_bad: bool = False, label: str = "specs", parameter: str = "specs"
) -> tuple[list[Path], list[dict[str, str]]]:
    """Decode every file of ``paths`` once (:func:`steerlab.audio.scan`: header readable, at
    least one sample decodes, every sample finite) before any expensive work.

    Returns ``(usable, bad)``: the usable paths in the given order and one ``{"path",
    "reason"}`` per bad file. Without ``skip_bad`` any bad file raises
    :class:`BadFilesError`, one line naming ``label``, how many of the files are bad, the
    first one and its reason, and the parameter that skips them (``.parameters``:
    ``(parameter, "skip_bad_files")``, ``parameter`` being the one that gave ``paths``, so the
    CLI names both flags): the README's contract that bad
    input is one Error line, never a silent skip. Cost: one decode pass per file (an MP3
    decodes at about 1,000x real time), memory one block.
    """
    import soundfile as sf

    from steerlab import audio

    files = [Path(p) for p in paths]
    usable: list[Path] = []
    bad: list[dict[str, str]] = []
    for p in files:
        try:
            audio.scan(p)
        except (AudioError, sf.SoundFileError, OSError, ValueError, RuntimeError) as exc:
            bad.append({"path": str(p), "reason": first_line(exc)})
            continue
        usable.append(p)
    if bad and not skip_bad:
        raise BadFilesError(
            f"{label}: {len(bad)} of {len(files)} audio files cannot be used (first: "
            f"{bad[0]['reason']}); fix or remove them, or pass skip_bad_files to skip them",
            parameter=(parameter, "skip_bad_files"),
        )
    return usable, bad


def bad_files_note(bad: list[dict[str, str]], label: str = "specs", skip: str = "skip_bad_files") -> str:
    """The line (for stderr or a log) saying that ``skip_bad_files`` skipped ``bad``: ``label``
    names the data, ``skip`` the switch as the caller spells it (a command passes its flag)."""
    return f"{label}: skipping {len(bad)} audio files that cannot be used ({skip}; first: {bad[0]['reason']})"


def refuse_constant(manifest: Manifest, where: str, source: str) -> None:
    """Raise :class:`steerlab.sae.NoVarianceError` when every sample of every clip of a pass
    (``manifest``, filled by :meth:`Manifest.saw`) is one value: silence or DC. A layer's
    response to such audio may still move (a recurrent state settling, padding at the
    edges), but it describes the model's transient, not the data, so nothing learned or
    measured from it means anything. The one corpus-level check of every command that
    captures user data (``learn``, ``analyze``); ``where`` names the model and layer,
    ``source`` the data."""
    from steerlab.sae import NoVarianceError

    if manifest.constant:
        raise NoVarianceError(
            f"the data has no variance at {where}: every sample of its {manifest.clips} clips from "
            f"{source} equals {manifest.input_min:g} (silence or a constant signal); nothing was "
            "written",
            None,
        )


@dataclass
class Manifest:
    """What one pass over a corpus read and produced."""

    sources: list[str] = field(default_factory=list)
    files_seen: int = 0
    files_used: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    clips: int = 0  # clips (and chunks of long files) run through the model
    seconds: float = 0.0  # audio in those clips, at the model's rate
    vectors: int = 0
    # the smallest and largest sample of those clips (None before the first): equal when the
    # whole corpus is one constant (silence, DC), which holds nothing to learn at any layer
    input_min: float | None = None
    input_max: float | None = None

    def skip(self, path: Path | str, reason: str) -> None:
        self.skipped.append({"path": str(path), "reason": reason})

    def saw(self, wave: Any) -> None:
        """Fold one clip's sample range into :attr:`input_min` / :attr:`input_max`."""
        low, high = float(wave.min()), float(wave.max())
        self.input_min = low if self.input_min is None else min(self.input_min, low)
        self.input_max = high if self.input_max is None else max(self.input_max, high)

    @property
    def constant(self) -> bool:
        """Every sample of every clip seen has the same value."""
        return self.input_min is not None and self.input_min == self.input_max

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "files_skipped": len(self.skipped)}


def _seed_for(seed: int, index: int) -> int:
    """An independent seed for the ``index``-th source, so ``synth:4 synth:4`` are different clips."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _channels(mono: np.ndarray, channels: int) -> np.ndarray:
    return np.repeat(mono[None].astype(np.float32), channels, axis=0)


@dataclass(frozen=True)
class SyntheticSource:
    """``kind:N``: N generated clips of ``seconds`` each (``kind`` in :data:`REFERENCE_KINDS`)."""

    kind: str
    n: int

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.n}"

    def estimate_seconds(self, clip_seconds: float) -> float:
        return self.n * clip_seconds

    def clips(
        self, sample_rate: int, channels: int, seed: int, clip_seconds: float, chunk_seconds: float, manifest: Manifest
    ) -> Iterator[Clip]:
        n = int(round(clip_seconds * sample_rate))
        t = np.arange(n) / sample_rate
        rng = np.random.default_rng(seed)
        if self.kind == "synth":
            from steerlab.synth import corpus, synthesize

            for i, spec in enumerate(corpus(self.n, seed, sample_rate, clip_seconds)):
                yield f"synth:{i}:{spec.kind}:{spec.seed}", _channels(synthesize(spec), channels)
        elif self.kind == "noise":
            for i in range(self.n):
                yield f"noise:{i}", _channels(NOISE_RMS * rng.standard_normal(n), channels)
        elif self.kind == "flat":
            for i in range(self.n):
                level = float(rng.uniform(-0.9, 0.9))
                yield f"flat:{i}:{level:.4f}", _channels(np.full(n, level), channels)
        else:
            high = min(SINE_HIGH_HZ, 0.45 * sample_rate)
            for i, f in enumerate(np.geomspace(SINE_LOW_HZ, high, self.n)):
                yield f"sines:{i}:{f:.1f}Hz", _channels(SINE_AMPLITUDE * np.sin(2 * np.pi * f * t), channels)


@dataclass(frozen=True)
class FileSource:
    """A folder of audio files (recursive, sorted) or one audio file; ``exclude``: paths left out
    (the files a held-out split keeps for evaluation, :func:`steerlab.fidelity.held_out`)."""

    path: Path
    exclude: frozenset[str] = frozenset()

    @property
    def spec(self) -> str:
        return str(self.path)

    def files(self) -> list[Path]:
        if self.path.is_dir():
            found = sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        else:
            found = [self.path]
        return [p for p in found if str(p) not in self.exclude] if self.exclude else found

    def estimate_seconds(self, clip_seconds: float) -> float:
        from steerlab import audio

        total = 0.0
        for p in self.files():
            try:
                total += audio.probe(p).duration_s
            except AudioError:
                pass
        return total

    def clips(
        self,
        sample_rate: int,
        channels: int,
        seed: int,
        clip_seconds: float,
        chunk_seconds: float,
        manifest: Manifest,
        bad: dict[str, str] | None = None,
        skip_bad: bool = False,
    ) -> Iterator[Clip]:
        """Clips of the files in order. ``bad`` (path -> reason, from :func:`check_audio_files`)
        are skipped and recorded; a file that fails while it is read ends the pass with a
        :class:`BadFilesError` unless ``skip_bad``."""
        import soundfile as sf

        from steerlab import audio

        bad = bad or {}
        for p in self.files():
            manifest.files_seen += 1
            if str(p) in bad:
                manifest.skip(p, bad[str(p)])
                continue
            name = str(p.relative_to(self.path)) if self.path.is_dir() else p.name
            chunks = 0
            try:
                info = audio.probe(p)
                # a constant file (DC, silence) stays constant at any rate: resampling's edge and
                # per-phase ripple is not data (issue 10), so its clips are its own level, exactly
                levels = _constant_levels(p, channels) if info.sample_rate != sample_rate else None
                if info.duration_s <= chunk_seconds:
                    wave, _ = audio.load(p, sample_rate, channels)
                    chunks = 1
                    yield name, _level_or(wave, levels)
                else:
                    for start, wave in audio.iter_chunks(p, sample_rate, channels, chunk_seconds, 0.0):
                        chunks += 1
                        yield f"{name}@{start}", _level_or(wave, levels)
            except (AudioError, sf.SoundFileError, OSError, ValueError, RuntimeError) as exc:
                reason = first_line(exc) + (f" (after {chunks} chunks had been used)" if chunks else "")
                if not skip_bad:
                    raise BadFilesError(
                        f"specs {self.spec}: {reason}; fix or remove the file, or pass skip_bad_files to skip it",
                        parameter=("specs", "skip_bad_files"),
                    ) from None
                manifest.skip(p, reason)
                continue
            manifest.files_used += 1


def _constant_levels(path: Path, channels: int) -> np.ndarray | None:
    """``[channels, 1]`` levels when every sample of the file, mixed to ``channels`` as
    :func:`steerlab.audio.load` mixes, is one constant per channel; else None (also for a
    file soundfile cannot stream: the load that follows reports it). Streams the file and
    stops at the first block that varies, so a file with content costs one block."""
    from steerlab import audio

    first = None
    try:
        for block in audio.iter_blocks(path, 1 << 16):  # [C, T]; decoder chatter captured
            block = block.T  # [T, C]
            if block.shape[1] > 1 and block.shape[1] != channels:
                block = block.mean(axis=1, keepdims=True)
            if first is None and len(block):
                first = block[0].copy()
            if first is not None and (block != first).any():
                return None
    except (AudioError, OSError, RuntimeError, ValueError):
        return None
    if first is None:
        return None
    return np.broadcast_to(first[:, None], (channels, 1)).astype(np.float32) if len(first) in (1, channels) else None


def _level_or(wave: np.ndarray, levels: np.ndarray | None) -> np.ndarray:
    return wave if levels is None else np.ascontiguousarray(np.broadcast_to(levels, wave.shape), dtype=np.float32)


Source = SyntheticSource | FileSource
_KIND_N = re.compile(r"^([a-z_]+):(\S+)$")


def parse_source(spec: str) -> Source:
    """A corpus spec (an item of :class:`Corpus`'s ``specs``) as a source; an existing path wins over the ``kind:N`` forms."""
    p = Path(spec).expanduser()
    if p.exists():
        if not p.is_dir() and p.suffix.lower() not in AUDIO_SUFFIXES:
            raise CorpusError(
                f"specs {spec}: not a folder or an audio file ({', '.join(AUDIO_SUFFIXES)})", parameter="specs"
            )
        return FileSource(p)
    m = _KIND_N.match(spec)
    if m and m.group(1) in REFERENCE_KINDS:
        try:
            n = int(m.group(2))
        except ValueError:
            n = 0
        if n < 1:
            raise CorpusError(f"specs {spec}: N must be a whole number >= 1 (e.g. {m.group(1)}:100)", parameter="specs")
        return SyntheticSource(m.group(1), n)
    from steerlab.validation import nearest

    close = nearest(m.group(1), REFERENCE_KINDS) if m else None
    hint = f" Did you mean {close}:{m.group(2)}?" if close and m else ""
    raise CorpusError(
        f"specs {spec}: no such file or folder, and not one of {', '.join(k + ':N' for k in REFERENCE_KINDS)}.{hint}",
        parameter="specs",
    )


class Corpus:
    """Clips from several sources, at one sample rate and channel count, yielded lazily.

    Iterating starts a new pass (and a new :attr:`manifest`); every pass yields the same
    clips in the same order. ``seed`` makes the generated sources reproducible.
    """

    def __init__(
        self,
        specs: Iterable[str | Source],
        sample_rate: int,
        channels: int,
        seed: int = 0,
        clip_seconds: float = 1.0,
        chunk_seconds: float = 10.0,
        skip_bad_files: bool = False,
    ) -> None:
        self.skip_bad_files = bool(skip_bad_files)
        self._bad: dict[str, str] | None = None  # path -> reason, once check_files has run
        self.sources: list[Source] = [parse_source(s) if isinstance(s, str) else s for s in specs]
        if not self.sources:
            raise CorpusError(
                "specs is empty; give a folder of audio, an audio file, or synth:N, noise:N, flat:N, sines:N",
                parameter="specs",
            )
        if not (clip_seconds > 0 and math.isfinite(clip_seconds)):
            raise CorpusError(f"clip length must be a positive number of seconds, got {clip_seconds!r}")
        if round(clip_seconds * sample_rate) < 1:
            raise CorpusError(
                f"clip_seconds {clip_seconds!r} is shorter than one sample at {sample_rate} Hz; "
                "give a longer clip length",
                parameter="clip_seconds",
            )
        check.integer("seed", seed, low=0)  # numpy seeds the generated clips: only non-negative seeds
        if not (chunk_seconds > 0 and math.isfinite(chunk_seconds)):
            raise CorpusError(f"chunk length must be a positive number of seconds, got {chunk_seconds!r}")
        self.sample_rate, self.channels, self.seed = int(sample_rate), int(channels), int(seed)
        self.clip_seconds, self.chunk_seconds = float(clip_seconds), float(chunk_seconds)
        self.manifest = self.new_manifest()

    @classmethod
    def for_model(cls, model: Any, specs: Iterable[str | Source], **kwargs: Any) -> Corpus:
        return cls(specs, model.sample_rate, model.channels, **kwargs)

    def new_manifest(self) -> Manifest:
        return Manifest(sources=[s.spec for s in self.sources])

    def without_files(self, paths: Iterable[str]) -> Corpus:
        """The same corpus less the files ``paths`` (as :meth:`FileSource.files` names them); the
        files already checked (:meth:`check_files`) are not decoded again."""
        gone = frozenset(paths)
        sources = [replace(s, exclude=s.exclude | gone) if isinstance(s, FileSource) else s for s in self.sources]
        out = Corpus(
            sources,
            self.sample_rate,
            self.channels,
            self.seed,
            self.clip_seconds,
            self.chunk_seconds,
            self.skip_bad_files,
        )
        if self._bad is not None:
            out._bad = {p: r for p, r in self._bad.items() if p not in gone}
        return out

    def describe(self) -> str:
        """The sources and only the options that apply to them: a folder of real files is never
        described as generated clips (file hashes are in the records' provenance)."""
        parts = []
        if any(isinstance(s, SyntheticSource) for s in self.sources):
            parts.append(f"generated clips of {self.clip_seconds:g} s, seed {self.seed}")
        if any(isinstance(s, FileSource) for s in self.sources):
            parts.append(f"audio files, read in chunks of {self.chunk_seconds:g} s")
        return f"{', '.join(s.spec for s in self.sources)} ({'; '.join(parts)})"

    def estimate_seconds(self) -> float:
        """Audio the corpus holds, from file headers (cheap; unreadable files count 0)."""
        return sum(s.estimate_seconds(self.clip_seconds) for s in self.sources)

    def check_files(self) -> list[dict[str, str]]:
        """Decode every file of the file sources once, before any capture
        (:func:`check_audio_files`); runs once per corpus, and the first pass runs it if no
        caller did. Returns the bad files (``{"path", "reason"}``), which passes skip and
        record in their manifest. Raises :class:`BadFilesError` when there are any and the
        corpus was not made with ``skip_bad_files=True``."""
        if self._bad is None:
            paths = [p for s in self.sources if isinstance(s, FileSource) for p in s.files()]
            label = "specs " + ", ".join(s.spec for s in self.sources if isinstance(s, FileSource))
            _, bad = check_audio_files(paths, self.skip_bad_files, label)
            self._bad = {b["path"]: b["reason"] for b in bad}
        return [{"path": p, "reason": r} for p, r in self._bad.items()]

    def clips(self, manifest: Manifest | None = None) -> Iterator[Clip]:
        """One pass: ``(clip_id, float32 [channels, samples])``; file counts go to ``manifest``.
        The first pass checks every file first (:meth:`check_files`)."""
        manifest = manifest if manifest is not None else self.new_manifest()
        self.manifest = manifest
        self.check_files()
        for i, source in enumerate(self.sources):
            args = (
                self.sample_rate,
                self.channels,
                _seed_for(self.seed, i),
                self.clip_seconds,
                self.chunk_seconds,
                manifest,
            )
            if isinstance(source, FileSource):
                yield from source.clips(*args, bad=self._bad, skip_bad=self.skip_bad_files)
            else:
                yield from source.clips(*args)

    def __iter__(self) -> Iterator[Clip]:
        return self.clips()


def capture_activations(
    model: Any, waves: Iterable[Any], layer: Any, *, path: str | None = None, max_batch: int = 16, device: Any = None
) -> list[np.ndarray]:
    """The unpatched activations of one layer of ``model`` for each wave: the public way to read a
    layer (``steerlab.capture_activations``).

    ``waves``: a list (any iterable) of arrays or CPU tensors, one per input, each
    ``[channels, samples]`` at the model's sample rate with its channel count (load files with
    :func:`steerlab.load_audio`), or a 3-D array ``[inputs, channels, samples]``. A 1-D
    ``[samples]`` wave is taken as mono ``[1, samples]``, so it is accepted for a mono model and
    refused for a multi-channel one. ``layer``: a name or alias from ``steerlab.layers(model)``
    (or its ``LayerInfo``). ``path``: the decode path (default: the one that reaches the layer).
    Inputs are batched ``max_batch`` per traced pass, exactly as a patched run batches them, so
    a capture equals the activation an intervention sees. ``device``: where the passes run
    (:func:`steerlab.devices.resolve`; the model is moved there first; None: where the model
    is); the activations come back to the CPU. Returns one float32 array
    ``[channels, frames]`` per wave, ``frames = layer.frames_for(samples)``. Raises
    :class:`~steerlab.errors.AudioError` for unusable audio; :class:`~steerlab.errors.ConfigError`
    (``parameter="waves"``) for a single 1-D or 2-D array passed as ``waves`` instead of a list
    (iterating it would make each sample or row an input) and for a wave whose channel count
    is not the model's; ``SteerlabError`` for an unknown layer or path.

    Example::

        acts = steerlab.capture_activations(model, [wave], "first_conv")
        acts[0].shape   # (channels, frames)
    """
    import torch

    from steerlab import devices, tracing
    from steerlab.loading import layers

    info = layers(model).get(layer) if isinstance(layer, str) else layer
    arrays = check_waves(model, waves)
    devices.place(model, device)
    acts = tracing.capture(model, [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays], [info], max_batch, path)
    return [a[info.name].numpy() for a in acts]


def check_waves(model: Any, waves: Any) -> list[np.ndarray]:
    """``waves`` as the list of float32 arrays ``[model.channels, samples]`` that
    :func:`capture_activations` and :func:`steerlab.intervene` take, checked.

    Raises :class:`~steerlab.errors.ConfigError` (``parameter="waves"``) for a single 1-D or
    2-D array instead of a list (iterating it would make each sample or row an input), a path
    or a string (files are read with :func:`steerlab.load_audio`), anything not iterable, and
    a wave whose channel count is not the model's; :class:`~steerlab.errors.AudioError` for
    a wave that is not finite audio (:func:`steerlab.audio.validate_array`)."""
    from steerlab import audio

    expected = f"[{model.channels}, samples]" + (" (or [samples])" if model.channels == 1 else "")
    ndim = getattr(waves, "ndim", None)
    if isinstance(ndim, int) and ndim <= 2:
        raise ConfigError(
            f"waves must be a list of waves, each {expected} for {model.name}; got one array of shape "
            f"{tuple(getattr(waves, 'shape', ()))}: pass [wave]",
            parameter="waves",
        )
    if isinstance(waves, (str, bytes, Path)) or not hasattr(waves, "__iter__"):
        raise ConfigError(
            f"waves must be a list of waves, each {expected} for {model.name}; got {type(waves).__name__} "
            f"{str(waves)[:60]!r}: read files with steerlab.load_audio(path, model.sample_rate, model.channels)",
            parameter="waves",
        )
    items = list(waves)
    arrays = [audio.validate_array(w, f"waves[{i}]") for i, w in enumerate(items)]
    for i, (w, a) in enumerate(zip(items, arrays)):
        if a.shape[0] != model.channels:
            given = "a 1-D wave (taken as mono)" if np.ndim(w) == 1 else f"{a.shape[0]} channels"
            raise ConfigError(
                f"waves[{i}] has {given} but {model.name} takes {model.channels}: expected shape {expected}; "
                "load files with steerlab.load_audio(path, model.sample_rate, model.channels) to convert",
                parameter="waves",
            )
    return arrays


def _rows(act: Any, mode: str) -> Any:
    """``[channels, frames]`` -> response vectors ``[frames, channels]`` or generators ``[frames - 1, channels]``."""
    if mode == "features":
        return act.T
    return (act[:, 1:] - act[:, :-1]).T


def stream_vectors(
    model: Any,
    corpus: Corpus | Iterable[Clip],
    layer: Any,
    mode: str = "features",
    subsample: float | None = None,
    seed: int = 0,
    batch_clips: int = 8,
    batch_seconds: float = 60.0,
    block_vectors: int = 65_536,
    max_batch: int = 16,
    manifest: Manifest | None = None,
) -> Iterator[Any]:
    """Float32 blocks ``[b, channels]`` of response vectors or generators of ``layer``.

    ``corpus``: a :class:`Corpus` or any iterable of ``(clip_id, wave [channels, samples])``
    at the model's rate. Clips are captured ``batch_clips`` at a time (fewer when they
    add up to ``batch_seconds``), and vectors are yielded in blocks of at least
    ``block_vectors`` rows (the last one may be smaller), in corpus order, frames in time
    order. ``subsample`` keeps each vector with that probability, drawn from a generator
    seeded with ``seed`` at the start of every call, so repeated calls yield the same
    data (as :func:`steerlab.sae.train_sae` requires of a factory). Counts go to
    ``manifest`` (the corpus's own when it is a :class:`Corpus` and none is given).
    Raises :class:`CorpusError` at the end of a pass that produced no vectors.
    """
    import torch

    from steerlab import tracing
    from steerlab.loading import layers

    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}; got {mode!r}", parameter="mode")
    if subsample is not None and not (isinstance(subsample, (int, float)) and 0 < subsample <= 1):
        raise CorpusError(f"subsample must be a fraction in (0, 1], got {subsample!r}", parameter="subsample")
    for name, value in (("batch_clips", batch_clips), ("block_vectors", block_vectors), ("max_batch", max_batch)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1; got {value!r}", parameter=name)
    info = layers(model).get(layer) if isinstance(layer, str) else layer
    if manifest is None:
        manifest = corpus.new_manifest() if isinstance(corpus, Corpus) else Manifest()
    clips = corpus.clips(manifest) if isinstance(corpus, Corpus) else iter(corpus)
    gen = torch.Generator().manual_seed(int(seed))
    limit = batch_seconds * model.sample_rate
    pending: list[Any] = []
    blocks: list[Any] = []
    buffered = 0

    def run_batch() -> Iterator[Any]:
        nonlocal buffered
        acts = tracing.capture(model, pending, [info], max_batch)
        pending.clear()
        for act in acts:
            rows = _rows(act[info.name], mode)
            if subsample is not None and subsample < 1:
                rows = rows[torch.rand(len(rows), generator=gen) < subsample]
            if len(rows):
                blocks.append(rows.contiguous())
                buffered += len(rows)
            if buffered >= block_vectors:
                yield flush()

    def flush() -> Any:
        nonlocal buffered
        block = torch.cat(blocks) if len(blocks) > 1 else blocks[0]
        blocks.clear()
        manifest.vectors += buffered
        buffered = 0
        return block

    for clip_id, wave in clips:
        w = torch.as_tensor(np.asarray(wave) if not isinstance(wave, torch.Tensor) else wave).float()
        if w.ndim != 2 or w.shape[0] != model.channels or w.shape[1] == 0:
            raise CorpusError(
                f"clip {clip_id}: expected a wave [channels={model.channels}, samples], got shape {list(w.shape)}"
            )
        pending.append(w)
        manifest.saw(w)
        manifest.clips += 1
        manifest.seconds += w.shape[1] / model.sample_rate
        if len(pending) >= batch_clips or sum(p.shape[1] for p in pending) >= limit:
            yield from run_batch()
    if pending:
        yield from run_batch()
    if buffered:
        yield flush()
    if manifest.vectors == 0:
        raise CorpusError(
            _empty_message(manifest, info.name, mode, subsample),
            parameter="subsample" if subsample is not None and subsample < 1 else None,
        )


def _empty_message(manifest: Manifest, layer: str, mode: str, subsample: float | None) -> str:
    where = ", ".join(manifest.sources) or "the corpus"
    if manifest.clips == 0:
        skipped = ""
        if manifest.skipped:
            first = manifest.skipped[0]
            skipped = f", {len(manifest.skipped)} skipped (first: {first['path']}: {first['reason']})"
        return f"no usable audio in {where}: {manifest.files_seen} audio files seen{skipped}"
    why = "clips shorter than two frames" if mode == "archetypes" else "clips with no frames"
    if subsample is not None and subsample < 1:
        why += f" or subsample {subsample:g} too small"
    return f"{manifest.clips} clips from {where} gave no {mode} vectors at {layer} ({why})"


def write_shards(
    vectors: Iterable[Any],
    folder: str | Path,
    shard_vectors: int = 262_144,
    manifest: Manifest | None = None,
    meta: dict[str, Any] | None = None,
) -> ShardReader:
    """Write a stream of ``[b, width]`` blocks as ``shard-00000.safetensors``, ... (tensor
    ``vectors``, float32, ``shard_vectors`` rows each but the last) and ``manifest.json``
    (format, version, width, counts, the corpus ``manifest`` and ``meta``), written last,
    so a folder with a manifest is complete. ``folder`` must be new or empty."""
    import torch

    from steerlab.artifacts import atomic_save_safetensors, atomic_write_json

    if not isinstance(shard_vectors, int) or shard_vectors < 1:
        raise ConfigError(f"shard_vectors must be an integer >= 1; got {shard_vectors!r}", parameter="shard_vectors")
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create shard folder {folder}: {exc.strerror}") from exc
    if any(folder.iterdir()):
        raise OutputError(f"shard folder {folder} is not empty")
    shards: list[dict[str, Any]] = []
    width: int | None = None
    rest: list[Any] = []
    held = 0

    def write(block: Any) -> None:
        name = f"shard-{len(shards):05d}.safetensors"
        atomic_save_safetensors({"vectors": block.contiguous()}, folder / name)
        shards.append({"file": name, "n_vectors": int(len(block))})

    for block in vectors:
        block = torch.as_tensor(block).float()
        if block.ndim != 2 or (width is not None and block.shape[1] != width):
            raise ConfigError(
                f"shard input blocks must be [b, {width or 'width'}]; got {list(block.shape)}", parameter="vectors"
            )
        width = int(block.shape[1])
        rest.append(block)
        held += len(block)
        while held >= shard_vectors:
            buf = torch.cat(rest)
            write(buf[:shard_vectors])
            rest, held = [buf[shard_vectors:]], held - shard_vectors
    if held:
        write(torch.cat(rest))
    if not shards:
        raise CorpusError(f"no vectors to write to {folder}")
    atomic_write_json(
        {
            "format": SHARD_FORMAT,
            "version": SHARD_VERSION,
            "width": width,
            "n_vectors": sum(s["n_vectors"] for s in shards),
            "shards": shards,
            "manifest": manifest.to_json() if manifest is not None else None,
            "meta": meta or {},
        },
        folder / SHARD_MANIFEST,
    )
    return ShardReader(folder)


def _shard_schema() -> dict[str, Any]:
    from steerlab import schema

    return {
        "width": schema.integer(1),
        "n_vectors": schema.integer(1),
        "shards": schema.array(schema.obj({"file": schema.filename(), "n_vectors": schema.integer(1)}), True),
        "manifest": schema.nullable(schema.mapping()),
        "meta": schema.mapping(),
    }


_SHARD_SCHEMA = _shard_schema()


class ShardReader:
    """A shard folder as a block factory: ``reader()`` iterates float32 ``[b, width]`` shards,
    one in memory at a time, in written order (pass ``reader`` itself to ``train_sae``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        from steerlab import schema

        doc = schema.read_json(
            self.folder / SHARD_MANIFEST, _SHARD_SCHEMA, CorpusError, format=SHARD_FORMAT, versions=(SHARD_VERSION,)
        )
        if sum(s["n_vectors"] for s in doc["shards"]) != doc["n_vectors"]:
            raise CorpusError(
                f"{self.folder / SHARD_MANIFEST}: key 'n_vectors' ({doc['n_vectors']}) is not the sum "
                "of the shards' n_vectors"
            )
        missing = [s["file"] for s in doc["shards"] if not (self.folder / s["file"]).is_file()]
        if missing:
            raise CorpusError(f"{self.folder} is missing shards: {', '.join(missing)}")
        self.doc = doc
        self.width: int = doc["width"]
        self.n_vectors: int = doc["n_vectors"]

    @property
    def manifest(self) -> dict[str, Any] | None:
        return self.doc.get("manifest")

    def __call__(self) -> Iterator[Any]:
        from steerlab.schema import read_tensors

        for shard in self.doc["shards"]:
            path = self.folder / shard["file"]
            tensors = read_tensors(path, CorpusError)
            vectors = tensors.get("vectors")
            if vectors is None or vectors.ndim != 2 or vectors.shape[1] != self.width:
                raise CorpusError(f"{path}: key 'vectors' must be a [n, {self.width}] tensor, as the manifest says")
            yield vectors
