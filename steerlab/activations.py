"""An activation store: one layer of one model captured over a corpus, on disk, reused.

``steerlab capture`` runs the model once over a corpus and writes what a layer holds there;
``learn --store`` and ``analyze --store`` then read it instead of running the model again, so
several dictionaries, sweeps and analyses of one layer cost one forward pass over the corpus.

A store is a folder:

- ``shard-00000.safetensors``, ...: tensors ``vectors [n, width]`` (float32: response vectors
  ``r_t`` for kind ``features``, generators ``g_t = r_{t+1} - r_t`` for ``archetypes``),
  ``clip [n]`` and ``frame [n]`` (int32: the clip's index in corpus order and the frame ``t``,
  so the audio behind a vector can be found again), and for archetypes ``starts [n, width]``
  (the ``r_t`` each generator starts from). Every frame of every clip is kept, in corpus
  order; a shard holds whole clips and is closed once it reaches ``frames_per_shard`` rows.
  safetensors is the field's tensor format (SAELens, HF): no pickle, and read through a
  memory map, so a shard costs memory only while it is in use.
- ``manifest.json``, written last: format and version, model name and weights hash, layer
  (canonical name, sample and frame rate), kind, width, dtype, ``frames_per_shard``, every
  shard (file, rows, clip range, sha256 of the file), the corpus (specs, seed, clip and chunk
  seconds, what the pass read: :class:`steerlab.capture.Manifest`), the sha256 of every input
  file (:func:`steerlab.provenance.input_entries`), the steerlab version and ``config_hash``,
  the hash of everything that decides the store's contents.

Writing is atomic per file (temporary name, then rename), and the manifest comes last, so a
folder with ``manifest.json`` is complete. While a capture runs, ``.progress.json`` lists the
shards written so far and the clip the next one starts at. A capture interrupted (Ctrl-C,
SIGTERM, a crash) is **resumed** by the same command: the shards already written are kept and
the capture restarts at the first clip not in them (the clips before are decoded again, not
run through the model, to rebuild the corpus counts). A half-written folder made with other
settings (another model, layer, corpus or shard size: another ``config_hash``) is refused
unless ``overwrite``. :class:`ActivationStore` refuses a folder without ``manifest.json``.

Reading never holds more than a few shards: :meth:`ActivationStore.blocks` yields one shard
at a time (what :func:`steerlab.sae.train_sae` takes), :meth:`ActivationStore.minibatches`
shuffles ``window`` shards at a time into minibatches (seeded, reproducible: the same seed
and epoch give the same batches). :func:`train_many` trains several SAE configurations in one
pass over a store: each shard is read once per pass and given to every SAE.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from steerlab import validation as check
from steerlab.errors import ConfigError, ConsumerStopped, CorpusError, OutputError, StoreError

if TYPE_CHECKING:
    import torch

    from steerlab.capture import Corpus
    from steerlab.dictionary import Dictionary
    from steerlab.sae import SAEConfig, SparseAutoencoder

STORE_FORMAT, STORE_VERSION = "steerlab-activation-store", 1
MANIFEST, PROGRESS = "manifest.json", ".progress.json"
KINDS = ("features", "archetypes")
#: the dictionary target each kind of store trains (``learn features`` needs a ``features`` store)
TARGET_OF_KIND = {"features": "feature", "archetypes": "archetype"}
#: rows of a shard by default: 64 MiB of float32 vectors whatever the layer's width
SHARD_FLOATS = 2**24
DTYPE = "float32"


def default_frames_per_shard(width: int) -> int:
    """Rows per shard: :data:`SHARD_FLOATS` floats of ``width`` (at least 1024 rows)."""
    return max(1024, SHARD_FLOATS // max(1, width))


def _corpus_record(corpus: Corpus) -> dict[str, Any]:
    """How the corpus was made: enough to rebuild it (``analyze --store`` finds fragments in it)."""
    return {
        "specs": [s.spec for s in corpus.sources],
        "description": corpus.describe(),
        "seed": corpus.seed,
        "clip_seconds": corpus.clip_seconds,
        "chunk_seconds": corpus.chunk_seconds,
        "skip_bad_files": corpus.skip_bad_files,
        "sample_rate": corpus.sample_rate,
        "channels": corpus.channels,
        # the corpus length from file headers: sets the first keep probability of an analysis's capture
        "estimated_seconds": corpus.estimate_seconds(),
    }


# ------------------------------------------------------------------------------------------------ writing


def build_store(
    model: Any,
    layer: Any,
    corpus: Corpus,
    folder: str | Path,
    mode: str = "features",
    *,
    frames_per_shard: int | None = None,
    overwrite: bool = False,
    batch_clips: int = 8,
    max_batch: int = 16,
    progress: Callable[[str], None] | None = None,
) -> ActivationStore:
    """Capture ``layer`` of ``model`` over ``corpus`` into the store ``folder`` (module docstring).

    ``layer``: a name or alias (``steerlab.layers(model)``) or its ``LayerInfo``; ``mode``:
    ``"features"`` (``r_t``) or ``"archetypes"`` (``g_t`` within each clip, with ``starts``);
    ``frames_per_shard``: rows per shard (default :func:`default_frames_per_shard`);
    ``batch_clips`` clips are captured per traced pass (``max_batch`` at most), as
    :func:`steerlab.analysis.data.capture` does. A folder holding a half-written store with the
    same ``config_hash`` is resumed; ``overwrite`` replaces any folder. ``progress`` gets a line
    at most every 2 s. Returns the store, opened.

    Raises :class:`StoreError` (``OutputError`` for an unwritable folder) for a complete store
    or a half-written one with other settings at ``folder`` without ``overwrite``;
    :class:`steerlab.capture.BadFilesError` / :class:`CorpusError` for unusable data (before
    the model runs), :class:`steerlab.sae.NoVarianceError` for constant audio (silence, DC).
    """
    import torch

    from steerlab import __version__, devices, provenance, tracing
    from steerlab.artifacts import atomic_save_safetensors, atomic_write_json, config_hash, file_sha256
    from steerlab.capture import refuse_constant
    from steerlab.loading import layers

    check.choice("mode", mode, KINDS, what="store kind")
    info = layers(model).get(layer) if isinstance(layer, str) else layer
    rows_per_shard = default_frames_per_shard(info.channels) if frames_per_shard is None else frames_per_shard
    check.integer("frames_per_shard", rows_per_shard, low=1)
    for name, value in (("batch_clips", batch_clips), ("max_batch", max_batch)):
        check.integer(name, value, low=1)
    folder = Path(folder)
    corpus.check_files()  # bad files: one line (or skipped) before anything is written
    record = _corpus_record(corpus)
    inputs = provenance.input_entries(record["specs"])
    settings = {
        "model": model.name,
        "weights_hash": model.weights_hash(),
        "layer": info.name,
        "kind": mode,
        "dtype": DTYPE,
        "frames_per_shard": rows_per_shard,
        "batch_clips": batch_clips,
        "max_batch": max_batch,
        "corpus": {k: v for k, v in record.items() if k != "description"},
        "inputs": inputs,
    }
    chash = config_hash(settings, None)
    done = _prepare(folder, chash, overwrite)
    say = progress or (lambda message: None)
    shards: list[dict[str, Any]] = list(done["shards"]) if done else []
    start_clip = shards[-1]["clip_end"] if shards else 0
    if shards:
        say(f"resuming {folder}: {len(shards)} shards already written, from clip {start_clip}")
    manifest = corpus.new_manifest()
    held: list[tuple[np.ndarray, ...]] = []  # per clip: (vectors, clip, frame[, starts])
    held_rows, first_clip = 0, start_clip
    pending: list[tuple[int, Any]] = []
    started, last = time.monotonic(), time.monotonic()

    def write_shard(clip_end: int) -> None:
        nonlocal held_rows, first_clip
        name = f"shard-{len(shards):05d}.safetensors"
        cols = [np.ascontiguousarray(np.concatenate([h[i] for h in held])) for i in range(len(held[0]))]
        tensors = {"vectors": torch.from_numpy(cols[0]), "clip": torch.from_numpy(cols[1])}
        tensors["frame"] = torch.from_numpy(cols[2])
        if mode == "archetypes":
            tensors["starts"] = torch.from_numpy(cols[3])
        atomic_save_safetensors(tensors, folder / name, metadata={"format": STORE_FORMAT})
        shards.append(
            {
                "file": name,
                "n_vectors": int(len(cols[0])),
                "clip_start": first_clip,
                "clip_end": clip_end,
                "sha256": file_sha256(folder / name),
            }
        )
        atomic_write_json({"config_hash": chash, "shards": shards}, folder / PROGRESS)
        held.clear()
        held_rows, first_clip = 0, clip_end

    def run() -> None:
        nonlocal held_rows, last
        acts = tracing.capture(model, [w for _, w in pending], [info], max_batch)
        for (ci, _), act in zip(pending, acts):
            r = act[info.name].T.numpy().astype(np.float32, copy=False)  # [frames, channels]
            if mode == "features":
                part: tuple[np.ndarray, ...] = (r, np.full(len(r), ci, np.int32), np.arange(len(r), dtype=np.int32))
            else:
                g = np.ascontiguousarray(r[1:] - r[:-1])
                part = (g, np.full(len(g), ci, np.int32), np.arange(len(g), dtype=np.int32), r[:-1].copy())
            held.append(part)
            held_rows += len(part[0])
            if held_rows >= rows_per_shard:
                write_shard(ci + 1)
        pending.clear()
        if time.monotonic() - last >= 2.0:
            last = time.monotonic()
            rows = sum(s["n_vectors"] for s in shards) + held_rows
            say(f"captured {manifest.clips} clips ({manifest.seconds:.0f} s), {rows} vectors, {len(shards)} shards")

    for ci, (clip_id, wave) in enumerate(corpus.clips(manifest)):
        w = torch.as_tensor(np.asarray(wave) if not isinstance(wave, torch.Tensor) else wave).float()
        if w.ndim != 2 or w.shape[0] != model.channels or w.shape[1] == 0:
            raise CorpusError(
                f"clip {clip_id}: expected a wave [channels={model.channels}, samples], got shape {list(w.shape)}"
            )
        manifest.saw(w)
        manifest.clips += 1
        manifest.seconds += w.shape[1] / model.sample_rate
        if ci < start_clip:  # in a shard written before the interruption
            continue
        pending.append((ci, w))
        if len(pending) >= batch_clips:
            run()
    if pending:
        run()
    if held_rows:
        write_shard(manifest.clips)
    n = sum(s["n_vectors"] for s in shards)
    if n == 0:
        raise CorpusError(f"{manifest.clips} clips from {corpus.describe()} gave no {mode} vectors at {info.name}")
    refuse_constant(manifest, f"{model.name} {info.name}", corpus.describe())
    manifest.vectors = n
    doc = {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        **{k: settings[k] for k in ("model", "weights_hash", "layer", "kind", "dtype", "frames_per_shard")},
        "width": int(info.channels),
        "sample_rate": int(info.sample_rate),
        "frame_rate": float(info.frame_rate),
        "hop": int(info.hop),
        "n_vectors": n,
        "shards": shards,
        "tensors": {
            "vectors": ["n", info.channels],
            "clip": ["n"],
            "frame": ["n"],
            **({"starts": ["n", info.channels]} if mode == "archetypes" else {}),
        },
        "corpus": {**record, "manifest": manifest.to_json()},
        "inputs": inputs,
        "steerlab_version": __version__,
        "config_hash": chash,
        "capture_seconds": time.monotonic() - started,
        "provenance": provenance.record(inputs=[], device=devices.of(model)),
    }
    atomic_write_json(doc, folder / MANIFEST)
    (folder / PROGRESS).unlink(missing_ok=True)
    say(f"wrote {folder}: {n} {mode} vectors of {model.name} {info.name} in {len(shards)} shards")
    return ActivationStore(folder)


def _prepare(folder: Path, chash: str, overwrite: bool) -> dict[str, Any] | None:
    """Make ``folder`` ready to write: new, empty, replaced (``overwrite``) or resumed. Returns the
    progress record of a resumable half-written store (shards checked), else None."""
    import json

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write the store {folder}: it is a file")
    if folder.is_dir() and any(folder.iterdir()):
        if overwrite:
            shutil.rmtree(folder)
        elif (folder / MANIFEST).is_file():
            raise StoreError(
                f"{folder} already holds a complete store; pass overwrite to replace it", parameter="overwrite"
            )
        else:
            try:
                done = json.loads((folder / PROGRESS).read_text())
                ok = done.get("config_hash") == chash and isinstance(done.get("shards"), list)
            except (OSError, ValueError, AttributeError):
                done, ok = None, False
            if not ok or done is None:
                raise StoreError(
                    f"{folder} holds a half-written store made with other settings (or is not a store); "
                    "pass overwrite to replace it",
                    parameter="overwrite",
                )
            from steerlab.artifacts import file_sha256

            kept = []
            for s in done["shards"]:  # keep the shards that are intact, up to the first that is not
                p = folder / str(s.get("file"))
                if not p.is_file() or file_sha256(p) != s.get("sha256"):
                    break
                kept.append(s)
            for p in folder.glob("shard-*.safetensors"):
                if p.name not in {s["file"] for s in kept}:
                    p.unlink()
            return {"shards": kept}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the store folder {folder}: {exc.strerror}") from None
    return None


# ------------------------------------------------------------------------------------------------ reading


def _manifest_schema() -> dict[str, Any]:
    from steerlab import schema

    shard = schema.obj(
        {
            "file": schema.filename(),
            "n_vectors": schema.integer(1),
            "clip_start": schema.integer(0),
            "clip_end": schema.integer(1),
            "sha256": schema.sha256(),
        }
    )
    return {
        "model": schema.string(True),
        "weights_hash": schema.string(True),
        "layer": schema.string(True),
        "kind": schema.one_of(*KINDS),
        "dtype": schema.one_of(DTYPE),
        "frames_per_shard": schema.integer(1),
        "width": schema.integer(1),
        "sample_rate": schema.integer(1),
        "n_vectors": schema.integer(1),
        "shards": schema.array(shard, True),
        "corpus": schema.mapping(),
        "inputs": schema.array(),
        "config_hash": schema.string(True),
    }


class ActivationStore:
    """A complete store folder, opened: the manifest read and checked, shards read on demand.

    Attributes from the manifest: ``model``, ``weights_hash``, ``layer``, ``kind``, ``width``,
    ``n_vectors``, ``shards`` (their records), ``doc`` (the whole manifest). ``max_resident``
    counts the most shards this object ever held in memory at once (bounded by the readers'
    ``window``, whatever the store's size). Raises :class:`StoreError` for a folder that is not a
    complete store (no ``manifest.json``: a capture still running or interrupted), a manifest
    of another format or version, or missing shard files.
    """

    def __init__(self, folder: str | Path) -> None:
        from steerlab import schema

        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            half = (self.folder / PROGRESS).is_file()
            raise StoreError(
                f"{self.folder} is not a complete activation store (no {MANIFEST}"
                + ("; a capture was interrupted: run the same `steerlab capture` again to resume it)" if half else ")")
            )
        doc = schema.read_json(path, _MANIFEST_SCHEMA, StoreError, format=STORE_FORMAT, versions=(STORE_VERSION,))
        if sum(s["n_vectors"] for s in doc["shards"]) != doc["n_vectors"]:
            raise StoreError(f"{path}: n_vectors ({doc['n_vectors']}) is not the sum of its shards' n_vectors")
        missing = [s["file"] for s in doc["shards"] if not (self.folder / s["file"]).is_file()]
        if missing:
            raise StoreError(f"{self.folder} is missing shards: {', '.join(missing[:3])}")
        self.doc = doc
        self.model: str = doc["model"]
        self.weights_hash: str = doc["weights_hash"]
        self.layer: str = doc["layer"]
        self.kind: str = doc["kind"]
        self.width: int = doc["width"]
        self.n_vectors: int = doc["n_vectors"]
        self.shards: list[dict[str, Any]] = doc["shards"]
        self.resident = 0
        self.max_resident = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ActivationStore({str(self.folder)!r}: {self.n_vectors} {self.kind} of {self.model} {self.layer})"

    @property
    def target(self) -> str:
        """The dictionary target this store trains: ``"feature"`` or ``"archetype"``."""
        return TARGET_OF_KIND[self.kind]

    def describe(self) -> str:
        return f"{self.doc['corpus'].get('description', '?')} (activation store {self.folder})"

    def check_matches(self, model: Any, layer: str | None = None, mode: str | None = None) -> None:
        """Refuse (:class:`StoreError`, one line) a store not captured from ``model`` (its name and
        weights hash), ``layer`` (canonical name) or ``mode``."""
        wanted = [("model", self.model, model.name), ("weights hash", self.weights_hash, model.weights_hash())]
        if layer is not None:
            wanted.append(("layer", self.layer, layer))
        if mode is not None:
            wanted.append(("kind", self.kind, mode))
        for what, have, want in wanted:
            if have != want:
                raise StoreError(
                    f"the store {self.folder} holds {what} {have}, not {want}: capture the store again "
                    f"(`steerlab capture`) for this {what}"
                )

    # one shard at a time -------------------------------------------------------------------------------

    def read_shard(self, i: int, columns: Sequence[str] = ("vectors",)) -> dict[str, torch.Tensor]:
        """Tensors ``columns`` of shard ``i`` (``vectors [n, width]`` float32, ``clip [n]``,
        ``frame [n]``, ``starts [n, width]``), read through safetensors' memory map."""
        from safetensors import safe_open

        s = self.shards[i]
        path = self.folder / s["file"]
        try:
            with safe_open(str(path), framework="pt") as f:
                out = {c: f.get_tensor(c) for c in columns}
        except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, a missing tensor: one line
            raise StoreError(f"cannot read {path}: {str(exc).strip().splitlines()[0][:160]}") from None
        for c, t in out.items():
            if len(t) != s["n_vectors"] or (t.ndim == 2 and t.shape[1] != self.width):
                raise StoreError(f"{path}: tensor {c!r} has shape {list(t.shape)}, not what the manifest says")
        return out

    def _hold(self, n: int) -> None:
        with self._lock:
            self.resident += n
            self.max_resident = max(self.max_resident, self.resident)

    def blocks(
        self, order: Sequence[int] | None = None, progress: Callable[[int], None] | None = None
    ) -> Iterator[torch.Tensor]:
        """The vectors ``[n_i, width]`` shard by shard (``order``: shard indices, default stored
        order), one in memory at a time; ``progress(rows)`` after each."""
        for i in order if order is not None else range(len(self.shards)):
            self._hold(1)
            try:
                block = self.read_shard(i)["vectors"]
                yield block
            finally:
                self._hold(-1)
            if progress:
                progress(len(block))

    def factory(
        self, seed: int = 0, progress: Callable[[int, int], None] | None = None
    ) -> Callable[[], Iterator[torch.Tensor]]:
        """A block factory for :func:`steerlab.sae.train_sae`: call ``p`` (0, 1, ...) yields every
        shard once, in stored order for the first call (the statistics pass, so the dictionary's
        ``data_sha256`` is the hash of the store's vectors in order) and in a seeded permutation
        for later ones (epochs see the corpus in a new order each time). ``progress(pass, rows)``
        after each shard."""
        import torch

        passes = [0]

        def blocks() -> Iterator[torch.Tensor]:
            p = passes[0]
            passes[0] += 1
            order: list[int] = list(range(len(self.shards)))
            if p > 0:
                g = torch.Generator().manual_seed(_derived_seed(seed, p))
                order = torch.randperm(len(order), generator=g).tolist()
            return self.blocks(order, (lambda rows: progress(p, rows)) if progress else None)

        return blocks

    def minibatches(
        self, batch_size: int, seed: int = 0, epoch: int = 0, window: int = 4, drop_last: bool = False
    ) -> Iterator[torch.Tensor]:
        """One epoch of shuffled minibatches ``[batch_size, width]`` (the last smaller unless
        ``drop_last``), with at most ``window`` shards in memory: the shards are taken in a
        seeded order, ``window`` at a time, and their rows shuffled together (plus the fewer than
        ``batch_size`` rows left from the window before). The same ``seed`` and ``epoch`` give
        the same batches. For a training loop of one's own (the benchmark's plain loop)."""
        import torch

        check.integer("batch_size", batch_size, low=1)
        check.integer("window", window, low=1)
        g = torch.Generator().manual_seed(_derived_seed(seed, epoch))
        order = torch.randperm(len(self.shards), generator=g).tolist()
        rest = torch.empty(0, self.width)
        for start in range(0, len(order), window):
            ids = order[start : start + window]
            self._hold(len(ids))
            try:
                buf = torch.cat([rest] + [self.read_shard(i)["vectors"] for i in ids])
                buf = buf[torch.randperm(len(buf), generator=g)]
                full = len(buf) - len(buf) % batch_size
                for i in range(0, full, batch_size):
                    yield buf[i : i + batch_size]
                rest = buf[full:].clone()
                del buf
            finally:
                self._hold(-len(ids))
        if len(rest) and not drop_last:
            yield rest

    def clip_rows(self, columns: Sequence[str] = ("vectors", "frame")) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(clip index, {column: rows of that clip})`` in corpus order, one shard in memory at
        a time (shards hold whole clips): what an analysis's subsampled capture reads."""
        for i in range(len(self.shards)):
            self._hold(1)
            try:
                t = self.read_shard(i, ("clip", *columns))
                clip = t["clip"].numpy()
                cuts = np.flatnonzero(np.diff(clip)) + 1
                bounds = [0, *cuts.tolist(), len(clip)]
                arrays = {c: t[c].numpy() for c in columns}
                for a, b in zip(bounds[:-1], bounds[1:]):
                    yield int(clip[a]), {c: v[a:b] for c, v in arrays.items()}
            finally:
                self._hold(-1)

    def verify(self) -> None:
        """Check every shard file against the sha256 the manifest records (reads the whole store)."""
        from steerlab.artifacts import file_sha256

        for s in self.shards:
            if file_sha256(self.folder / s["file"]) != s["sha256"]:
                raise StoreError(f"{self.folder / s['file']} does not match its sha256 in {MANIFEST}")

    def corpus(self, skip_bad_files: bool | None = None) -> Corpus:
        """The corpus the store was captured from, rebuilt from the manifest (same specs, seed,
        clip and chunk lengths, so clip ``i`` is the same clip). Raises :class:`StoreError` when an
        input file changed since the capture (its sha256 differs)."""
        from steerlab import provenance
        from steerlab.capture import Corpus

        c = self.doc["corpus"]
        now = provenance.input_entries(c["specs"])
        if _hashes(now) != _hashes(self.doc["inputs"]):
            raise StoreError(
                f"the audio behind the store {self.folder} changed since it was captured (input sha256 "
                "differs); capture it again"
            )
        return Corpus(
            list(c["specs"]),
            int(c["sample_rate"]),
            int(c["channels"]),
            seed=int(c["seed"]),
            clip_seconds=float(c["clip_seconds"]),
            chunk_seconds=float(c["chunk_seconds"]),
            skip_bad_files=bool(c["skip_bad_files"] if skip_bad_files is None else skip_bad_files),
        )


_MANIFEST_SCHEMA = _manifest_schema()


def _hashes(entries: list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for e in entries:
        if "files" in e:
            out.append([(f["path"], f["sha256"]) for f in e["files"]])
        else:
            out.append(e.get("sha256", e.get("generated")))
    return out


def _derived_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, index]).generate_state(1)[0])


# ------------------------------------------------------------------------------------------------ progress


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class PassProgress:
    """Progress within the passes :func:`steerlab.sae.train_sae` makes over a store (statistics,
    ``epochs`` epochs, evaluation), with an estimate of the time left: the rows still to read in
    training passes at the rate training passes have run so far, plus the rows of the other
    passes at theirs (each rate standing in for the other until it is measured). ``say`` gets a
    line at most every ``every_s`` seconds."""

    def __init__(self, n_vectors: int, epochs: int, say: Callable[[str], None], every_s: float = 2.0) -> None:
        self.n, self.epochs, self.say, self.every_s = n_vectors, epochs, say, every_s
        self.in_pass: dict[int, int] = {}
        self.rows = {"train": 0, "read": 0}
        self.seconds = {"train": 0.0, "read": 0.0}
        self.last_call = self.last_say = time.monotonic()

    def phase(self, p: int) -> str:
        if p == 0:
            return "statistics"
        return f"epoch {p}/{self.epochs}" if p <= self.epochs else "evaluation"

    def left(self) -> float:
        """Seconds left, estimated."""
        todo = {
            "train": self.n * self.epochs - self.rows["train"],
            "read": 2 * self.n - self.rows["read"],
        }
        rate = {k: self.rows[k] / self.seconds[k] for k in todo if self.rows[k] and self.seconds[k] > 0}
        if not rate:
            return float("nan")
        return sum(todo[k] / rate.get(k, next(iter(rate.values()))) for k in todo)

    def __call__(self, p: int, rows: int) -> None:
        now = time.monotonic()
        kind = "train" if 1 <= p <= self.epochs else "read"
        self.rows[kind] += rows
        self.seconds[kind] += now - self.last_call
        self.last_call = now
        self.in_pass[p] = self.in_pass.get(p, 0) + rows
        if now - self.last_say < self.every_s:
            return
        self.last_say = now
        left = self.left()
        self.say(
            f"{self.phase(p)}: {self.in_pass[p] / self.n:.0%} of {self.n} vectors"
            + (f", about {_clock(left)} left" if math.isfinite(left) else "")
        )


# ------------------------------------------------------------------------------------------------ training


class _Broadcast:
    """One reader, several consumers: each consumer's :meth:`factory` is the block factory its
    ``train_sae`` calls; block ``j`` of pass ``p`` is read from the source once, kept until every
    consumer has taken it, and at most ``window`` blocks are kept (a consumer ahead waits). All
    consumers must make the same passes (the same ``epochs``). An error in any consumer, or in
    the source, stops them all."""

    def __init__(self, source: Callable[[], Iterator[Any]], consumers: int, window: int = 2) -> None:
        self.source, self.n, self.window = source, consumers, window
        self.cond = threading.Condition()
        self.cache: dict[tuple[int, int], list[Any]] = {}
        self.next_key = (0, 0)  # the next block the source gives
        self.reading = False
        self.iterator: Iterator[Any] | None = None
        self.failed: BaseException | None = None
        self.passes = [0] * consumers

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            if self.failed is None:
                self.failed = exc
            self.cond.notify_all()

    def factory(self, i: int) -> Callable[[], Iterator[Any]]:
        def blocks() -> Iterator[Any]:
            p = self.passes[i]
            self.passes[i] += 1
            j = 0
            while True:
                item = self._take(p, j)
                if item is _END:
                    return
                yield item
                j += 1

        return blocks

    def _take(self, p: int, j: int) -> Any:
        while True:
            with self.cond:
                while True:
                    if self.failed is not None:
                        raise ConsumerStopped() from None
                    entry = self.cache.get((p, j))
                    if entry is not None:
                        entry[1] -= 1
                        if entry[1] == 0:
                            del self.cache[(p, j)]
                            self.cond.notify_all()
                        return entry[0]
                    if (p, j) == self.next_key and not self.reading and len(self.cache) < self.window:
                        self.reading = True
                        break
                    self.cond.wait()
            try:  # read outside the lock, so the others keep training
                if j == 0:
                    self.iterator = iter(self.source())
                assert self.iterator is not None
                item = next(self.iterator, _END)
            except BaseException as exc:
                self.fail(exc)
                raise
            with self.cond:
                self.cache[(p, j)] = [item, self.n]
                self.next_key = (p + 1, 0) if item is _END else (p, j + 1)
                self.reading = False
                self.cond.notify_all()


_END = object()


def config_label(config: SAEConfig) -> str:
    """A short name for one of several configurations: ``{architecture}-size{S}-k{K}-seed{N}``."""
    return f"{config.architecture}-size{config.size}-k{config.k}-seed{config.seed}"


def train_many(
    data: ActivationStore | Callable[[], Iterator[Any]],
    configs: Sequence[SAEConfig],
    *,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    epoch_progress: Callable[[int, int, int, float], None] | None = None,
    window: int = 2,
    device: Any = "auto",
) -> list[tuple[SparseAutoencoder, dict[str, Any]]]:
    """Train every configuration of ``configs`` in one pass over ``data`` (a store, or a block
    factory as :func:`steerlab.sae.train_sae` takes): each block is read once per pass and fed to
    every SAE. Each SAE runs :func:`steerlab.sae.train_sae` itself, in a thread of its own with
    this thread's torch thread count, so its weights and metrics are exactly those of training
    it alone on the same data. ``seed`` orders a store's shards (:meth:`ActivationStore.factory`);
    ``progress`` gets the in-epoch lines (:class:`PassProgress`); ``epoch_progress(index, epoch,
    epochs, loss)`` after each epoch of configuration ``index``. Returns ``(sae, metrics)`` per
    configuration, in order. All configurations must have the same ``epochs`` (a pass is shared)
    and ``width``. An error in any of them (no variance, bad data) is raised here, once.
    ``device``: where the SAEs train (:func:`steerlab.sae.train_sae`).
    """
    import torch

    from steerlab.sae import train_sae

    configs = list(configs)
    if not configs:
        raise ConfigError("configs must hold at least one SAE configuration", parameter="configs")
    for name in ("epochs", "width"):
        values = sorted({getattr(c, name) for c in configs})
        if len(values) > 1:
            raise ConfigError(
                f"the configurations trained in one pass must share {name}; got {values}", parameter="configs"
            )
    if isinstance(data, ActivationStore):
        tracker = PassProgress(data.n_vectors, configs[0].epochs, progress) if progress else None
        source = data.factory(seed, tracker)
    else:
        source = data
    if len(configs) == 1:  # no thread needed
        cb = (lambda e, t, loss: epoch_progress(0, e, t, loss)) if epoch_progress else None
        return [train_sae(source, configs[0], progress=cb, device=device)]
    hub = _Broadcast(source, len(configs), window)
    results: list[Any] = [None] * len(configs)
    errors: list[BaseException | None] = [None] * len(configs)
    threads = torch.get_num_threads()

    def work(i: int) -> None:
        torch.set_num_threads(threads)
        cb = (lambda e, t, loss: epoch_progress(i, e, t, loss)) if epoch_progress else None
        try:
            results[i] = train_sae(hub.factory(i), configs[i], progress=cb, device=device)
        except ConsumerStopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            errors[i] = exc
            hub.fail(exc)

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(configs))]
    for t in workers:
        t.start()
    try:
        for t in workers:
            while t.is_alive():
                t.join(0.2)  # short joins: Ctrl-C and SIGTERM reach this thread
    except BaseException as exc:
        hub.fail(exc)
        raise
    first = next((e for e in errors if e is not None), hub.failed)
    if first is not None:
        raise first
    return results


# ------------------------------------------------------------------------------------------------ learn


@dataclass(frozen=True)
class Learned:
    """One dictionary trained from a store and its configuration's label."""

    label: str
    dictionary: Dictionary


def learn_from_store(
    model: Any,
    layer: str,
    target: str,
    store: ActivationStore,
    configs: Sequence[SAEConfig],
    *,
    progress: Callable[[str], None] | None = None,
    epoch_progress: Callable[[int, int, int, float], None] | None = None,
) -> list[Learned]:
    """Dictionaries of ``layer`` (``target`` ``"feature"`` or ``"archetype"``) trained on ``store``
    for every configuration (:func:`train_many`, one pass), with the provenance
    :func:`steerlab.learning.learn_dictionary` records plus the store (folder, ``config_hash``).

    Raises :class:`StoreError` when the store was not captured from ``model`` (name, weights
    hash), ``layer`` or the ``target``'s kind, :class:`steerlab.errors.ConfigError` when a
    configuration's ``width`` is not the layer's. The SAEs train where ``model`` is."""
    from steerlab import api, devices, provenance
    from steerlab.dictionary import Dictionary
    from steerlab.sae import NoVarianceError, require_variance

    started = time.time()
    info = api.layers(model).get(layer)
    kind = {v: k for k, v in TARGET_OF_KIND.items()}.get(target)
    if kind is None:
        raise check.fail("target", "feature or archetype", target)
    store.check_matches(model, info.name, kind)
    for c in configs:
        if c.width != info.channels:
            raise ConfigError(
                f"config.width ({c.width}) must equal the channels of layer {info.name} ({info.channels})",
                parameter="config",
            )
    seed = configs[0].seed if configs else 0
    if progress:
        progress(f"training {len(configs)} SAE(s) on {store.n_vectors} {store.kind} vectors from {store.folder}")
    try:
        trained = train_many(  # where the model runs (learn --device)
            store, configs, seed=seed, progress=progress, epoch_progress=epoch_progress, device=devices.of(model)
        )
    except NoVarianceError as exc:
        if exc.stats is None:
            raise
        what = "response vectors" if target == "feature" else "generators"
        require_variance(exc.stats, info.channels, f"{model.name} {info.name}", what, store.describe())
        raise
    corpus = store.doc["corpus"]
    out = []
    for c, (sae, metrics) in zip(configs, trained):
        over = "response vectors r_t" if target == "feature" else "generators g_t = r_(t+1) - r_t"
        out.append(
            Learned(
                config_label(c),
                Dictionary(
                    sae=sae,
                    model=model.name,
                    layer=info.name,
                    target=target,
                    weights_hash=model.weights_hash(),
                    data_description=f"{target}s of {model.name} {info.name} over {over}; data {store.describe()}",
                    metrics=metrics,
                    data_manifest={
                        **corpus["manifest"],
                        "capture": {
                            "mode": store.kind,
                            "layer": info.name,
                            "subsample": None,
                            "seed": corpus["seed"],
                            "stream": "store",
                            "store": str(store.folder.resolve()),
                            "store_config_hash": store.doc["config_hash"],
                            "clip_seconds": corpus["clip_seconds"],
                            "chunk_seconds": corpus["chunk_seconds"],
                            "input_sample_rate": corpus["sample_rate"],
                            "input_channels": corpus["channels"],
                        },
                        "provenance": provenance.record(inputs=list(corpus["specs"]), started=started),
                    },
                ),
            )
        )
    return out
