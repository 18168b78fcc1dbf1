"""Orchestration of a ``steerlab partials`` run folder.

Everything that can be wrong with the input (config, model and layer names, targets
above Nyquist, dictionaries, a folder holding another run) is checked before the
folder is touched. The folder then holds ``run.json`` (configuration, hashes,
versions, plan), ``directions.safetensors`` (every learned direction and its
provenance), the append-only ``results.jsonl``, ``examples/`` (audio of a few items)
and, once every item has a row, ``summary.csv``, ``figures/`` and ``report.html``.
Rerunning with the same arguments continues where a killed run stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from steerlab.errors import OutputError, SteerlabError
from steerlab.partials.config import FORMAT_VERSION, METHODS, PartialsConfig, digest
from steerlab.partials.plan import (
    MAIN, POSITIVE, DirectionRef, ModelPlan, PlanError, control_targets, plan_model, quick_layers, work_items,
)
from steerlab.partials.store import ResultStore

RUN_FILE, DIRECTIONS_FILE, FORMAT = "run.json", "directions.safetensors", "steerlab-partials"
# bar(label, length) -> context manager yielding update(n)
BarFactory = Callable[[str, int], Any]


@dataclass
class RunOutcome:
    folder: Path
    config_hash: str
    rows: list[dict]
    written: int
    resumed_rows: int
    plans: list[ModelPlan]
    directions: dict[str, dict]
    skipped_directions: dict[str, str]
    control_status: dict[str, Any]
    examples: list[dict] = field(default_factory=list)


class _NullBar:
    def __init__(self, *_: Any) -> None:
        pass

    def __enter__(self) -> Callable[[int], None]:
        return lambda n: None

    def __exit__(self, *exc: Any) -> None:
        return None


def _check_folder(folder: Path, config_hash: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output {folder} exists and is not a folder; choose a new folder name")
    if folder.is_dir() and any(folder.iterdir()):
        run_file = folder / RUN_FILE
        if not run_file.is_file():
            raise OutputError(f"{folder} is not empty and holds no {RUN_FILE}; choose an empty or new folder")
        try:
            doc = json.loads(run_file.read_text())
        except ValueError:
            raise PlanError(f"{run_file} is damaged; choose a new output folder") from None
        if doc.get("format") != FORMAT:
            raise PlanError(f"{folder} is not a steerlab partials run folder; choose another")
        if doc.get("config_hash") != config_hash:
            raise PlanError(f"{folder} holds a run of another configuration (hash {doc.get('config_hash')}, "
                            f"this run {config_hash}); use a new output folder or the same arguments")


def _load_dictionaries(specs: Sequence[str | Path], model: Any, layer_names: set[str]) -> dict[str, Any]:
    """Feature dictionaries by layer, from folders or names of dictionaries shipped with the
    model (``steerlab dictionaries``); each must be learned on this model and these weights."""
    from steerlab import api
    from steerlab.dictionary import DictionaryError

    out: dict[str, Any] = {}
    for spec in specs:
        try:
            d = api.resolve_dictionary(spec, model).dictionary
        except DictionaryError as exc:
            raise PlanError(str(exc)) from None
        if d.kind != "feature":
            raise PlanError(f"dictionary {spec} is an {d.kind} dictionary; steering needs a feature dictionary")
        if d.layer not in layer_names:
            raise PlanError(f"dictionary {spec} is for layer {d.layer!r}, which this run does not sweep "
                            f"(layers: {', '.join(sorted(layer_names))})")
        if d.layer in out:
            raise PlanError(f"two dictionaries given for layer {d.layer!r}")
        out[d.layer] = d
    return out


def prepare(cfg: PartialsConfig, quick: bool = False, dictionaries: Sequence[str | Path] = (),
            notify: Callable[[str], None] = lambda s: None) -> tuple[list[ModelPlan], dict[str, Any], dict, str, dict]:
    """Load models, resolve the grid and hash it; raises before anything is written."""
    from steerlab import api, plugins
    from steerlab.artifacts import versions
    from steerlab.stimuli import STIMULUS_VERSION

    model = api.load_model(cfg.run.model)
    layer_names = list(cfg.grid.layers)
    if not layer_names and quick:
        layer_names = [layer.name for layer in quick_layers(list(api.layers(model)))]
    plans = [plan_model(cfg, model, MAIN, layer_names, cfg.grid.targets_hz, cfg.grid.densities)]
    dicts = _load_dictionaries(dictionaries, model, {layer.name for layer in plans[0].layers})
    pos = cfg.controls.positive_model
    status: dict[str, Any] = {"positive_model": pos or None, "positive_layer": cfg.controls.positive_layer}
    if not pos:
        status["positive"] = "switched off (controls.positive_model is empty): verdicts are unchecked"
    elif pos == model.name:
        status["positive"] = "the measured model is the positive control itself"
    elif pos not in plugins.models().names():
        status["positive"] = f"not run: model {pos!r} is not registered; verdicts are unchecked"
        notify(f"warning: positive-control model {pos!r} is not registered; the report marks verdicts unchecked")
    else:
        control = api.load_model(pos)
        plans.append(plan_model(cfg, control, POSITIVE, [cfg.controls.positive_layer], control_targets(cfg, control),
                                cfg.controls.positive_densities or cfg.grid.densities))
        status["positive"] = "run"
    weights = {p.model.name: p.model.weights_hash() for p in plans}
    measured = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "stimulus_version": STIMULUS_VERSION,
        "config": cfg.measurement_dict(), "weights": weights, "quick": quick,
        "layers": {p.model.name: [layer.name for layer in p.layers] for p in plans},
        "control_targets": {p.model.name: list(p.targets_hz) for p in plans},
        "margins_s": {p.model.name: p.margin_s for p in plans},
        "dictionaries": {k: [d.data_hash, d.config.to_dict()] for k, d in sorted(dicts.items())},
    }
    context = {"weights": weights, "seed": cfg.run.seed, "versions": versions(),
               "scoring": {"band_hz": cfg.scoring.band_hz, "n_fft": cfg.scoring.n_fft}}
    return plans, dicts, context, digest(measured), status


def _learn_all(plans: list[ModelPlan], cfg: PartialsConfig, dicts: dict[str, Any], bar: BarFactory
               ) -> tuple[dict[str, np.ndarray], dict[str, dict], dict[str, str], dict[DirectionRef, str]]:
    from steerlab.partials.directions import capture_pairs, learn, vector_hash

    jobs = []
    for plan in plans:
        by_name = {layer.name: layer for layer in plan.layers}
        for unit in plan.train:
            layer = by_name[unit.layer]
            for cpath in dict.fromkeys(plan.capture_path(layer, p) for p in plan.paths_for(layer)):
                jobs.append((plan, unit, layer, cpath))
    vectors: dict[str, np.ndarray] = {}
    prov: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    refs: dict[DirectionRef, str] = {}
    with bar("directions", len(jobs)) as update:
        for plan, unit, layer, cpath in jobs:
            specs = plan.train[unit]
            without, with_ = capture_pairs(plan.model, layer, specs, cpath, cfg.run.max_batch)
            dictionary = dicts.get(layer.name) if plan.role == MAIN else None
            learned = learn({"unit": unit.__dict__, "capture_path": cpath}, without, with_, plan.methods,
                            cfg.run.seed, cfg.run.probe_frames, dictionary, [s.key() for s in specs])
            for method, result in learned.items():
                ref = DirectionRef(unit, method, cpath)
                rid = ref.id()
                if isinstance(result, str):
                    skipped[rid] = result
                    continue
                vectors[rid] = result.vector
                prov[rid] = {**result.provenance, "unit": unit.__dict__, "method": method, "capture_path": cpath,
                             "sha256_16": vector_hash(result.vector)}
                refs[ref] = rid
            update(1)
    return vectors, prov, skipped, refs


def _save_directions(folder: Path, config_hash: str, vectors: dict, prov: dict, skipped: dict) -> None:
    from safetensors.numpy import save_file

    from steerlab.artifacts import atomic_path

    meta = {"format": FORMAT, "config_hash": config_hash, "provenance": json.dumps(prov, sort_keys=True),
            "skipped": json.dumps(skipped, sort_keys=True)}
    with atomic_path(folder / DIRECTIONS_FILE) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in vectors.items()}, str(tmp), metadata=meta)


def _load_directions(folder: Path, config_hash: str) -> Optional[tuple[dict, dict, dict]]:
    path = folder / DIRECTIONS_FILE
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
        if meta.get("config_hash") != config_hash:
            return None
        vectors = {k: f.get_tensor(k) for k in f.keys()}
    return vectors, json.loads(meta["provenance"]), json.loads(meta["skipped"])


def _refs_from(plans: list[ModelPlan], prov: dict) -> dict[DirectionRef, str]:
    ids = set(prov)
    refs = {}
    for plan in plans:
        by_name = {layer.name: layer for layer in plan.layers}
        for unit in plan.train:
            layer = by_name[unit.layer]
            for p in plan.paths_for(layer):
                for method in METHODS:
                    ref = DirectionRef(unit, method, plan.capture_path(layer, p))
                    if ref.id() in ids:
                        refs[ref] = ref.id()
    return refs


def _examples(plan: ModelPlan, items: list, n: int) -> list:
    """A few items whose audio goes into the report: for the first units (layers first),
    the largest add and the ablation, by difference of means and by the null."""
    if n == 0:
        return []
    top = max(it.strength for it in items)
    units, chosen = [], []
    for it in items:
        u = (it.layer, it.stimulus.target_hz)
        if u not in units:
            units.append(u)
    order = sorted(units, key=lambda u: (units.index(u) % max(1, len(plan.layers)), units.index(u)))
    keep = set(order[:n])
    first_seed = {}
    for it in items:
        first_seed.setdefault((it.layer, it.stimulus.target_hz), (it.stimulus.density, it.stimulus.seed, it.path))
    for it in items:
        u = (it.layer, it.stimulus.target_hz)
        if u in keep and first_seed[u] == (it.stimulus.density, it.stimulus.seed, it.path) \
                and it.method in ("diffmeans", "random") and (it.op == "ablate" or (it.op == "add" and it.strength == top)):
            chosen.append(it)
    return chosen


def run_partials(cfg: PartialsConfig, out_dir: str | Path, quick: bool = False,
                 dictionaries: Sequence[str | Path] = (), bar: BarFactory = _NullBar,
                 notify: Callable[[str], None] = lambda s: None) -> RunOutcome:
    """Run (or resume) the batch test into ``out_dir``; see the module docstring."""
    from steerlab.artifacts import atomic_write_json
    from steerlab.partials import sweep

    plans, dicts, context, config_hash, status = prepare(cfg, quick, dictionaries, notify)
    folder = Path(out_dir)
    _check_folder(folder, config_hash)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "examples").mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}; choose a writable folder") from None
    run_doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "config_hash": config_hash, "quick": quick,
        "config": cfg.to_dict(), "weights_sha256": context["weights"], "versions": context["versions"],
        "models": [{"role": p.role, **p.model.describe(), "layers": [layer.to_json() for layer in p.layers],
                    "paths": p.paths, "targets_hz": list(p.targets_hz), "densities": list(p.densities),
                    "margin_s": p.margin_s, "skipped_stimuli": p.skipped} for p in plans],
        "dictionaries": {k: str(v) for k, v in zip([d.layer for d in dicts.values()], dictionaries)},
        "controls": status,
    }
    if not (folder / RUN_FILE).is_file():
        atomic_write_json(run_doc, folder / RUN_FILE)
    store = ResultStore(folder, config_hash).open()
    resumed = len(store.rows)
    if store.repaired:
        notify(f"cut a torn last line ({store.repaired} bytes) from {store.path}; its batch is recomputed")
    loaded = _load_directions(folder, config_hash)
    if loaded is None:
        vectors, prov, skipped, refs = _learn_all(plans, cfg, dicts, bar)
        _save_directions(folder, config_hash, vectors, prov, skipped)
    else:
        vectors, prov, skipped = loaded
        refs = _refs_from(plans, prov)
    plan_items = [(plan, work_items(plan, cfg, config_hash, refs)) for plan in plans]
    examples = {it.key(): (plan, it) for plan, items in plan_items for it in _examples(plan, items, cfg.run.examples)}
    total_left = sum(1 for _, items in plan_items for it in items if not store.done(it.key()))
    written = 0
    label = "sweep" if not resumed else f"sweep ({resumed} rows from before)"
    with bar(label, total_left) as update:
        for plan, items in plan_items:
            if items:
                written += sweep.execute(plan, items, vectors, prov, store, context, cfg.run.max_batch,
                                         set(examples), folder / "examples", update)
    keys = [it.key() for _, items in plan_items for it in items]
    rows = [store.rows[k] for k in keys]
    ex = [{"key": k, "model": it.model, "layer": it.layer, "target_hz": it.stimulus.target_hz,
           "density": it.stimulus.density, "method": it.method, "op": it.op, "strength": it.strength,
           "path": it.path, "role": plan.role} for k, (plan, it) in examples.items()]
    if len(store.rows) != len(keys):
        raise SteerlabError(f"{store.path} holds {len(store.rows)} rows but this run has {len(keys)} items")
    return RunOutcome(folder, config_hash, rows, written, resumed, plans, prov, skipped, status, ex)
