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
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.artifacts import config_hash
from steerlab.errors import OutputError, PlanError, SteerlabError
from steerlab.partials.config import FORMAT_VERSION, METHODS, PartialsConfig
from steerlab.partials.plan import (
    MAIN,
    POSITIVE,
    DirectionRef,
    ModelPlan,
    control_targets,
    plan_model,
    quick_layers,
    work_items,
)
from steerlab.partials.store import ResultStore, write_directions

RUN_FILE, DIRECTIONS_FILE, FORMAT = "run.json", "directions.safetensors", "steerlab-partials"
PROVENANCE_FILE = "provenance.json"
# beside each direction ``id`` in directions.safetensors: its subtraction template and level [frames]
TEMPLATE, LEVEL = "/template", "/level"
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


def _run_schema() -> dict[str, Any]:
    from steerlab import schema

    return {
        "format_version": schema.integer(1),
        "config_hash": schema.string(nonempty=True),
        "weights_sha256": schema.mapping(),
        "config": schema.mapping(),
    }


RUN_SCHEMA = _run_schema()  # the keys of run.json a resume and the report read


def _check_folder(
    folder: Path, config_hash: str, differences: Callable[[dict[str, Any]], list[str]] | None = None
) -> None:
    """Refuse ``folder`` unless it is new, empty or a run of this ``config_hash`` (resumed);
    ``differences``: from the held ``run.json``, the settings that differ, which the message names
    (as steerability's does) instead of the bare hashes."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output {folder} exists and is not a folder; choose a new folder name")
    if folder.is_dir() and any(folder.iterdir()):
        run_file = folder / RUN_FILE
        if not run_file.is_file():
            raise OutputError(f"{folder} is not empty and holds no {RUN_FILE}; choose an empty or new folder")
        from steerlab import schema  # one schema check for every artifact read (issue 10)

        doc = schema.read_json(run_file, RUN_SCHEMA, PlanError, format=FORMAT, what="steerlab partials run")
        if doc.get("config_hash") != config_hash:
            diffs = differences(doc) if differences is not None else []
            if diffs:
                raise other_settings(folder, "steerlab partials", diffs)
            raise PlanError(
                f"{folder} holds a run of another configuration (hash {doc.get('config_hash')}, "
                f"this run {config_hash}); use a new output folder or the same arguments"
            )


def _run_differences(
    cfg: PartialsConfig, quick: bool, plans: Sequence[Any], dictionaries: Sequence[str | Path], weights: dict
) -> Callable[[dict[str, Any]], list[str]]:
    """What :func:`_check_folder` names: each setting of this run that differs from a held ``run.json``,
    as ``name held (this run: value)`` (quick, layers, dictionaries, weights) or ``[section] key`` (the
    configuration's measured settings)."""

    def show(v: Any) -> str:
        return (",".join(map(str, v)) or "-") if isinstance(v, list) else str(v)

    def differences(doc: dict[str, Any]) -> list[str]:
        held_layers = {
            m.get("name"): [layer.get("name") for layer in m.get("layers", [])] for m in doc.get("models", [])
        }
        main = plans[0].model.name if plans else None
        out = [  # the main model's layers; a control model's, by its name
            f"layers{'' if m == main else f' of {m}'} {show(held_layers.get(m, []))} (this run: {show(names)})"
            for m, names in ((p.model.name, [layer.name for layer in p.layers]) for p in plans)
            if held_layers.get(m) != names
        ]
        if doc.get("quick") != quick:
            out.append(f"quick {doc.get('quick')} (this run: {quick})")
        held_dicts = sorted(map(str, (doc.get("dictionaries") or {}).values()))
        if held_dicts != sorted(map(str, dictionaries)):
            out.append(f"dictionaries {show(held_dicts)} (this run: {show(sorted(map(str, dictionaries)))})")
        held_weights = doc.get("weights_sha256") or {}
        out += [  # a model both runs measure, with other weights
            f"weights of {m} {held_weights[m][:12]} (this run: {w[:12]})"
            for m, w in weights.items()
            if isinstance(held_weights.get(m), str) and isinstance(w, str) and held_weights[m] != w
        ]
        measured = json.loads(json.dumps(cfg.measurement_dict()))
        # [grid] layers is named above, as the layers swept
        return out + config_differences(doc.get("config") or {}, measured, skip={("grid", "layers")})

    return differences


def config_differences(
    held: dict[str, Any], now: dict[str, dict[str, Any]], skip: Collection[tuple[str, str]] = ()
) -> list[str]:
    """``[section] key`` for each setting of configuration ``now`` (section -> key -> value, as
    JSON reads it back) that the held run's configuration ``held`` records otherwise, except ``skip``."""
    return [
        f"[{section}] {k}"
        for section, values in now.items()
        for k, v in values.items()
        if held.get(section, {}).get(k) != v and (section, k) not in skip
    ]


def other_settings(folder: Path, what: str, diffs: Sequence[str]) -> PlanError:
    """The one-line refusal of a run ``folder`` holding a ``what`` run of other settings: the first
    six of ``diffs`` (each ``name held (this run: value)`` or ``[section] key``) and how many more."""
    shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
    return PlanError(
        f"{folder} holds a {what} run of other settings: {shown}; use a new output folder, or rerun with "
        "that run's arguments to resume it"
    )


def _load_dictionaries(specs: Sequence[str | Path], model: Any, layer_names: set[str]) -> dict[str, Any]:
    """Feature dictionaries by layer, from folders or names of dictionaries shipped with the
    model (``steerlab dictionaries``); each must be learned on this model and these weights."""
    from steerlab import api
    from steerlab.errors import DictionaryError

    out: dict[str, Any] = {}
    for spec in specs:
        try:
            d = api.resolve_dictionary(spec, model).dictionary
        except DictionaryError as exc:
            raise PlanError(str(exc)) from None
        if d.target != "feature":
            raise PlanError(f"dictionary {spec} is an {d.target} dictionary; steering needs a feature dictionary")
        if d.layer not in layer_names:
            raise PlanError(
                f"dictionary {spec} is for layer {d.layer!r}, which this run does not sweep "
                f"(layers: {', '.join(sorted(layer_names))})"
            )
        if d.layer in out:
            raise PlanError(f"two dictionaries given for layer {d.layer!r}")
        out[d.layer] = d
    return out


def control_plans(
    cfg: PartialsConfig,
    model: Any,
    plans: list[ModelPlan],
    notify: Callable[[str], None] = lambda s: None,
    device: Any = "auto",
) -> dict[str, Any]:
    """Plan every positive control of ``cfg`` (appended to ``plans``); returns the controls'
    status: per control model, ``"run"`` or why it did not run, and the layer it runs at."""
    from steerlab import api, plugins
    from steerlab.partials.config import KNOWN_CONTROLS
    from steerlab.partials.plan import control_layer

    registered = plugins.models().names()
    wanted = cfg.controls.positive_models
    auto = wanted == "auto"
    names = [n for n in KNOWN_CONTROLS if n in registered] if auto else list(wanted)
    status: dict[str, Any] = {"positive_models": names, "models": {}, "layers": {}}
    if not names:
        status["positive"] = (
            "switched off (controls.positive_models is empty): verdicts are unchecked"
            if not auto
            else "no positive-control model is registered: verdicts are unchecked"
        )
        return status
    for name in names:
        if name == model.name:
            status["models"][name] = "the measured model is this positive control itself"
        elif name not in registered:
            status["models"][name] = f"not run: model {name!r} is not registered"
            notify(
                f"warning: positive-control model {name!r} is not registered; its checks are missing from the report"
            )
        else:
            control = api.load_model(name, device=device)
            layer = control_layer(cfg, control)
            plans.append(
                plan_model(
                    cfg,
                    control,
                    POSITIVE,
                    [layer],
                    control_targets(cfg, control),
                    cfg.controls.positive_densities or cfg.grid.densities,
                )
            )
            status["models"][name], status["layers"][name] = "run", layer
    ran = [n for n, st in status["models"].items() if st == "run"]
    status["positive"] = "run" if ran else "none ran: verdicts are unchecked"
    return status


CONTROL_DICTIONARIES = "control_dictionaries"


def control_dictionary_recipe(cfg: PartialsConfig, plans: list[ModelPlan], dicts: dict) -> dict | None:
    """The recipe of the controls' own SAE dictionaries when this run needs them (``sae`` on the
    measured model with a dictionary, and ``sae`` among the controls' methods), else None."""
    if not dicts or not any(p.role == POSITIVE and "sae" in p.methods for p in plans):
        return None
    c = cfg.controls
    return {
        "size": c.dictionary_size,
        "k": c.dictionary_k,
        "clips": c.dictionary_clips,
        "vectors": c.dictionary_vectors,
        "steps": c.dictionary_steps,
        "seed": cfg.run.seed,
        "kind_of_sae": "topk",
        "lr": 1e-3,
        "batch_size": 256,
        "data": f"synth:{c.dictionary_clips} (1 s clips, seed {cfg.run.seed})",
    }


def control_dictionaries(
    cfg: PartialsConfig, plans: list[ModelPlan], folder: Path, notify: Callable[[str], None] = lambda s: None
) -> dict[tuple[str, str], Any]:
    """Learn (or load from ``folder/control_dictionaries/MODEL__LAYER``, where a run caches them)
    each positive control's own SAE dictionary at its control layer
    (:func:`steerlab.partials.directions.control_dictionary`); ``(model, layer) -> Dictionary``.
    A cached one is used only if its recipe, layer and model weights are this run's."""
    from steerlab import dictionary as dictionary_io
    from steerlab.partials.directions import control_dictionary

    out: dict[tuple[str, str], Any] = {}
    for plan in plans:
        if plan.role != POSITIVE or "sae" not in plan.methods:
            continue
        layer = plan.layers[0]
        where = folder / CONTROL_DICTIONARIES / f"{plan.model.name}__{layer.name}"
        c = cfg.controls
        d = None
        if (where / dictionary_io.CONFIG_FILE).is_file():
            d = dictionary_io.load(where)
            got = (d.data_manifest or {}).get("control_recipe")
            want = {
                "clips": c.dictionary_clips,
                "vectors": c.dictionary_vectors,
                "steps": c.dictionary_steps,
                "size": c.dictionary_size,
                "k": c.dictionary_k,
                "seed": cfg.run.seed,
            }
            if (d.layer, d.weights_hash, got) != (layer.name, plan.model.weights_hash(), want):
                raise PlanError(f"{where} holds a control dictionary of another recipe; use a new output folder")
        if d is None:
            notify(f"learning an SAE dictionary on positive control {plan.model.name} {layer.name}")
            d = control_dictionary(plan.model, layer, c, cfg.run.seed, cfg.run.max_batch)
            where.parent.mkdir(exist_ok=True)
            dictionary_io.save(d, where)
        out[(plan.model.name, layer.name)] = d
    return out


def describe_control_dictionaries(dicts: dict[tuple[str, str], Any], cache: Path, run_folder: Path) -> dict[str, Any]:
    """What a run records of its controls' own dictionaries (:func:`control_dictionaries`, cached
    under ``cache``), per ``model:layer``: the cache folder (relative to ``run_folder``), the
    SHA-256 of the frames it was learned on (``data_sha256``) and of its saved SAE weights
    (``sae_weights_sha256``), the model weights' hash, the SAE config, the recipe and the explained
    variance."""
    import os

    from steerlab import dictionary as dictionary_io
    from steerlab.artifacts import file_sha256

    out: dict[str, Any] = {}
    for (model, layer), d in sorted(dicts.items()):
        where = Path(cache) / CONTROL_DICTIONARIES / f"{model}__{layer}"
        out[f"{model}:{layer}"] = {
            "folder": Path(os.path.relpath(where, run_folder)).as_posix(),
            "data_sha256": d.data_hash,
            "sae_weights_sha256": file_sha256(where / dictionary_io.WEIGHTS_FILE),
            "model_weights_sha256": d.weights_hash,
            "sae": d.config.to_dict(),
            "recipe": (d.data_manifest or {}).get("control_recipe"),
            "explained_variance": d.metrics.get("explained_variance"),
        }
    return out


def prepare(
    cfg: PartialsConfig,
    quick: bool = False,
    dictionaries: Sequence[str | Path] = (),
    notify: Callable[[str], None] = lambda s: None,
    device: Any = "auto",
) -> tuple[list[ModelPlan], dict[tuple[str, str], Any], dict, str, dict]:
    """Load models (on ``device``, :func:`steerlab.devices.resolve`), resolve the grid and hash it;
    raises before anything is written."""
    from steerlab import api
    from steerlab.artifacts import versions
    from steerlab.partials import sae_data
    from steerlab.stimuli import STIMULUS_VERSION

    if sae_data.uses_stimuli(cfg) and dictionaries:
        raise PlanError(
            f"dictionaries and sae_data {cfg.grid.sae_data!r} exclude each other: with {cfg.grid.sae_data} every "
            "model learns its own dictionary per layer on the run's stimuli; drop one of them",
            parameter=("dictionaries", "sae_data"),
        )
    model = api.load_model(cfg.run.model, device=device)
    layer_names = list(cfg.grid.layers)
    if not layer_names and quick:
        layer_names = [layer.name for layer in quick_layers(list(api.layers(model)))]
    plans = [plan_model(cfg, model, MAIN, layer_names, cfg.grid.targets_hz, cfg.grid.densities)]
    dicts = {
        (model.name, layer): d
        for layer, d in _load_dictionaries(dictionaries, model, {layer.name for layer in plans[0].layers}).items()
    }
    status = control_plans(cfg, model, plans, notify, device)
    recipe = control_dictionary_recipe(cfg, plans, dicts)
    weights = {p.model.name: p.model.weights_hash() for p in plans}
    measured = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "stimulus_version": STIMULUS_VERSION,
        "config": cfg.measurement_dict(),
        "weights": weights,
        "quick": quick,
        "layers": {p.model.name: [layer.name for layer in p.layers] for p in plans},
        "control_targets": {p.model.name: list(p.targets_hz) for p in plans},
        "margins_s": {p.model.name: p.margin_s for p in plans},
        "dictionaries": {f"{m}:{layer}": [d.data_hash, d.config.to_dict()] for (m, layer), d in sorted(dicts.items())},
    }
    if recipe is not None:  # only then: a run without sae keeps the hash it had before the recipe existed
        measured["control_dictionary"] = recipe
    stim = sae_data.run_recipe(cfg, plans)
    if stim is not None:
        measured["stimulus_dictionary"] = stim
    context = {"weights": weights, "seed": cfg.run.seed, "versions": versions(), "scoring": cfg.scoring.options()}
    return plans, dicts, context, config_hash(measured), status


def _learn_all(
    plans: list[ModelPlan], cfg: PartialsConfig, dicts: dict[tuple[str, str], Any], bar: BarFactory
) -> tuple[dict[str, np.ndarray], dict[str, dict], dict[str, str], dict[DirectionRef, str]]:
    from steerlab.partials.directions import capture_pairs, learn, vector_hash
    from steerlab.partials.sweep import edit_span

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
            dictionary = dicts.get((plan.model.name, layer.name))
            span = edit_span("add", specs[0], layer).frames(layer, len(without[0]))
            learned = learn(
                {"unit": unit.__dict__, "capture_path": cpath},
                without,
                with_,
                plan.methods,
                cfg.run.seed,
                cfg.run.probe_frames,
                dictionary,
                [s.key() for s in specs],
                span,
            )
            for method, result in learned.items():
                ref = DirectionRef(unit, method, cpath)
                rid = ref.id()
                if isinstance(result, str):
                    skipped[rid] = result
                    continue
                vectors[rid] = result.vector
                extra = dict(result.provenance)
                vectors[rid + TEMPLATE], vectors[rid + LEVEL] = extra.pop("_template"), extra.pop("_level")
                prov[rid] = {
                    **extra,
                    "unit": unit.__dict__,
                    "method": method,
                    "capture_path": cpath,
                    "sha256_16": vector_hash(result.vector),
                }
                refs[ref] = rid
            update(1)
    return vectors, prov, skipped, refs


def _load_directions(folder: Path, config_hash: str) -> tuple[dict, dict, dict] | None:
    from steerlab.partials.store import read_directions  # schema-checked (issue 10)

    return read_directions(folder / DIRECTIONS_FILE, config_hash, (TEMPLATE, LEVEL))


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
    first_seed: dict[tuple[str, float], tuple[int, int, str]] = {}
    for it in items:
        first_seed.setdefault((it.layer, it.stimulus.target_hz), (it.stimulus.density, it.stimulus.seed, it.path))
    for it in items:
        u = (it.layer, it.stimulus.target_hz)
        if (
            u in keep
            and first_seed[u] == (it.stimulus.density, it.stimulus.seed, it.path)
            and it.method in ("diffmeans", "random")
            and (it.op == "ablate" or (it.op == "add" and it.strength == top))
        ):
            chosen.append(it)
    return chosen


def run_partials(
    cfg: PartialsConfig,
    out_dir: str | Path,
    quick: bool = False,
    dictionaries: Sequence[str | Path] = (),
    bar: BarFactory = _NullBar,
    notify: Callable[[str], None] = lambda s: None,
    device: Any = "auto",
    executor: Any = None,
) -> RunOutcome:
    """Run (or resume) the batch test into ``out_dir``; see the module docstring. ``device``: where
    the models run (not part of the run's config hash: a run resumes on another device).
    ``executor``: where the sweep's batches run (a :class:`steerlab.executors.Executor`; None:
    in this process); this process writes every row, so the rows and resuming do not depend on it.
    Workers of a distributed executor load the models on the CPU, so with one the run's device
    must be the CPU (:class:`~steerlab.errors.ConfigError` otherwise)."""
    from steerlab import devices
    from steerlab.errors import ConfigError
    from steerlab.executors import matching_threads

    if executor is not None and executor.name != "local" and devices.resolve(device).type != "cpu":
        raise ConfigError(
            f"the {executor.name} executor's workers run the models on the CPU, so the run's "
            f"device must be the CPU too (got {device!r}, which is {devices.resolve(device)}); use device 'cpu'",
            parameter=("device", "executor"),
        )
    with matching_threads(executor):  # every number of the run from one thread count (executors)
        return _run_partials(cfg, out_dir, quick, dictionaries, bar, notify, executor, device)


def _run_partials(
    cfg: PartialsConfig,
    out_dir: str | Path,
    quick: bool,
    dictionaries: Sequence[str | Path],
    bar: BarFactory,
    notify: Callable[[str], None],
    executor: Any,
    device: Any,
) -> RunOutcome:
    from steerlab import provenance
    from steerlab.artifacts import atomic_write_json, remove_stale_temporaries
    from steerlab.partials import sae_data, sweep

    started = time.time()
    plans, dicts, context, config_hash, status = prepare(cfg, quick, dictionaries, notify, device)
    folder = Path(out_dir)
    _check_folder(folder, config_hash, _run_differences(cfg, quick, plans, dictionaries, context["weights"]))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "examples").mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}; choose a writable folder") from None
    remove_stale_temporaries(folder)  # what a killed atomic write left (a resumed run)
    run_doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config_hash": config_hash,
        "quick": quick,
        "config": cfg.to_dict(),
        "weights_sha256": context["weights"],
        "versions": context["versions"],
        "models": [
            {
                "role": p.role,
                **p.model.describe(),
                "layers": [layer.to_json() for layer in p.layers],
                "paths": p.paths,
                "targets_hz": list(p.targets_hz),
                "densities": list(p.densities),
                "margin_s": p.margin_s,
                "skipped_stimuli": p.skipped,
            }
            for p in plans
        ],
        "dictionaries": {k: str(v) for k, v in zip([d.layer for d in dicts.values()], dictionaries)},
        "controls": status,
        "control_dictionary": control_dictionary_recipe(cfg, plans, dicts),
        "provenance": provenance.record(inputs=[Path(d) / "config.json" for d in dictionaries], device=plans[0].model),
    }
    if sae_data.run_recipe(cfg, plans) is not None:
        run_doc["stimulus_dictionary"] = sae_data.run_recipe(cfg, plans)
    if not (folder / RUN_FILE).is_file():
        atomic_write_json(run_doc, folder / RUN_FILE)
    store = ResultStore(folder, config_hash).open()
    resumed = len(store.rows)
    if store.repaired:
        notify(f"cut a torn last line ({store.repaired} bytes) from {store.path}; its batch is recomputed")
    loaded = _load_directions(folder, config_hash)
    # the sweep needs the dictionaries too (sae_ablate: the sae method's removal in code space);
    # on a resume they come from their caches in the folder
    if loaded is None or any("sae" in p.methods for p in plans):
        if control_dictionary_recipe(cfg, plans, dicts) is not None:
            dicts = {**dicts, **control_dictionaries(cfg, plans, folder, notify)}
        if sae_data.run_recipe(cfg, plans) is not None:
            dicts = {**dicts, **sae_data.dictionaries(cfg, plans, folder, notify)}
    if loaded is None:
        if sae_data.run_recipe(cfg, plans) is not None:
            doc = json.loads((folder / RUN_FILE).read_text())
            doc["stimulus_dictionaries"] = sae_data.describe(dicts)  # data hashes, SAE configs, frames
            atomic_write_json(doc, folder / RUN_FILE)
        vectors, prov, skipped, refs = _learn_all(plans, cfg, dicts, bar)
        write_directions(folder / DIRECTIONS_FILE, FORMAT, config_hash, vectors, prov, skipped)
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
                written += sweep.execute(
                    plan,
                    items,
                    vectors,
                    prov,
                    store,
                    context,
                    cfg.run.max_batch,
                    set(examples),
                    folder / "examples",
                    update,
                    executor,
                    dicts,
                )
    keys = [it.key() for _, items in plan_items for it in items]
    rows = [store.rows[k] for k in keys]
    ex = [
        {
            "key": k,
            "model": it.model,
            "layer": it.layer,
            "target_hz": it.stimulus.target_hz,
            "density": it.stimulus.density,
            "method": it.method,
            "op": it.op,
            "strength": it.strength,
            "path": it.path,
            "role": plan.role,
        }
        for k, (plan, it) in examples.items()
    ]
    if len(store.rows) != len(keys):
        raise SteerlabError(f"{store.path} holds {len(store.rows)} rows but this run has {len(keys)} items")
    # run.json describes the first invocation; this file the latest one (a resume), with its wall time
    atomic_write_json(
        provenance.record(
            inputs=[Path(d) / "config.json" for d in dictionaries],
            started=started,
            rows_written=written,
            rows_resumed=resumed,
            device=plans[0].model,
            **({"executor": executor.describe()} if executor is not None else {}),
        ),
        folder / PROVENANCE_FILE,
    )
    return RunOutcome(folder, config_hash, rows, written, resumed, plans, prov, skipped, status, ex)
