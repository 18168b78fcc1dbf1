"""The data an analysis measures: bounded captures of a layer with their origin.

:func:`capture` runs a corpus through a model (a few clips per traced pass, via
:func:`steerlab.tracing.capture`) and keeps a seeded random subset of at most
``max_vectors`` frames, each with its clip index and frame index, so the waveform
fragments behind a vector can be found again (:func:`fragments_for`, a second pass
over the corpus that runs no model). Features keep response vectors ``r_t``;
archetypes keep generators ``g_t = r_{t+1} - r_t`` (within one clip only) and their
starting vectors ``r_t``. Memory is bounded whatever the corpus size: frames are kept
with a probability that is halved, and the kept set thinned, whenever more than twice
``max_vectors`` would be held.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from steerlab import validation as check
from steerlab.capture import Corpus, Manifest, refuse_constant
from steerlab.errors import CorpusError

MODES = {"feature": "features", "archetype": "archetypes"}


@dataclass
class Captured:
    """Vectors of one layer and where each came from."""

    vectors: np.ndarray  # [n, width] float32: r_t (features) or g_t (archetypes)
    starts: np.ndarray  # [n, width] float32: r_t (the starting vector; equals vectors for features)
    clip: np.ndarray  # [n] clip index in corpus order
    frame: np.ndarray  # [n] frame index t within the clip
    description: str
    manifest: dict[str, Any] = field(default_factory=dict)
    seen: int = 0  # vectors produced before subsampling
    #: samples of each clip (by clip index); None when unknown (read from a store: see clip_lengths)
    clip_samples: np.ndarray | None = None

    @property
    def sha256(self) -> str:
        """Hash of the kept vectors and starting vectors (float32, little-endian, row-major)."""
        h = hashlib.sha256()
        for a in (self.vectors, self.starts):
            h.update(np.ascontiguousarray(a, dtype="<f4").tobytes())
        return h.hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "sha256": self.sha256,
            "n_vectors": int(len(self.vectors)),
            "vectors_seen": int(self.seen),
            "manifest": self.manifest,
        }


def capture(
    model: Any,
    layer: Any,
    corpus: Corpus,
    target: str,
    max_vectors: int,
    seed: int = 0,
    batch_clips: int = 8,
    max_batch: int = 16,
    user_data: bool = True,
) -> Captured:
    """Capture ``layer`` over ``corpus``, keeping at most ``max_vectors`` (see the module docstring).

    ``user_data`` (the analysed ``--data``): bad files are checked before the model runs
    (:meth:`steerlab.capture.Corpus.check_files`) and audio that is one constant (silence,
    DC) is refused after the pass (:func:`steerlab.capture.refuse_constant`, as ``learn``
    refuses it); ``False`` for the reference sets an analysis generates itself
    (``flat:N`` is constant by design). Raises :class:`steerlab.capture.CorpusError`
    (no usable audio, no vectors, bad files) and :class:`steerlab.sae.NoVarianceError`."""
    import torch

    from steerlab import tracing

    check.choice("target", target, MODES, what="dictionary target")
    try:
        expected = corpus.estimate_seconds() * layer.frame_rate
    except Exception:  # an estimate only sets the first keep probability; the thinning bounds memory anyway
        expected = 0.0
    keeper = _Keeper(max_vectors, seed, expected)
    manifest = corpus.new_manifest()
    if user_data:
        corpus.check_files()
    pending: list[tuple[int, Any]] = []
    lengths: list[int] = []

    def run() -> None:
        acts = tracing.capture(model, [w for _, w in pending], [layer], max_batch)
        for (ci, _), act in zip(pending, acts):
            r = act[layer.name].T.numpy().astype(np.float32)  # [frames, channels]
            if target == "feature":
                keeper.add(ci, r, r)
            else:
                keeper.add(ci, r[1:] - r[:-1], r[:-1])
        pending.clear()

    for ci, (clip_id, wave) in enumerate(corpus.clips(manifest)):
        w = torch.as_tensor(np.asarray(wave) if not isinstance(wave, torch.Tensor) else wave).float()
        if w.ndim != 2 or w.shape[0] != model.channels or w.shape[1] == 0:
            raise CorpusError(
                f"clip {clip_id}: expected a wave [channels={model.channels}, samples], got shape {list(w.shape)}"
            )
        manifest.saw(w)
        manifest.clips += 1
        manifest.seconds += w.shape[1] / model.sample_rate
        lengths.append(int(w.shape[1]))
        pending.append((ci, w))
        if len(pending) >= batch_clips:
            run()
    if pending:
        run()
    if keeper.n_held == 0:
        where = ", ".join(manifest.sources)
        if manifest.clips == 0:
            raise CorpusError(
                f"no usable audio in {where}: {manifest.files_seen} audio files seen, {len(manifest.skipped)} skipped"
            )
        raise CorpusError(
            f"{manifest.clips} clips from {where} gave no {MODES[target]} vectors at {layer.name} (clips too short)"
        )
    if user_data:
        refuse_constant(manifest, f"{model.name} {layer.name}", corpus.describe())
    parts = keeper.result()
    manifest.vectors = int(len(parts[0]))
    return Captured(
        parts[0],
        parts[1],
        parts[2],
        parts[3],
        corpus.describe(),
        manifest.to_json(),
        keeper.seen,
        np.asarray(lengths, dtype=np.int64),
    )


class _Keeper:
    """The seeded, bounded subset of a capture: frames are kept with probability ``p`` (first
    ``1.5 max_vectors / expected``), and whenever more than ``2 max_vectors`` are held ``p`` is
    halved and the held set thinned to match; :meth:`result` draws at most ``max_vectors``.
    Fed clip by clip in corpus order, it keeps the same frames whether the activations come
    from the model (:func:`capture`) or from a store (:func:`capture_from_store`)."""

    def __init__(self, max_vectors: int, seed: int, expected: float) -> None:
        self.max_vectors = max_vectors
        self.rng = np.random.default_rng(seed)
        self.p = min(1.0, 1.5 * max_vectors / expected) if expected > 0 else 1.0
        self.held: list[tuple[np.ndarray, ...]] = []  # (vectors, starts, clip indices, frame indices)
        self.n_held = self.seen = 0

    def add(self, ci: int, vec: np.ndarray, start: np.ndarray, frames: np.ndarray | None = None) -> None:
        """One clip's vectors ``[f, width]`` and starting vectors (``frames``: their frame
        indices, default ``0..f-1``)."""
        self.seen += len(vec)
        keep = np.flatnonzero(self.rng.random(len(vec)) < self.p)
        if len(keep):
            at = keep.astype(np.int64) if frames is None else frames[keep].astype(np.int64)
            self.held.append((vec[keep], start[keep], np.full(len(keep), ci, np.int64), at))
            self.n_held += len(keep)
        while self.n_held > 2 * self.max_vectors:  # too many: halve the rate and thin what is held to match
            self.p /= 2
            thinned: list[tuple[np.ndarray, ...]] = []
            for part in self.held:
                m = self.rng.random(len(part[0])) < 0.5
                thinned.append(tuple(a[m] for a in part))
            self.held = thinned
            self.n_held = sum(len(part[0]) for part in self.held)

    def result(self) -> list[np.ndarray]:
        parts = [np.concatenate([part[i] for part in self.held]) for i in range(4)]
        if len(parts[0]) > self.max_vectors:
            pick = np.sort(self.rng.choice(len(parts[0]), self.max_vectors, replace=False))
            parts = [a[pick] for a in parts]
        return parts


def capture_from_store(store: Any, target: str, max_vectors: int, seed: int = 0) -> Captured:
    """What :func:`capture` returns, read from an activation store
    (:class:`steerlab.activations.ActivationStore`, of the ``target``'s kind) instead of running
    the model: the same frames are kept (same seed, same clips in the same order, the same
    estimate of the corpus length, which the store records), one shard in memory at a time."""
    check.choice("target", target, MODES, what="dictionary target")
    if store.kind != MODES[target]:
        from steerlab.activations import StoreError

        raise StoreError(f"the store {store.folder} holds {store.kind}, not {MODES[target]}: capture it with that kind")
    corpus_doc = store.doc["corpus"]
    expected = float(corpus_doc.get("estimated_seconds", 0.0)) * float(store.doc.get("frame_rate", 0.0))
    keeper = _Keeper(max_vectors, seed, expected)
    columns = ("vectors", "frame") if target == "feature" else ("vectors", "frame", "starts")
    for ci, rows in store.clip_rows(columns):
        vec = rows["vectors"]
        keeper.add(ci, vec, vec if target == "feature" else rows["starts"], rows["frame"])
    parts = keeper.result()
    manifest = dict(corpus_doc.get("manifest", {}))
    manifest["vectors"] = int(len(parts[0]))
    description = corpus_doc.get("description", str(store.folder))
    return Captured(parts[0], parts[1], parts[2], parts[3], description, manifest, keeper.seen)


def fragments_for(
    corpus: Corpus, layer: Any, target: str, where: dict[str, tuple[np.ndarray, np.ndarray]], length: int
) -> dict[str, np.ndarray]:
    """Waveform fragments ``[n, length]`` (first channel) for named lists of (clip, frame)
    pairs, in one pass over the corpus. A frame ``t`` is centred on ``t * hop + hop / 2``;
    an archetype's transition from ``t`` to ``t + 1`` on ``(t + 1) * hop``."""
    from steerlab.analysis.spectra import fragment

    wanted: dict[int, list[tuple[str, int, int]]] = {}
    for name, (clips, frames) in where.items():
        for row, (c, t) in enumerate(zip(clips, frames)):
            wanted.setdefault(int(c), []).append((name, row, int(t)))
    out = {name: np.zeros((len(clips), length)) for name, (clips, _) in where.items()}
    if not wanted:
        return out
    last = max(wanted)
    for ci, (_, wave) in enumerate(corpus.clips(Manifest())):
        if ci in wanted:
            mono = np.asarray(wave, dtype=np.float64)[0]
            for name, row, t in wanted[ci]:
                centre = (t + 1) * layer.hop if target == "archetype" else t * layer.hop + layer.hop // 2
                out[name][row] = fragment(mono, centre, length)
        if ci >= last:
            break
    return out


def clip_lengths(corpus: Corpus) -> np.ndarray:
    """Samples ``[clips]`` of every clip of ``corpus`` in corpus order (one pass, no model run)."""
    return np.asarray([np.shape(wave)[-1] for _, wave in corpus.clips(Manifest())], dtype=np.int64)


#: the rule :func:`usable_rows` applies, as the report states it
USABLE_RULE = (
    "a fragment comes only from a frame whose listening window (the longest cut, centred on the frame) and "
    "whose receptive field with its warm-up (ceil(receptive_field / hop) + 1 frames on either side, the frames "
    "trajectories skip) lie inside its clip, so no fragment holds zero padding and no activation is one the "
    "padding produced"
)


def usable_rows(
    clip: np.ndarray, frame: np.ndarray, clip_samples: np.ndarray, layer: Any, target: str, window: int
) -> np.ndarray:
    """Which captured rows (``clip``, ``frame``: ``[n]``) may give a waveform fragment: bool ``[n]``.

    A row is usable when (1) its cut of ``window`` samples, centred as :func:`fragments_for`
    centres it, lies inside its clip (``clip_samples[clip]`` samples), and (2) the frames it
    involves (``t``; ``t`` and ``t + 1`` for an archetype's transition) lie at least ``warm =
    ceil(receptive_field / hop) + 1`` frames (of ``hop`` samples) from either end of the clip: a
    frame closer to an edge has a receptive field that may still see the zero padding (the
    warm-up :func:`steerlab.analysis.pipeline.trajectory_samples` skips; the end is treated the
    same because a centred convolution pads there too). See :data:`USABLE_RULE`."""
    import math

    hop = int(layer.hop)
    warm = math.ceil(layer.receptive_field / hop) + 1
    t = np.asarray(frame, dtype=np.int64)
    n = np.asarray(clip_samples, dtype=np.int64)[np.asarray(clip, dtype=np.int64)]
    last = t + (1 if target == "archetype" else 0)  # the last frame the row involves
    centre = (t + 1) * hop if target == "archetype" else t * hop + hop // 2
    start = centre - window // 2
    return (start >= 0) & (start + window <= n) & (t >= warm) & ((last + 1 + warm) * hop <= n)


def activations(model: Any, layer: Any, waves: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Activations ``[frames, channels]`` of ``layer`` for mono ``waves`` at the model's rate."""
    import torch

    from steerlab import tracing

    ws = [torch.as_tensor(np.repeat(np.asarray(w, dtype=np.float32)[None], model.channels, axis=0)) for w in waves]
    return [a[layer.name].T.numpy().astype(np.float64) for a in tracing.capture(model, ws, [layer])]
