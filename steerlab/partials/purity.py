"""What a removal verdict demands of a direction, and what an SAE dictionary gives (issue 11).

The batch test's removal rule (loss at least 6 dB, concentration at least 0.5, off-band distance at
most 1 dB) is met on the positive controls by the difference of means, whose matched pairs give the
partial's exact signature at the layer, and by no SAE feature under any recipe tried. This module
measures why, in two tables that do not depend on any verdict:

- :func:`removal_tolerance`: ablation along the partial's own signature at the layer (the unit
  with-minus-without mean of one stimulus's frames) tilted by a residual of relative size ``eps``
  orthogonal to it (``cos = 1 / sqrt(1 + eps^2)``), scored as the batch test scores an item
  (:func:`steerlab.partials.sweep.score_output`): how far a direction may stray before the
  off-band rule fails;
- :func:`sae_alignment`: the cosine, with the training pairs' difference of means, of the feature
  the ``sae`` method chooses (:func:`steerlab.partials.directions.sae_feature`) from dictionaries of
  the run's recipe (``grid.sae_data``) trained with other seeds and step budgets on the same data.

    python -m steerlab.partials.purity removal --towards diffmeans,sae
    python -m steerlab.partials.purity removal --model stft_24khz
    python -m steerlab.partials.purity sae --seeds 0,1,2 --steps 3000,12000,30000,100000

(docs/partials.md, "What removal demands of a direction, and why no SAE recipe meets it").

Each prints a Markdown table and a JSON record (command line, versions, hardware and threads,
weights and data hashes, configuration hash) on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from steerlab.partials.config import PartialsConfig

RESIDUALS = ("uniform", "gaussian")
EPS = (0.0, 0.01, 0.03, 0.1, 0.2)
SCORING = {"band_hz": 50.0, "floor_db": -120.0, "guard_hz": 100.0, "n_fft": 4096, "range_db": 60.0}


def control_plan(cfg: PartialsConfig, name: str) -> Any:
    """The plan ``steerlab partials`` makes for positive control ``name`` under ``cfg``
    (:func:`steerlab.partials.plan.plan_model` with the control's layer, targets and densities)."""
    from steerlab import api
    from steerlab.partials.plan import POSITIVE, control_layer, control_targets, plan_model

    model = api.load_model(name)
    densities = cfg.controls.positive_densities or cfg.grid.densities
    return plan_model(cfg, model, POSITIVE, [control_layer(cfg, model)], control_targets(cfg, model), densities)


def signature(model: Any, layer: Any, spec: Any, path: str) -> np.ndarray:
    """The partial's signature at ``layer``: the unit mean over frames of with- minus without-target
    frame vectors of one stimulus ``[channels]`` (float64). Raises DirectionError if they are equal."""
    from steerlab.partials.directions import capture_pairs

    without, with_ = capture_pairs(model, layer, [spec], path, 2)
    d = (with_[0] - without[0]).mean(0)
    norm = float(np.linalg.norm(d))
    if norm == 0:
        from steerlab.errors import DirectionError

        raise DirectionError(f"the stimulus {spec.key()} leaves {layer.name} unchanged: it has no signature there")
    return d / norm


def residual(d: np.ndarray, shape: str, seed: int = 0) -> np.ndarray:
    """A unit vector orthogonal to unit ``d`` ``[channels]``: ``"uniform"`` (every channel alike)
    or ``"gaussian"`` (standard normal draws, ``seed``), with its component along ``d`` removed.
    Raises ConfigError for another ``shape``."""
    from steerlab import validation as check

    check.choice("residual", shape, RESIDUALS)
    r = np.ones_like(d) if shape == "uniform" else np.random.default_rng(seed).standard_normal(len(d))
    r = r - (r @ d) * d
    return r / np.linalg.norm(r)


def tilted(d: np.ndarray, r: np.ndarray, eps: float) -> np.ndarray:
    """``(d + eps r) / |d + eps r|`` for orthonormal ``d``, ``r``: cosine ``1 / sqrt(1 + eps^2)``."""
    v = d + eps * r
    return v / np.linalg.norm(v)


def ablation_scores(model: Any, layer: Any, spec: Any, direction: np.ndarray, path: str) -> dict[str, Any]:
    """Loss (dB), concentration and off-band distance (dB) of projecting unit ``direction`` out of
    every frame of the with-target signal at ``layer`` (the batch test's ``ablate``), against the
    unpatched decode, scored at ``spec.target_hz`` with the batch test's scoring (:data:`SCORING`)."""
    from steerlab import engine
    from steerlab.interventions import Direction, Span, Strength
    from steerlab.partials import sweep
    from steerlab.spec import InterventionSpec

    wave = sweep._wave(model, spec, "with")
    spec_i = InterventionSpec(
        layer=layer.name,
        direction=Direction(direction, {"source": "purity"}),
        intervention="ablate",
        strength=Strength(0.0),
        span=Span(),
        path=path,
    )
    base, patched = engine.run(
        model,
        [engine.PassItem(wave), engine.PassItem(wave, engine.Patch(engine.resolve(model, spec_i)))],
        path,
        None,
        2,
    )
    as64 = lambda r: r.output.numpy().astype(np.float64)  # noqa: E731
    s = sweep.score_output(model, as64(base), as64(patched), spec.target_hz, SCORING)
    return {"loss_db": -s["gain_db"], "concentration": s["concentration"], "offband_db": s["offband_db"]}


def removal_tolerance(
    plan: Any,
    eps: Sequence[float] = EPS,
    shapes: Sequence[str] = RESIDUALS,
    per_unit: int = 1,
    towards: Mapping[str, Mapping[Any, np.ndarray]] | None = None,
) -> list[dict[str, Any]]:
    """One row per held-out stimulus (the first ``per_unit`` of each unit of ``plan``), residual
    and ``eps``: the unit, seed, residual, eps, cosine with the signature, ``itself`` and
    :func:`ablation_scores`. Residuals: each of ``shapes`` (:func:`residual`), and for each
    ``name -> {unit: vector}`` of ``towards`` (a learned direction per unit, ``[channels]``) the
    part of that vector orthogonal to the signature, at every ``eps`` and once more at the
    vector's own tilt (``itself`` True: the vector's direction exactly, eps = its orthogonal part
    over its part along the signature; skipped if that part is not positive)."""
    model, layer = plan.model, plan.layers[0]
    path = model.default_path
    rows = []

    def row(unit: Any, spec: Any, name: str, e: float, itself: bool, v: np.ndarray) -> dict[str, Any]:
        return {"unit": unit.label(), "target_hz": unit.target_hz, "density": unit.density, "seed": spec.seed,
                "residual": name, "eps": e, "cosine": 1 / float(np.sqrt(1 + e * e)), "itself": itself,
                **ablation_scores(model, layer, spec, v, path)}  # fmt: skip

    for unit, specs in plan.test.items():
        for spec in specs[:per_unit]:
            d = signature(model, layer, spec, path)
            tilts: list[tuple[str, np.ndarray, float | None]] = [(shape, residual(d, shape), None) for shape in shapes]
            for name, vectors in (towards or {}).items():
                u = vectors[unit] / np.linalg.norm(vectors[unit])
                along, r = float(u @ d), u - float(u @ d) * d
                tilts.append((name, r / np.linalg.norm(r), float(np.linalg.norm(r)) / along if along > 0 else None))
            for name, r, own in tilts:
                rows += [row(unit, spec, name, e, False, tilted(d, r, e)) for e in eps]
                if own is not None:
                    rows.append(row(unit, spec, name, own, True, tilted(d, r, own)))
    return rows


def training_pairs(plan: Any, max_batch: int) -> dict[Any, tuple[list[np.ndarray], list[np.ndarray], np.ndarray]]:
    """Per unit of ``plan`` (its layer): the training stimuli's without and with frames (``[frames,
    channels]`` each, :func:`steerlab.partials.directions.capture_pairs`, on the path directions
    are learned on) and their difference of means ``[channels]``."""
    from steerlab.partials import sae_data
    from steerlab.partials.directions import capture_pairs, diff_of_means

    layer = plan.layers[0]
    out = {}
    for unit, train in plan.train.items():
        without, with_ = capture_pairs(plan.model, layer, train, sae_data.capture_path(plan, layer), max_batch)
        out[unit] = (without, with_, diff_of_means(without, with_))
    return out


def recipe_frames(cfg: PartialsConfig, plan: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The frames ``[n, channels]`` (float32) the ``sae`` method's dictionary at ``plan``'s layer is
    trained on under ``cfg``'s recipe (:mod:`steerlab.partials.sae_data`), and the recipe. Raises
    PlanError unless ``grid.sae_data`` is ``"stimuli"`` or ``"independent"``."""
    from steerlab.errors import PlanError
    from steerlab.partials import sae_data

    if not sae_data.uses_stimuli(cfg):
        raise PlanError("the SAE tables need grid.sae_data 'stimuli' or 'independent' (the recipe they retrain)")
    layer = plan.layers[0]
    r = sae_data.layer_recipe(cfg, layer.channels)
    specs = sae_data.dictionary_specs(plan, layer.name, r["min_stimuli"])
    if sae_data.independent(cfg):
        x, _, _ = sae_data.independent_frames(plan, layer, specs, r, cfg.run.max_batch)
    else:
        x, _ = sae_data.stimulus_frames(plan, layer, specs, r["vectors"], r["seed"], cfg.run.max_batch)
    return x, r


def chosen_rows(sae: Any, layer: str, pairs: Mapping[Any, tuple]) -> dict[Any, tuple[np.ndarray, dict[str, Any]]]:
    """Per unit: the ``sae`` method's direction from ``sae`` (:func:`steerlab.partials.directions.sae_feature`
    on the unit's training ``pairs``: its chosen feature's unit decoder row ``[channels]``) and its
    provenance."""
    from steerlab.partials.directions import sae_feature

    dictionary = _AsDictionary(sae, layer)
    return {unit: sae_feature(without, with_, dictionary) for unit, (without, with_, _) in pairs.items()}


def recipe_saes(
    x: np.ndarray, r: dict[str, Any], steps: Sequence[int], seeds: Sequence[int]
) -> Iterator[tuple[int, int, Any, dict[str, Any]]]:
    """``(steps, seed, sae, metrics)`` for each step budget and SAE seed: the recipe ``r``'s SAE
    (:func:`steerlab.partials.sae_data.fit`) trained on frames ``x`` ``[n, channels]`` with only
    its ``steps`` and ``seed`` changed."""
    from steerlab.partials import sae_data

    for n in steps:
        for seed in seeds:
            sae, metrics = sae_data.fit(x, {**r, "steps": int(n), "seed": int(seed)})
            yield int(n), int(seed), sae, metrics


def sae_alignment(
    cfg: PartialsConfig, plan: Any, steps: Sequence[int], seeds: Sequence[int]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """For each step budget and SAE seed: the dictionary of ``cfg``'s recipe
    (:func:`recipe_frames`; size and settings as the recipe's, only ``steps`` and ``seed``
    changed) at ``plan``'s layer, and per unit the chosen feature, its decoder row's cosine with
    the training pairs' difference of means and the dictionary's best-aligned cosine. Returns the
    rows and ``{"data_sha256", "frames", "base_recipe", "steps", "seeds"}`` (the recipe as ``cfg``
    has it; its ``steps`` and ``seed`` replaced by each of ``steps`` and ``seeds``). Raises PlanError unless ``cfg`` uses a
    stimulus recipe (``grid.sae_data`` ``"stimuli"`` or ``"independent"``)."""
    x, r = recipe_frames(cfg, plan)
    pairs = training_pairs(plan, cfg.run.max_batch)
    rows, data_sha256 = [], ""
    for n, seed, sae, metrics in recipe_saes(x, r, steps, seeds):
        data_sha256 = sae.stats.sha256  # the training's own hash of its data (steerlab.sae): every SAE's x
        for unit, (vec, prov) in chosen_rows(sae, plan.layers[0].name, pairs).items():
            dm = pairs[unit][2]
            rows.append(
                    {"unit": unit.label(), "target_hz": unit.target_hz, "density": unit.density, "steps": n,
                     "seed": seed, "explained_variance": metrics.get("explained_variance"),
                     "feature": prov["feature"],
                     "cosine": float(abs(vec @ dm) / (np.linalg.norm(vec) * np.linalg.norm(dm))),
                     "best_aligned_cosine": prov["best_aligned_cosine"]}
                )  # fmt: skip
    data = {"data_sha256": data_sha256, "frames": len(x), "base_recipe": r}
    return rows, {**data, "steps": [int(n) for n in steps], "seeds": [int(v) for v in seeds]}


class _AsDictionary:
    """The three attributes :func:`sae_feature` reads of a :class:`steerlab.dictionary.Dictionary`."""

    def __init__(self, sae: Any, layer: str) -> None:
        self.sae, self.layer, self.data_hash = sae, layer, None
        self.directions = sae.directions


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as a Markdown table of ``columns`` (floats to 4 significant digits)."""
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] = ()) -> None:
    """``removal`` or ``sae`` (module docstring) on positive control ``--model`` (one of
    :data:`steerlab.partials.config.KNOWN_CONTROLS`) under the quick grid (the docs' runs).
    ``removal --towards diffmeans,sae`` adds the residuals of the training pairs' difference of
    means and of the recipe's SAE feature (its dictionary retrained: the recipe's seed and steps);
    ``sae --steps N,... --seeds S,...`` the budgets and seeds. Bad arguments: one line on stderr,
    exit 2 (argparse) or 1."""
    import time

    import torch

    from steerlab import partials, provenance
    from steerlab.artifacts import config_hash
    from steerlab.errors import SteerlabError
    from steerlab.partials.config import KNOWN_CONTROLS

    started = time.time()
    p = argparse.ArgumentParser(prog="python -m steerlab.partials.purity")
    p.add_argument("table", choices=("removal", "sae"))
    p.add_argument("--model", default="filterbank_24khz", choices=KNOWN_CONTROLS, help="a positive-control model")
    p.add_argument("--towards", help="removal: comma-separated diffmeans, sae (default: diffmeans)")
    p.add_argument("--steps", help="sae: comma-separated step budgets >= 1 (default: 3000)")
    p.add_argument("--seeds", help="sae: comma-separated SAE seeds >= 0 (default: 0)")
    p.add_argument("--sae-data", default="independent", choices=("stimuli", "independent"))
    a = p.parse_args(list(argv))
    for flag, value, table_ in (
        ("--towards", a.towards, "sae"),
        ("--steps", a.steps, "removal"),
        ("--seeds", a.seeds, "removal"),
    ):
        if value is not None and a.table == table_:
            p.error(f"{flag} does not apply to the {table_} table")
    steps = _ints(p, "--steps", "3000" if a.steps is None else a.steps, low=1)
    seeds = _ints(p, "--seeds", "0" if a.seeds is None else a.seeds, low=0)
    towards = [t for t in ("diffmeans" if a.towards is None else a.towards).split(",") if t]
    if not towards or set(towards) - {"diffmeans", "sae"}:
        p.error(f"--towards takes diffmeans and/or sae, got {a.towards!r}")
    try:
        cfg = partials.build(quick=True, overrides={"grid": {"sae_data": a.sae_data}})
        plan = control_plan(cfg, a.model)
        extra: dict[str, Any] = {}
        if a.table == "removal":
            rows = removal_tolerance(plan, towards=_towards(cfg, plan, towards, extra))
            cols = ["unit", "seed", "residual", "eps", "itself", "cosine", "loss_db", "concentration", "offband_db"]
        else:
            rows, extra = sae_alignment(cfg, plan, steps, seeds)
            cols = ["unit", "steps", "seed", "explained_variance", "feature", "cosine", "best_aligned_cosine"]
    except SteerlabError as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(table(rows, cols))
    record = provenance.record(
        started=started,
        argv=["python", "-m", "steerlab.partials.purity", *argv],
        config_hash=config_hash(cfg.measurement_dict()),
        model=a.model,
        weights_sha256=plan.model.weights_hash(),
        torch_threads=torch.get_num_threads(),
        **extra,
    )
    print(json.dumps(record, default=str))


def _ints(p: argparse.ArgumentParser, name: str, text: str, low: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        p.error(f"{name} takes comma-separated integers, got {text!r}")
    if min(values) < low:
        p.error(f"{name} takes integers >= {low}, got {text!r}")
    return values


def _towards(cfg: PartialsConfig, plan: Any, names: Sequence[str], extra: dict[str, Any]) -> dict[str, dict]:
    """The learned directions per unit that ``removal --towards`` names; the SAE's data hash into ``extra``."""
    pairs = training_pairs(plan, cfg.run.max_batch)
    out: dict[str, dict] = {}
    if "diffmeans" in names:
        out["diffmeans"] = {unit: dm for unit, (_, _, dm) in pairs.items()}
    if "sae" in names:
        x, r = recipe_frames(cfg, plan)
        ((_, _, sae, _),) = recipe_saes(x, r, [r["steps"]], [r["seed"]])
        out["sae"] = {unit: vec for unit, (vec, _) in chosen_rows(sae, plan.layers[0].name, pairs).items()}
        extra["sae_data_sha256"] = sae.stats.sha256  # the training's own hash of its data
        extra["sae_recipe"] = r
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
