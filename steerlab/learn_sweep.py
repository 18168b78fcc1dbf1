"""SAE sweeps: one dictionary per combination of layers, architectures, sizes, k and seeds
(``steerlab learn sweep``), each captured and trained by
:func:`steerlab.learning.learn_dictionary` exactly as ``steerlab learn features|archetypes``
trains one, on an executor (:mod:`steerlab.executors`: in process, or one Ray task per
configuration, the model loaded once per worker).

The output folder holds ``sweep.json`` (the grid, the shared settings and the model's weights
hash: a folder holding another sweep is refused), one dictionary folder per configuration
(:meth:`SweepItem.name`) and the append-only ``sweep.jsonl``: one line per finished
configuration (its settings, folder and metrics), appended and fsynced by this process after its
dictionary folder is written (atomically). Rerunning the same command skips the configurations
with a line; one killed before its line is trained again (its folder replaced), so a killed
sweep resumes as a killed ``steerlab partials`` run does.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from steerlab.errors import OutputError, PlanError

GRID_FILE, ROWS_FILE, FORMAT = "sweep.json", "sweep.jsonl", "steerlab-sae-sweep"


@dataclass(frozen=True)
class SweepItem:
    """One configuration of a sweep."""

    layer: str
    architecture: str
    size: int
    k: int
    seed: int

    def name(self) -> str:
        """The configuration's dictionary folder name, e.g. ``encoder.5.elu__topk-s128-k8-seed0``."""
        return f"{self.layer}__{self.architecture}-s{self.size}-k{self.k}-seed{self.seed}"


@dataclass(frozen=True)
class SweepSpec:
    """What every configuration shares: the model (by name, checkpoint and weights hash, so a
    worker loads it itself and checks it), ``target`` (``feature`` or ``archetype``), the
    ``data`` specs, ``training`` (the other :class:`steerlab.sae.SAEConfig` fields: l1, lr,
    epochs, batch_size, center, normalize), ``corpus`` (clip_seconds, chunk_seconds,
    skip_bad_files) and ``capture`` (subsample, stream, cache_dir, budget_bytes: the keyword
    arguments of :func:`~steerlab.learning.learn_dictionary`); ``device``: where each worker runs
    the model and trains (:func:`steerlab.devices.resolve` on the worker; recorded in each dictionary)."""

    model: str
    checkpoint: str | None
    weights_sha256: str
    target: str
    data: tuple[str, ...]
    training: dict[str, Any] = field(default_factory=dict)
    corpus: dict[str, Any] = field(default_factory=dict)
    capture: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"


def grid(
    layers: Sequence[str], architectures: Sequence[str], sizes: Sequence[int], ks: Sequence[int], seeds: Sequence[int]
) -> list[SweepItem]:
    """Every combination, layers outermost, duplicates dropped."""
    combos = itertools.product(layers, architectures, sizes, ks, seeds)
    return list(dict.fromkeys(SweepItem(*c) for c in combos))


def _model(spec: SweepSpec) -> Any:
    from steerlab import api, executors
    from steerlab.errors import SteerlabError

    def load() -> Any:
        model = api.load_model(spec.model, spec.checkpoint, device=spec.device)
        if model.weights_hash() != spec.weights_sha256:
            raise SteerlabError(
                f"a worker loaded {spec.model} with weights {model.weights_hash()[:12]}, not the sweep's "
                f"{spec.weights_sha256[:12]}; install the same weights (and checkpoint) on every node",
                parameter="checkpoint",
            )
        return model

    return executors.cached(("sweep-model", spec.model, spec.checkpoint, spec.weights_sha256, spec.device), load)


def config_for(spec: SweepSpec, item: SweepItem, width: int) -> Any:
    """The :class:`steerlab.sae.SAEConfig` of one configuration (raises ``ConfigError`` for a
    bad combination, e.g. ``k`` > ``size``)."""
    from steerlab.sae import SAEConfig

    return SAEConfig(
        width=width, size=item.size, k=item.k, architecture=item.architecture, seed=item.seed, **spec.training
    )


def train_one(spec: SweepSpec, item: SweepItem) -> Any:
    """Capture and train one configuration (:func:`steerlab.learning.learn_dictionary`); the
    :class:`steerlab.dictionary.Dictionary`, not saved. A pure function of its arguments: an
    executor may run it anywhere."""
    from steerlab import api
    from steerlab.capture import Corpus
    from steerlab.learning import learn_dictionary

    model = _model(spec)
    info = api.layers(model).get(item.layer)
    corpus = Corpus.for_model(model, spec.data, seed=item.seed, **spec.corpus)
    return learn_dictionary(
        model, item.layer, spec.target, corpus, config_for(spec, item, info.channels), **spec.capture
    )


def _grid_doc(spec: SweepSpec, items: Sequence[SweepItem]) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": 1, "spec": asdict(spec), "items": [asdict(i) for i in items]}


def _finished(path: Path) -> dict[str, dict]:
    """Rows of ``sweep.jsonl`` by name; a torn last line (a kill inside the append) is cut off."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    rows = {}
    for i, line in enumerate(data[:end].splitlines(), start=1):
        try:
            row = json.loads(line)
            rows[row["name"]] = row
        except (ValueError, KeyError, TypeError):
            raise PlanError(f"{path} line {i} is damaged; move the file away to start the sweep afresh") from None
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    return rows


def _append(path: Path, row: dict) -> None:
    with open(path, "ab") as f:
        f.write((json.dumps(row, sort_keys=True, allow_nan=False) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def run_sweep(
    spec: SweepSpec,
    items: Sequence[SweepItem],
    out_dir: str | Path,
    executor: Any = None,
    notify: Callable[[str], None] = lambda s: None,
) -> list[dict]:
    """Train every configuration of ``items`` not yet finished in ``out_dir`` (module docstring)
    on ``executor`` (None: in this process) and return the rows of all of them, in ``items``
    order. Raises ``PlanError`` for a folder holding another sweep, ``OutputError`` for a folder
    that cannot be written or that holds something else, before any training."""
    from steerlab import dictionary, executors
    from steerlab.artifacts import atomic_write_json, clean_json, remove_stale_temporaries

    folder = Path(out_dir)
    doc = _grid_doc(spec, items)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output {folder} exists and is not a folder; choose a new folder name")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / GRID_FILE).is_file():
            raise OutputError(f"{folder} is not empty and holds no {GRID_FILE}; choose an empty or new folder")
        if json.loads((folder / GRID_FILE).read_text()) != json.loads(json.dumps(doc)):
            raise PlanError(f"{folder} holds another sweep; use a new output folder or the same arguments")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}; choose a writable folder") from None
    remove_stale_temporaries(folder)  # what a killed atomic write left
    if not (folder / GRID_FILE).is_file():
        atomic_write_json(doc, folder / GRID_FILE)
    rows = _finished(folder / ROWS_FILE)
    todo = [it for it in items if it.name() not in rows]
    if rows:
        notify(f"{len(rows)} of {len(items)} configurations finished before; training {len(todo)}")
    with executors.matching_threads(executor):
        for i, d in (executor or executors.LocalExecutor()).map(train_one, spec, todo):
            item = todo[i]
            dictionary.save(d, folder / item.name(), overwrite=True)  # atomic; then its row
            row = {**asdict(item), "name": item.name(), "folder": item.name(), "metrics": clean_json(d.metrics)}
            _append(folder / ROWS_FILE, row)
            rows[item.name()] = row
            notify(f"{item.name()}: {_figures(d.metrics)} ({len(rows)}/{len(items)})")
    return [rows[it.name()] for it in items]


def _figures(m: dict) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    return f"explained variance {fmt(m.get('explained_variance'))}, L0 {fmt(m.get('l0'))}"
