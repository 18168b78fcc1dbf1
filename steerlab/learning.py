"""Learn a dictionary (features or archetypes) of one layer from a corpus: what
``steerlab learn`` does, callable from Python.

:func:`steerlab.sae.train_sae` reads its data ``epochs + 2`` times (statistics, each
epoch, final evaluation), and every read must yield the same vectors. Two ways to
provide them (``stream``):

- ``"shards"``: capture once into safetensors shards in a temporary folder
  (:func:`steerlab.capture.write_shards`), train from the shards, delete them. One
  forward pass over the corpus; disk use is the size of the vectors.
- ``"recompute"``: a factory that re-runs the capture on every read. No disk, but
  ``epochs + 2`` forward passes.
- ``"auto"`` (default): shards when the estimated vectors (audio length from file
  headers x frame rate x channels x 4 bytes x subsample) fit ``budget_bytes`` and the
  cache folder has twice that free; otherwise recompute. Small layers and subsampled
  corpora shard; a first-layer capture of hours of audio recomputes instead of filling
  the disk.

Either way the model runs a few clips at a time and only one block of vectors is in
memory, so the corpus size is bounded by time, never by memory.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerlab import validation as check
from steerlab.capture import Corpus, Manifest, refuse_constant, stream_vectors, write_shards
from steerlab.errors import ConfigError, NoVarianceError, OutputError

if TYPE_CHECKING:
    from steerlab.dictionary import Dictionary
    from steerlab.sae import SAEConfig

STREAMS = ("auto", "shards", "recompute")
TARGET_MODES = {"feature": "features", "archetype": "archetypes"}
DEFAULT_BUDGET_BYTES = 2 * 2**30
_WHAT = {"feature": "response vectors", "archetype": "generators"}
_SHARD_FLOATS = 2**24  # 64 MiB of float32 per shard: one shard in memory at a time


def estimate_bytes(corpus: Corpus, layer: Any, subsample: float | None = None) -> int:
    """Bytes of float32 vectors a capture of ``layer`` over ``corpus`` will produce (about)."""
    frames = corpus.estimate_seconds() * layer.frame_rate * (subsample or 1.0)
    return int(frames * layer.channels * 4)


def _reporting(blocks, manifest: Manifest, progress: Callable[[str], None] | None, every_s: float = 2.0):
    """Pass blocks through, telling ``progress`` how far the capture has got (at most every ``every_s``)."""
    last = time.monotonic()
    for block in blocks:
        yield block
        if progress and time.monotonic() - last >= every_s:
            last = time.monotonic()
            progress(f"captured {manifest.clips} clips ({manifest.seconds:.1f} s), {manifest.vectors} vectors")


def _refusing_constant(blocks, manifest: Manifest, where: str, data: str):
    """Pass blocks through; at the end of the pass, refuse a corpus whose audio is one constant
    (:func:`steerlab.capture.refuse_constant`, the check every capture of user data shares)."""
    yield from blocks
    refuse_constant(manifest, where, data)


def learn_dictionary(
    model: Any,
    layer: str,
    target: str,
    corpus: Corpus,
    config: SAEConfig,
    *,
    subsample: float | None = None,
    stream: str = "auto",
    cache_dir: str | Path | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    max_batch: int = 16,
    progress: Callable[[str], None] | None = None,
    epoch_progress: Callable[[int, int, float], None] | None = None,
    device: Any = None,
    fidelity_clips: int = 0,
    fidelity_seconds: float = 2.0,
) -> Dictionary:
    """Capture ``layer`` over ``corpus``, train an SAE and return a
    :class:`steerlab.dictionary.Dictionary` (not yet saved) with its provenance:
    model name and weights hash, canonical layer name, target, data description, the
    corpus manifest (under ``data_manifest``, with the capture options) and metrics.

    ``target``: ``"feature"`` (over response vectors) or ``"archetype"`` (over generators).
    ``config``: the SAE's hyperparameters; ``config.width`` must be the layer's channels
    (``steerlab.api.layers(model).get(layer).channels``), and ``config.seed`` also seeds the
    subsampling. ``subsample``: the fraction of frames kept, in ``(0, 1]`` (None: all);
    ``stream``: how the vectors are fed to training (module docstring), ``cache_dir`` and
    ``budget_bytes`` bound the shards; ``max_batch`` clips share one forward pass;
    ``progress`` receives capture messages and ``epoch_progress(epoch, epochs, loss)`` runs
    after each epoch. ``device``: where the capture and the training run
    (:func:`steerlab.devices.resolve`; the model is moved there first); None: where the model
    is. The vectors stay on the CPU between capture and training; the dictionary comes back on
    the CPU and its provenance says where it was computed. ``fidelity_clips``: when > 0, that
    many clips of at most ``fidelity_seconds`` are held out of training
    (:func:`steerlab.fidelity.held_out`, seeded by ``config.seed``) and the dictionary's splice
    fidelity on them is stored as ``metrics["fidelity"]`` (:func:`steerlab.fidelity.measure`);
    0 (the default) trains on the whole corpus and measures nothing.

    Raises :class:`steerlab.errors.ConfigError` for an invalid ``target``, ``stream``,
    ``subsample`` or a ``config`` that does not fit the layer,
    :class:`steerlab.capture.BadFilesError` for unusable files in the corpus (before any
    capture; see :meth:`steerlab.capture.Corpus.check_files`),
    :class:`steerlab.capture.CorpusError` when the corpus yields no vectors and
    :class:`steerlab.sae.NoVarianceError` when its vectors at ``layer`` are all equal
    (silent files, a constant signal, one frame): such data would give a dictionary of
    dead latents, so none is made."""
    from steerlab import api, devices, provenance
    from steerlab.dictionary import Dictionary
    from steerlab.sae import SAEConfig, require_variance, train_sae

    started = time.time()

    check.choice("target", target, TARGET_MODES, what="dictionary target")
    check.choice("stream", stream, STREAMS)
    if subsample is not None:
        check.fraction("subsample", subsample)
    if not isinstance(config, SAEConfig):
        raise check.fail("config", "an SAEConfig", config)
    mode = TARGET_MODES[target]
    dev = devices.place(model, device)
    held = None
    if fidelity_clips:
        from steerlab.fidelity import held_out

        held = held_out(corpus, fidelity_clips, fidelity_seconds, config.seed)
        corpus = held.train
    info = api.layers(model).get(layer)
    corpus.check_files()  # bad files fail (or are skipped with --skip-bad-files) before any capture
    if config.width != info.channels:
        raise ConfigError(
            f"config.width ({config.width}) must equal the channels of layer {info.name} of "
            f"{model.name} ({info.channels})",
            parameter="config",
        )
    seed = config.seed
    estimate = estimate_bytes(corpus, info, subsample)
    cache = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir())
    if stream == "auto":
        try:
            free = shutil.disk_usage(cache).free
        except OSError:
            free = 0
        stream = "shards" if estimate <= budget_bytes and 2 * estimate <= free else "recompute"
    if progress:
        progress(
            f"{mode} of {model.name} {info.name} ({info.channels} channels, {info.frame_rate:g} frames/s) from "
            f"{corpus.describe()}; about {estimate / 2**20:.1f} MiB of vectors, {stream}"
        )

    def vectors(manifest: Manifest):
        blocks = stream_vectors(model, corpus, info, mode, subsample, seed, max_batch=max_batch, manifest=manifest)
        return _refusing_constant(
            _reporting(blocks, manifest, progress), manifest, f"{model.name} {info.name}", corpus.describe()
        )

    work = None
    data: Callable[[], Any]  # a block factory (see steerlab.sae.Data)
    try:
        if stream == "shards":
            try:
                work = Path(tempfile.mkdtemp(prefix="steerlab-vectors-", dir=cache))
            except OSError as exc:
                raise OutputError(
                    f"cannot create a shard folder in {cache}: {exc.strerror}", parameter="cache_dir"
                ) from None
            manifest = corpus.new_manifest()
            data = write_shards(
                vectors(manifest), work / "shards", max(1024, _SHARD_FLOATS // info.channels), manifest=manifest
            )
            if progress:
                progress(
                    f"captured {manifest.clips} clips ({manifest.seconds:.1f} s), {manifest.vectors} vectors "
                    f"in {len(data.doc['shards'])} shards"
                )
        else:
            passes: list[Manifest] = []

            def recompute():
                passes.append(corpus.new_manifest())
                return vectors(passes[-1])

            data = recompute

        try:
            sae, metrics = train_sae(data, config, progress=epoch_progress, device=dev)
        except NoVarianceError as exc:
            if exc.stats is None:
                raise
            require_variance(exc.stats, info.channels, f"{model.name} {info.name}", _WHAT[target], corpus.describe())
            raise
        if stream == "recompute":
            manifest = passes[-1]
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    description = (
        f"{target}s of {model.name} {info.name} over "
        f"{'response vectors r_t' if target == 'feature' else 'generators g_t = r_(t+1) - r_t'}; "
        f"data {corpus.describe()}" + (f"; subsample {subsample:g}" if subsample else "")
    )
    capture_options = {
        "mode": mode,
        "layer": info.name,
        "subsample": subsample,
        "seed": seed,
        "stream": stream,
        "clip_seconds": corpus.clip_seconds,
        "chunk_seconds": corpus.chunk_seconds,
        "estimated_bytes": estimate,
        "input_sample_rate": corpus.sample_rate,
        "input_channels": corpus.channels,
    }
    d = Dictionary(
        sae=sae,
        model=model.name,
        layer=info.name,
        target=target,
        weights_hash=model.weights_hash(),
        data_description=description,
        metrics=metrics,
        data_manifest={
            **manifest.to_json(),
            "capture": capture_options,
            "provenance": provenance.record(inputs=[src.spec for src in corpus.sources], started=started, device=model),
        },
    )
    if held is not None:
        from steerlab.fidelity import measure

        if progress:
            progress(f"splice fidelity on {held.record['clips']} held-out clips ({held.record['seconds']:.1f} s)")
        d.metrics["fidelity"] = measure(model, d, held)
    return d
