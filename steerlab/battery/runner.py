"""Running one concept of the battery into its folder, resumably.

For each model (the measured one and the concept's positive controls) the concept's training
pairs are captured at each layer and the directions learned there (difference of means, probe,
SAE feature where a dictionary is given, the norm-matched random null:
:func:`steerlab.partials.directions.learn`, as for partials). When the run uses ``sae`` (a
dictionary of the measured model), each control learns its own dictionary at its layer as
partials' controls do (:func:`steerlab.partials.runner.control_dictionaries`: on the synthetic
corpus, never the run's stimuli; cached in ``control_dictionaries/`` of the run folder, or of
the battery's folder so that its concepts share them; the recipe hashed, the dictionaries'
hashes recorded in ``run.json``), so the ``sae`` verdicts are validated by
their controls like the others. Every work item then patches a
held-out pair through the one engine (:func:`steerlab.engine.run`, the edit of
:func:`steerlab.partials.sweep.patch_for`: ``add`` on the sound's span, calibrated ``subtract``,
``ablate``) and the concept scores the patched decode against the unpatched decode of the same
signal on the same path. The folder holds ``run.json`` (configuration, the rule with its
thresholds and rationale, the controls and why they can vouch, hashes, versions),
``directions.safetensors`` and the append-only ``results.jsonl``
(:class:`steerlab.partials.store.ResultStore`: a ``kill -9`` loses at most the batch in
flight; rerunning with the same arguments continues). Everything that can be wrong with the
arguments is checked before the folder is touched.

The work items run on an executor (:mod:`steerlab.executors`: in this process, or Ray tasks;
docs/distributed.md): :func:`path_baselines` (the unpatched decodes of one model's signals on one
path) and :func:`batch_rows` (one batch's patched passes and rows) are pure functions of a
:class:`BatchContext` and their task; :func:`_execute` sends them and is the one writer.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import numpy as np

from steerlab.battery.calibrated import CALIBRATED_OPS, CALIBRATED_STRENGTHS, CALIBRATION
from steerlab.battery.concept import Concept, PairSpec, no_control_reason
from steerlab.battery.plan import (
    FORMAT,
    FORMAT_VERSION,
    BatteryItem,
    ConceptPlan,
    direction_id,
    plan_concept,
    work_items,
)
from steerlab.errors import OutputError, PlanError, SteerlabError
from steerlab.partials.config import PartialsConfig
from steerlab.partials.plan import MAIN, POSITIVE, batches
from steerlab.partials.runner import BarFactory, _NullBar
from steerlab.partials.store import ResultStore, write_directions

RUN_FILE, DIRECTIONS_FILE = "run.json", "directions.safetensors"


def _row_schema() -> dict[str, Any]:
    from steerlab import schema

    score = schema.nullable(schema.number())
    return {
        "key": schema.string(nonempty=True),
        "config_hash": schema.string(nonempty=True),
        "concept": schema.string(nonempty=True),
        "model": schema.string(nonempty=True),
        "model_role": schema.string(),
        "layer": schema.string(nonempty=True),
        "seed": schema.integer(),
        "role": schema.string(),
        "method": schema.string(),
        "op": schema.string(),
        "strength": schema.number(),
        "path": schema.string(),
        "target": score,
        "damage": score,
    }


class BatteryStore(ResultStore):
    """``results.jsonl`` of a concept's run: partials' store, with the battery's rows."""

    row_schema = _row_schema()


@dataclass
class ConceptOutcome:
    folder: Path
    config_hash: str
    concept: Concept
    plans: list[ConceptPlan]
    rows: list[dict]
    written: int
    resumed: int
    directions: dict[str, dict]
    skipped_directions: dict[str, str]
    controls: dict[str, str]
    dictionaries: dict = dataclasses.field(default_factory=dict)  # by (model, layer): sae_ablate's SAEs


@lru_cache(maxsize=256)
def _cached_pair(concept: Any, spec: PairSpec) -> tuple[np.ndarray, np.ndarray]:
    return cast(tuple[np.ndarray, np.ndarray], concept.render(spec))


def _pair(concept: Concept, spec: PairSpec) -> tuple[np.ndarray, np.ndarray]:
    """Rendering is a pure function of the spec; one pair serves its many items (cached)."""
    return _cached_pair(cast(Any, concept), spec)


def _wave(concept: Concept, model: Any, spec: PairSpec, role: str) -> Any:
    import torch

    without, with_ = _pair(concept, spec)
    x = without if role == "without" else with_
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].repeat(model.channels, 1)


def controls_of(concept: Concept, cfg: PartialsConfig | None = None) -> dict[str, str]:
    """The positive controls that can vouch for ``concept`` and why (model name -> reason), less
    those a configuration's ``[controls] positive_models`` leaves out (a list; ``"auto"`` keeps all)."""
    out = dict(concept.controls)
    wanted = None if cfg is None else cfg.controls.positive_models
    if wanted is not None and wanted != "auto":
        out = {k: v for k, v in out.items() if k in wanted}
    return out


def prepare(
    concept: Concept,
    cfg: PartialsConfig,
    model_name: str | None,
    quick: bool,
    layer_names: Sequence[str] = (),
    dictionary_specs: Sequence[str | Path] = (),
    device: Any = "auto",
    variant: str = "synthetic",
) -> tuple[list[ConceptPlan], str, dict[str, Any], dict[tuple[str, str], Any]]:
    """Load the models and plan the concept on each; returns the plans, the configuration hash,
    what it hashes and the feature dictionaries of ``dictionary_specs`` (folders or shipped names,
    checked as ``steerlab partials --dictionary`` checks them) by ``(model, layer)``. ``variant``:
    the stimulus variant of every pair (:func:`steerlab.battery.plan.concept_pairs`). Raises
    before anything is written."""
    from steerlab import api
    from steerlab.partials.runner import _load_dictionaries, control_dictionary_recipe
    from steerlab.stimuli import STIMULUS_VERSION

    model = api.load_model(model_name or cfg.run.model, device=device)
    plans = [plan_concept(concept, cfg, model, MAIN, quick, layer_names, variant)]
    names = {layer.name for layer in plans[0].plan.layers}
    dicts = {(model.name, k): d for k, d in _load_dictionaries(dictionary_specs, model, names).items()}
    for name in controls_of(concept, cfg):
        if name != model.name:
            plans.append(plan_concept(concept, cfg, api.load_model(name, device=device), POSITIVE, quick, (), variant))
    measured = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "stimulus_version": STIMULUS_VERSION,
        "concept": concept.name,
        "rule": concept.rule.to_dict(),
        "grid": {
            "strengths": list(cfg.grid.strengths),
            "subtract_strengths": list(cfg.grid.subtract_strengths),
            "calibrated_strengths": list(CALIBRATED_STRENGTHS),
            "methods": list(cfg.grid.methods),
            "n_q": cfg.grid.n_q,
        },
        "run": {"seed": cfg.run.seed, "probe_frames": cfg.run.probe_frames},
        "quick": quick,
        "models": {
            p.model.name: {
                "role": p.role,
                "weights": p.model.weights_hash(),
                "layers": [layer.name for layer in p.plan.layers],
                "paths": p.plan.paths,
                "train": [s.key() for s in p.train],
                "test": [s.key() for s in p.test],
            }
            for p in plans
        },
    }
    from steerlab.artifacts import config_hash

    if variant != "synthetic":  # only then: a synthetic run keeps its hash (the pairs' keys name it too)
        measured["variant"] = variant
    if dicts:  # only then: a run without dictionaries keeps its hash
        measured["dictionaries"] = {f"{m}:{k}": d.data_hash for (m, k), d in sorted(dicts.items())}
    recipe = control_dictionary_recipe(cfg, [p.plan for p in plans], dicts)
    if recipe is not None:  # only then (the controls run sae): a run without sae keeps its hash
        measured["control_dictionary"] = recipe
    return plans, config_hash(measured), measured, dicts


def _check_folder(folder: Path, config_hash: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output {folder} exists and is not a folder; choose a new folder name")
    if folder.is_dir() and any(folder.iterdir()):
        run_file = folder / RUN_FILE
        if not run_file.is_file():
            raise OutputError(f"{folder} is not empty and holds no {RUN_FILE}; choose an empty or new folder")
        try:
            doc = json.loads(run_file.read_text())
        except (OSError, ValueError) as exc:
            raise PlanError(f"{run_file} is not a readable steerability run ({exc}); use a new output folder") from None
        if doc.get("format") != FORMAT or doc.get("config_hash") != config_hash:
            raise PlanError(
                f"{folder} holds a run of another configuration (hash {doc.get('config_hash')}, this run "
                f"{config_hash}); use a new output folder or the same arguments"
            )


def _capture(cp: ConceptPlan, layer: Any, path: str, specs: Sequence[PairSpec], max_batch: int):
    from steerlab import tracing

    waves = [_wave(cp.concept, cp.model, s, role) for s in specs for role in ("without", "with")]
    acts = tracing.capture(cp.model, waves, [layer], max_batch=max_batch, path=path)
    frames = [a[layer.name].double().numpy().T for a in acts]
    return frames[0::2], frames[1::2]


def _learn(
    plans: list[ConceptPlan], cfg: PartialsConfig, dictionaries: dict, bar: BarFactory
) -> tuple[dict[str, np.ndarray], dict[str, dict], dict[str, str]]:
    from steerlab.battery.calibrated import calibration
    from steerlab.partials.directions import learn, vector_hash
    from steerlab.partials.runner import LEVEL, TEMPLATE
    from steerlab.partials.sweep import edit_span

    jobs = [
        (cp, layer, cpath)
        for cp in plans
        for layer in cp.plan.layers
        for cpath in dict.fromkeys(cp.plan.capture_path(layer, p) for p in cp.plan.paths_for(layer))
    ]
    vectors: dict[str, np.ndarray] = {}
    prov: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    with bar("directions", len(jobs)) as update:
        for cp, layer, cpath in jobs:
            without, with_ = _capture(cp, layer, cpath, cp.train, cfg.run.max_batch)
            span = edit_span("add", cp.train[0], layer).frames(layer, len(without[0]))
            unit = {"concept": cp.concept.name, "model": cp.model.name, "role": cp.role, "layer": layer.name}
            learned = learn(
                {**unit, "capture_path": cpath},
                without,
                with_,
                cp.plan.methods,
                cfg.run.seed,
                cfg.run.probe_frames,
                dictionaries.get((cp.model.name, layer.name)),
                [s.key() for s in cp.train],
                span,
            )
            for method, result in learned.items():
                did = direction_id(cp.concept.name, cp.model.name, layer.name, method, cpath)
                if isinstance(result, str):
                    skipped[did] = result
                    continue
                extra = dict(result.provenance)
                vectors[did] = result.vector
                vectors[did + TEMPLATE], vectors[did + LEVEL] = extra.pop("_template"), extra.pop("_level")
                cal = calibration(method, result.vector, without, with_, span, extra["layer_rms_norm_train"])
                vectors[did + CALIBRATION] = np.array([cal["value"]], dtype=np.float64)
                prov[did] = {
                    **extra,
                    "calibration": cal,
                    "unit": unit,
                    "method": method,
                    "capture_path": cpath,
                    "sha256_16": vector_hash(result.vector),
                }
            update(1)
    return vectors, prov, skipped


def _baselines(cp: ConceptPlan, items: Sequence[BatteryItem], max_batch: int) -> dict[tuple[str, str, str], tuple]:
    """Unpatched decode (and codes) of every signal the items use, per path, in plan order (so
    the batches, hence the rounding, never depend on what a resumed run still lacks)."""
    from steerlab import engine

    out: dict[tuple[str, str, str], tuple] = {}
    for path in cp.plan.paths:
        signals: dict[tuple[str, str], tuple[PairSpec, str]] = {}
        for it in items:
            if it.path == path:
                signals.setdefault((_key(it.pair), it.role), (it.pair, it.role))
        if not signals:
            continue
        n_q = items[0].n_q
        waves = [engine.PassItem(_wave(cp.concept, cp.model, s, r)) for s, r in signals.values()]
        for key, r in zip(signals, engine.run(cp.model, waves, path, n_q, max_batch)):
            out[(path, key[0], key[1])] = (r.output.numpy().astype(np.float64), r.traced.get(engine.CODES))
    return out


def _fit(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(a.shape[-1], b.shape[-1])
    return a[..., :n], b[..., :n]


@lru_cache(maxsize=1024)
def _key(spec: PairSpec) -> str:
    """``spec.key()`` (a hash of its JSON), once per spec: every row names its pair twice."""
    return spec.key()


def _row(
    cp: ConceptPlan,
    it: BatteryItem,
    patched: np.ndarray,
    codes: Any,
    info: dict,
    base: dict,
    prov: dict,
    context: dict,
    score: dict | None = None,
) -> dict:
    """One result row; ``score``: the concept's score of ``patched`` against its baseline when
    the caller has it (:func:`_scores`), else computed here."""
    from steerlab.loading import layers

    layer = layers(cp.model).get(it.layer)
    b, b_codes = base[(it.path, _key(it.pair), it.role)]
    s = score if score is not None else cp.concept.score(*_fit(b, patched), it.pair)
    changed = float((codes != b_codes).float().mean()) if codes is not None and b_codes is not None else None
    return {
        "key": it.key(),
        "config_hash": it.config_hash,
        "concept": it.concept,
        "model": it.model,
        "model_role": it.model_role,
        "weights_sha256": context["weights"][it.model],
        "layer": it.layer,
        "layer_side": layer.side,
        "layer_frame_rate_hz": layer.frame_rate,
        "variant": it.pair.variant,
        "seed": it.pair.seed,
        "pair_key": _key(it.pair),
        "pair": it.pair.to_dict(),
        "role": it.role,
        "method": it.method,
        "direction_id": it.direction_id,
        "direction_norm": prov.get("norm"),
        "op": it.op,
        "strength": it.strength,
        "strength_mode": info.get("strength_mode", "relative"),
        "value": info.get("value"),
        "layer_rms_norm": info.get("layer_rms_norm"),
        "projection_excess": info.get("projection_excess"),
        "path": it.path,
        "n_q": it.n_q,
        "target": s.get("target"),
        "damage": s.get("damage"),
        "scores": {k: v for k, v in s.items() if k not in ("target", "damage")},
        "codes_changed_share": changed,
        "run_seed": context["seed"],
    }


def patch_for(
    model: Any, it: BatteryItem, vectors: dict, saes: dict | None = None, provenance: dict | None = None
) -> Any:
    """The engine's patch of one item: partials' (:func:`steerlab.partials.sweep.patch_for`:
    ``add``, calibrated ``subtract``, ``ablate``, and ``sae_ablate`` with the SAE of ``saes`` (by
    layer) and the feature its direction's ``provenance`` names), for ``reverse`` the ``add`` of the negated
    direction (``strength`` x the item's RMS norm at the layer, on the sound's span), for
    ``add_calibrated`` and ``reverse_calibrated`` :func:`steerlab.battery.calibrated.patch`."""
    from steerlab import engine
    from steerlab.interventions import Direction, Strength
    from steerlab.loading import layers
    from steerlab.partials import sweep
    from steerlab.spec import InterventionSpec

    if it.op in CALIBRATED_OPS:
        from steerlab.battery.calibrated import patch

        return patch(model, it, vectors)
    if it.op != "reverse":  # duck-typed: the fields it reads
        return sweep.patch_for(model, cast(Any, it), vectors, saes, provenance)
    layer = layers(model).get(it.layer)
    spec = InterventionSpec(
        layer=it.layer,
        direction=Direction(-np.asarray(vectors[it.direction_id]), {"id": it.direction_id, "sign": -1}),
        intervention="add",
        strength=Strength(it.strength),
        span=sweep.edit_span("add", it.pair, layer),
        path=it.path,
    )
    return engine.Patch(engine.resolve(model, spec))


def _scores(cp: ConceptPlan, done: Sequence[tuple[BatteryItem, np.ndarray]], base: dict, memo: dict) -> list[dict]:
    """The concept's score of each patched decode against its item's baseline: through the
    concept's ``score_many`` where it has one (the built-in concepts: one batch of the patched
    signals, each baseline's features once per sweep, kept in ``memo``; the same values as
    ``score``), else ``score`` item by item; a decode with a NaN or infinite sample scores
    :data:`~steerlab.battery.concept.NON_FINITE` whatever the concept (no measure of it exists)."""
    from steerlab.battery.concept import NON_FINITE

    bad = {i for i, (_, p) in enumerate(done) if not np.isfinite(p).all()}
    if bad:
        scored = iter(_scores(cp, [d for i, d in enumerate(done) if i not in bad], base, memo))
        return [dict(NON_FINITE) if i in bad else next(scored) for i in range(len(done))]
    jobs = [
        ((it.path, _key(it.pair), it.role), *_fit(base[(it.path, _key(it.pair), it.role)][0], p), it.pair)
        for it, p in done
    ]
    many = getattr(cp.concept, "score_many", None)
    if many is None:
        return [cp.concept.score(b, p, spec) for _, b, p, spec in jobs]
    return list(many(jobs, memo))


@dataclass(frozen=True)
class BatchContext:
    """What every batch of one model's part of a concept needs (:func:`batch_rows`), sent once
    per run to an executor: the concept and the model by name (a Ray worker takes the concept
    from its registry and loads the model once, checked for the run's weights hash and library
    versions: :func:`_attached`), the plan without them, the directions of its items
    (``vectors``, ``provenance``), the unpatched decodes (``base``, :func:`_baselines`), the
    rows' ``context`` and ``max_batch``."""

    concept: str
    model: str
    weights_sha256: str
    versions: dict
    plan: ConceptPlan  # concept and model are None here: a worker attaches its own
    vectors: dict[str, np.ndarray]
    provenance: dict
    base: dict
    context: dict
    max_batch: int
    memo: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)
    saes: dict | None = None  # the sae method's SAEs by layer, for sae_ablate items


def _portable(cp: ConceptPlan) -> ConceptPlan:
    return ConceptPlan(cast(Any, None), dataclasses.replace(cp.plan, model=cast(Any, None)), cp.train, cp.test)


def _attached(ctx: BatchContext) -> ConceptPlan:
    """``ctx.plan`` with its concept and model: this process's (seeded by :func:`_execute`) or,
    in a Ray worker, the registry's concept and the model loaded once per process."""
    from steerlab import executors
    from steerlab.battery.registry import concepts
    from steerlab.partials.sweep import _load_checked

    concept = executors.cached(("battery-concept", ctx.concept), lambda: concepts().get(ctx.concept))
    model = executors.cached(
        ("partials-model", ctx.model, ctx.weights_sha256),
        lambda: _load_checked(ctx.model, ctx.weights_sha256, ctx.versions),
    )
    p = ctx.plan
    return ConceptPlan(concept, dataclasses.replace(p.plan, model=model), p.train, p.test)


def path_baselines(ctxs: dict[int, BatchContext], task: tuple[int, list[BatteryItem]]) -> dict:
    """The unpatched decodes of one plan's signals on one path (``task``: the plan's index and
    one item per signal, in plan order): :func:`_baselines`' own pass, so the same numbers
    wherever it runs."""
    i, items = task
    return _baselines(_attached(ctxs[i]), items, ctxs[i].max_batch)


def batch_rows(ctxs: dict[int, BatchContext], task: tuple[int, list[BatteryItem], frozenset[str]]) -> list[dict]:
    """The rows of one batch (``task``: the plan's index, the batch, the keys still missing a
    row): the batch's patched passes in one run of the engine, each missing item scored against
    its unpatched decode (:func:`_scores`, the baselines' features kept in ``ctx.memo``). A pure
    function of its arguments but for that cache, which changes no value: an executor may run it
    anywhere; the caller writes."""
    from steerlab import engine

    i, batch, missing = task
    ctx = ctxs[i]
    cp = _attached(ctx)
    passes = [
        engine.PassItem(
            _wave(cp.concept, cp.model, it.pair, it.role),
            patch_for(cp.model, it, ctx.vectors, ctx.saes, ctx.provenance),
        )
        for it in batch
    ]
    # the items of a batch share a layer and at most a few input waves: each wave runs once up
    # to the layer where the model allows it (rows equal an unshared pass's up to a float's last bits)
    results = engine.run(cp.model, passes, batch[0].path, batch[0].n_q, ctx.max_batch, share_inputs=True)
    fresh = [(it, r, r.output.numpy().astype(np.float64)) for it, r in zip(batch, results) if it.key() in missing]
    scores = _scores(cp, [(it, patched) for it, _, patched in fresh], ctx.base, ctx.memo)
    prov = ctx.provenance
    return [
        _row(cp, it, patched, r.traced.get(engine.CODES), r.info, ctx.base, prov[it.direction_id], ctx.context, s)
        for (it, r, patched), s in zip(fresh, scores)
    ]


def _execute(
    plan_items: list[tuple[ConceptPlan, list[BatteryItem]]],
    vectors: dict,
    prov: dict,
    store: BatteryStore,
    context: dict,
    max_batch: int,
    update: Callable[[int], None],
    executor: Any = None,
    dictionaries: dict | None = None,
) -> int:
    """Run every batch with a missing row of every plan on ``executor`` (None: in process) and
    write its rows as each batch completes, this process the one writer; returns the rows
    written. First the unpatched decodes each such plan's paths need (one task per plan and
    path: :func:`_baselines`' pass over that path's signals, as in process; under Ray on the
    workers, not here), then the batches (partials' batching, by ``batch_group``), one task each."""
    from steerlab import executors
    from steerlab.artifacts import versions
    from steerlab.partials.sweep import sae_ablate_saes

    ex = executor or executors.LocalExecutor()
    todo = [
        (i, batch, frozenset(it.key() for it in batch if not store.done(it.key())))
        for i, (_, items) in enumerate(plan_items)
        for batch in cast(list[list[BatteryItem]], batches(cast(Any, items), max_batch))
    ]
    todo = [t for t in todo if t[2]]
    if not todo:
        return 0
    ctxs: dict[int, BatchContext] = {}
    signals: list[tuple[int, list[BatteryItem]]] = []
    for i in dict.fromkeys(i for i, _, _ in todo):
        cp, items = plan_items[i]
        weights = context["weights"][cp.model.name]
        executors.seed(("partials-model", cp.model.name, weights), cp.model)  # in process: no second load
        executors.seed(("battery-concept", cp.concept.name), cp.concept)
        ids = {it.direction_id for it in items}
        ctxs[i] = BatchContext(
            cp.concept.name,
            cp.model.name,
            weights,
            versions(),
            _portable(cp),
            {k: v for k, v in vectors.items() if k.split("/")[0] in ids},
            {k: prov[k] for k in ids},
            {},
            context,
            max_batch,
            saes=sae_ablate_saes(cp.model.name, items, dictionaries),
        )
        for path in cp.plan.paths:  # one item per signal, in plan order: the pass _baselines makes of all items
            first: dict[tuple[str, str], BatteryItem] = {}
            for it in items:
                if it.path == path:
                    first.setdefault((_key(it.pair), it.role), it)
            if first:
                signals.append((i, list(first.values())))
    base: dict[int, dict] = {i: {} for i in ctxs}
    for k, decoded in ex.map(path_baselines, ctxs, signals):
        base[signals[k][0]].update(decoded)
    ctxs = {i: dataclasses.replace(c, base=base[i]) for i, c in ctxs.items()}
    written = 0
    for _, rows in ex.map(batch_rows, ctxs, todo):
        rows = [r for r in rows if not store.done(r["key"])]
        store.append(rows)
        written += len(rows)
        update(len(rows))
    store.sync()
    return written


def run_concept(
    concept: Concept,
    cfg: PartialsConfig,
    out_dir: str | Path,
    model: str | None = None,
    quick: bool = False,
    layers: Sequence[str] = (),
    dictionaries: Sequence[str | Path] = (),
    bar: BarFactory = _NullBar,
    notify: Callable[[str], None] = lambda s: None,
    device: Any = "auto",
    variant: str = "synthetic",
    executor: Any = None,
    control_cache: str | Path | None = None,
    prepared: tuple[list[ConceptPlan], str, dict[str, Any], dict[tuple[str, str], Any]] | None = None,
) -> ConceptOutcome:
    """Run (or resume) ``concept`` into ``out_dir`` (module docstring); ``dictionaries``: feature
    dictionaries of the measured model's layers (folders or shipped names) for the ``sae``
    method; the controls then learn their own (module docstring), so the ``sae`` verdicts are
    validated or not by their controls' ``sae`` rows; ``control_cache``: the folder whose
    ``control_dictionaries/`` holds them (None: ``out_dir``; the battery gives its own folder, so
    its concepts learn one per control model and layer). ``variant``: the
    stimulus variant (``synthetic``, or ``instrument`` where the concept renders it), recorded in
    ``run.json`` (``variants_run``) and hashed. ``executor``:
    where the work items run (a :class:`steerlab.executors.Executor`; None: in this process;
    docs/distributed.md); this process writes every row, so the rows and resuming do not depend
    on it. A distributed executor's workers run the models on the CPU: with one, ``device`` must
    resolve to the CPU (:class:`~steerlab.errors.ConfigError` otherwise, before anything is
    written). ``prepared``: what :func:`prepare` returned for these same arguments (the battery
    prepares every concept before it writes anything); None: prepared here."""
    from steerlab.executors import matching_threads

    check_executor_device(executor, device)
    with matching_threads(executor):  # every number of the run from one thread count (executors)
        return _run_concept(
            concept,
            cfg,
            out_dir,
            model,
            quick,
            layers,
            dictionaries,
            bar,
            notify,
            device,
            variant,
            executor,
            out_dir if control_cache is None else control_cache,
            prepared,
        )


def check_executor_device(executor: Any, device: Any) -> None:
    """Refuse a distributed executor with a device other than the CPU (its workers load the
    models on the CPU, as ``steerlab partials`` does): :class:`~steerlab.errors.ConfigError`."""
    from steerlab import devices
    from steerlab.errors import ConfigError

    if executor is not None and executor.name != "local" and devices.resolve(device).type != "cpu":
        raise ConfigError(
            f"the {executor.name} executor's workers run the models on the CPU, so the run's "
            f"device must be the CPU too (got {device!r}, which is {devices.resolve(device)}); use device 'cpu'",
            parameter=("device", "executor"),
        )


def _run_concept(
    concept: Concept,
    cfg: PartialsConfig,
    out_dir: str | Path,
    model: str | None,
    quick: bool,
    layers: Sequence[str],
    dictionaries: Sequence[str | Path],
    bar: BarFactory,
    notify: Callable[[str], None],
    device: Any,
    variant: str,
    executor: Any,
    control_cache: str | Path,
    prepared: tuple[list[ConceptPlan], str, dict[str, Any], dict[tuple[str, str], Any]] | None = None,
) -> ConceptOutcome:
    from steerlab import provenance
    from steerlab.artifacts import atomic_write_json, remove_stale_temporaries, versions
    from steerlab.partials.runner import LEVEL, TEMPLATE
    from steerlab.partials.store import read_directions

    started = time.time()
    if prepared is None:
        prepared = prepare(concept, cfg, model, quick, layers, dictionaries, device, variant)
    plans, chash, measured, dicts = prepared
    folder = Path(out_dir)
    _check_folder(folder, chash)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}; choose a writable folder") from None
    remove_stale_temporaries(folder)  # what a killed atomic write left (a resumed run)
    controls = controls_of(concept, cfg)
    weights = {p.model.name: p.model.weights_hash() for p in plans}
    if not (folder / RUN_FILE).is_file():
        atomic_write_json(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "config_hash": chash,
                "concept": {
                    "name": concept.name,
                    "description": concept.description,
                    "changes": list(concept.changes),
                    "variants_run": [variant],
                    "variants": list(concept.variants),
                },
                "rule": concept.rule.to_dict(),
                "controls": controls,
                "no_control_reason": no_control_reason(concept),
                "quick": quick,
                "measured": measured,
                "models": [
                    {
                        "role": p.role,
                        **p.model.describe(),
                        "layers": [layer.to_json() for layer in p.plan.layers],
                        "paths": p.plan.paths,
                        "margin_s": p.plan.margin_s,
                    }
                    for p in plans
                ],
                "weights_sha256": weights,
                "versions": versions(),
                "provenance": provenance.record(inputs=[], device=plans[0].plan.model),
            },
            folder / RUN_FILE,
        )
    store = BatteryStore(folder, chash)
    store.open()
    resumed = len(store.rows)
    if store.repaired:
        notify(f"cut a torn last line ({store.repaired} bytes) from {store.path}; its batch is recomputed")
    loaded = read_directions(folder / DIRECTIONS_FILE, chash, (TEMPLATE, LEVEL, CALIBRATION))
    if loaded is None or any("sae" in cp.plan.methods for cp in plans):  # sae_ablate's sweep needs them too
        dicts = {**dicts, **_control_dictionaries(plans, cfg, measured, folder, Path(control_cache), notify)}
    if loaded is None:
        vectors, prov, skipped = _learn(plans, cfg, dicts, bar)
        write_directions(folder / DIRECTIONS_FILE, FORMAT, chash, vectors, prov, skipped)
    else:
        vectors, prov, skipped = loaded
    _record_calibration(folder / RUN_FILE, prov)
    context = {"weights": weights, "seed": cfg.run.seed}
    plan_items = [(cp, work_items(cp, cfg, chash, set(prov))) for cp in plans]
    left = sum(1 for _, items in plan_items for it in items if not store.done(it.key()))
    label = f"{concept.name} sweep" + (f" ({resumed} rows from before)" if resumed else "")
    with bar(label, left) as update:
        written = _execute(plan_items, vectors, prov, store, context, cfg.run.max_batch, update, executor, dicts)
    keys = [it.key() for _, items in plan_items for it in items]
    if len(store.rows) != len(keys):
        raise SteerlabError(f"{store.path} holds {len(store.rows)} rows but this run has {len(keys)} items")
    atomic_write_json(
        provenance.record(
            inputs=[],
            device=plans[0].plan.model,
            started=started,
            rows_written=written,
            rows_resumed=resumed,
            **({"executor": executor.describe()} if executor is not None else {}),
        ),
        folder / "provenance.json",
    )
    return ConceptOutcome(
        folder, chash, concept, plans, [store.rows[k] for k in keys], written, resumed, prov, skipped, controls, dicts
    )


def _control_dictionaries(
    plans: list[ConceptPlan],
    cfg: PartialsConfig,
    measured: dict,
    folder: Path,
    cache: Path,
    notify: Callable[[str], None],
) -> dict[tuple[str, str], Any]:
    """The positive controls' own SAE dictionaries by ``(model, layer)`` when the run's hash names
    their recipe (:func:`prepare`), else none: learned or read back from ``cache`` by partials'
    :func:`~steerlab.partials.runner.control_dictionaries`, and recorded in the run ``folder``'s ``run.json``
    (``control_dictionaries``: hashes, SAE config, recipe; once, atomically) before any direction
    is learned from them."""
    from steerlab.artifacts import add_json_key
    from steerlab.partials.runner import control_dictionaries, describe_control_dictionaries

    if "control_dictionary" not in measured:
        return {}
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {cache}: {exc.strerror or exc}; choose a writable folder") from None
    dicts = control_dictionaries(cfg, [cp.plan for cp in plans], cache, notify)
    add_json_key(folder / RUN_FILE, "control_dictionaries", lambda: describe_control_dictionaries(dicts, cache, folder))
    return dicts


def _record_calibration(run_file: Path, prov: dict[str, dict]) -> None:
    """Add to ``run.json`` (once, atomically) each direction's calibration
    (:func:`steerlab.battery.calibrated.calibration`) by direction id, with its unit and method,
    and the calibrated grid: written when the directions are learned, after ``run.json`` itself."""
    from steerlab.artifacts import add_json_key

    add_json_key(
        run_file,
        "calibration",
        lambda: {
            "strengths": list(CALIBRATED_STRENGTHS),
            "ops": {op: {"signal": role, "sign": sign} for op, (role, sign) in CALIBRATED_OPS.items()},
            "unit": "the training pairs' mean projection difference along the unit direction, on the add's span",
            "directions": {
                did: {"unit": p["unit"], "method": p["method"], "capture_path": p["capture_path"], **p["calibration"]}
                for did, p in sorted(prov.items())
            },
        },
    )


EXAMPLES_DIR, EXAMPLES_FILE = "examples", "examples.json"


def _best(verdict_rows: Sequence[dict]) -> dict | None:
    """The measured model's best learned verdict: steerable first, then the pass share, then the
    median target when adding; the null never (it is heard beside the best, not as it)."""
    mine = [v for v in verdict_rows if v["model_role"] == MAIN and v["method"] != "random"]
    if not mine:
        return None

    def rank(v: dict) -> tuple:
        t = v.get("target_add_median")
        return (bool(v["steerable"]), v["pass_share"], t if t is not None and np.isfinite(t) else -np.inf)

    return max(mine, key=rank)


def save_examples(outcome: ConceptOutcome, table: dict[str, Any], max_batch: int = 4) -> dict[str, Any]:
    """Audio of one held-out pair for the report, written to ``examples/`` beside the rows (WAV,
    float32, the model's rate) and described in ``examples.json``: the pair itself (``without``
    and ``with``: the oracle, the ideal edit), the unpatched decode of each, and the patched
    decodes of the measured model's best verdict (:func:`_best`): adding at its best strength to
    the without-signal and its best removal on the with-signal, and the null's add on the same
    layer and path. The pair is the first held-out one on which the best setting passes both
    ways (else the first). Decoded again here (the directions read back from the folder), in
    batches of their own: the same numbers as the rows' decodes up to float rounding. Returns
    what ``examples.json`` holds (``examples`` empty, with the ``reason``, when the run has no
    learned verdict to play)."""
    from steerlab import engine
    from steerlab.artifacts import atomic_write_json, clean_json
    from steerlab.audio import write_wav
    from steerlab.battery.verdicts import ADD_OF, _removal_name
    from steerlab.partials.runner import LEVEL, TEMPLATE
    from steerlab.partials.store import read_directions
    from steerlab.partials.sweep import sae_ablate_saes

    best = _best(table["verdicts"])
    folder = outcome.folder / EXAMPLES_DIR
    loaded = read_directions(outcome.folder / DIRECTIONS_FILE, outcome.config_hash, (TEMPLATE, LEVEL, CALIBRATION))
    if best is None or best["best_add_strength"] is None or loaded is None:
        why = "no learned direction of the measured model has a verdict" if best is None else "no add setting"
        return {"concept": outcome.concept.name, "examples": [], "reason": why}
    vectors = loaded[0]
    cp = next(p for p in outcome.plans if p.role == MAIN)
    unit = ("model", "layer", "variant", "path")
    rows = [r for r in outcome.rows if all(r[k] == best[k] for k in unit)]
    rule = outcome.concept.rule
    add_op = ADD_OF.get(best["removal"], "add")

    def pick(method: str, op: str, seed: int) -> dict | None:
        return next(
            (
                r
                for r in rows
                if r["method"] == method
                and r["seed"] == seed
                and (
                    (op == "add" and r["op"] == add_op and r["strength"] == best["best_add_strength"])
                    or (op != "add" and r["op"] != add_op and _removal_name(r) == best["best_remove"])
                )
            ),
            None,
        )

    seeds = [s.seed for s in cp.test]
    passing = [
        s
        for s in seeds
        if (a := pick(best["method"], "add", s)) is not None
        and (r := pick(best["method"], "remove", s)) is not None
        and rule.passes(a, "with")
        and rule.passes(r, "without")
    ]
    seed = (passing or seeds)[0]
    chosen = {
        "add": pick(best["method"], "add", seed),
        "remove": pick(best["method"], "remove", seed),
        "null add": pick("random", "add", seed),
    }
    spec = next(s for s in cp.test if s.seed == seed)
    without, with_ = _pair(outcome.concept, spec)
    sr = cp.model.sample_rate
    n_q = rows[0].get("n_q")
    waves = {"without": without, "with": with_}
    bases = engine.run(
        cp.model,
        [engine.PassItem(_wave(outcome.concept, cp.model, spec, r)) for r in ("without", "with")],
        best["path"],
        n_q,
        max_batch,
    )
    waves["baseline without"], waves["baseline with"] = (b.output.numpy() for b in bases)
    described = {k: r for k, r in chosen.items() if r is not None}
    items = [BatteryItem.from_dict({**_item_fields(r), "config_hash": outcome.config_hash}) for r in described.values()]
    saes = sae_ablate_saes(cp.model.name, items, outcome.dictionaries)
    prov = outcome.directions
    passes = [
        engine.PassItem(_wave(cp.concept, cp.model, spec, it.role), patch_for(cp.model, it, vectors, saes, prov))
        for it in items
    ]
    patched = engine.run(cp.model, passes, best["path"], n_q, max_batch)
    for name, res in zip(described, patched):
        waves[f"patched {name}"] = res.output.numpy()
    folder.mkdir(exist_ok=True)
    out = []
    for name, w in waves.items():
        x = np.asarray(w, dtype=np.float32)
        x = x[None] if x.ndim == 1 else x
        file = f"{EXAMPLES_DIR}/{name.replace(' ', '_')}.wav"
        write_wav(outcome.folder / file, x, sr)
        row = described.get(name.removeprefix("patched "))
        out.append(
            {
                "name": name,
                "file": file,
                "sample_rate": sr,
                "seconds": x.shape[-1] / sr,
                "pair_key": spec.key(),
                "seed": seed,
                **(
                    {k: row[k] for k in ("key", "method", "op", "strength", "layer", "path", "target", "damage")}
                    if name.startswith("patched") and row is not None
                    else {}
                ),
            }
        )
    doc = {
        "concept": outcome.concept.name,
        "best": {k: best[k] for k in ("model", "layer", "variant", "method", "path", "removal", "label", "pass_share")},
        "best_add_strength": best["best_add_strength"],
        "best_remove": best["best_remove"],
        "seed": seed,
        "seed_passes": seed in passing,
        "examples": out,
    }
    atomic_write_json(clean_json(doc), outcome.folder / EXAMPLES_FILE)
    return doc


def _item_fields(row: dict) -> dict[str, Any]:
    """A row's work item's fields (every one of them is in the row)."""
    keys = ("concept", "model", "model_role", "layer", "pair", "role", "method", "direction_id", "op", "strength")
    return {**{k: row[k] for k in keys}, "path": row["path"], "n_q": row.get("n_q")}
