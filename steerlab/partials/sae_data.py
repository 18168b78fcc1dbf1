"""SAE dictionaries learned on the run's own stimuli (``grid.sae_data = "stimuli"``): its
training stimuli and further draws of the same units, never a held-out one.

Why: a sparse autoencoder learns the components that vary sparsely and independently in its
training data; components that always occur together are merged into one latent or absorbed
into each other (Chanin et al. 2024, "A is for Absorption", arXiv:2409.14507; Bricken et al.
2023, "Towards Monosemanticity": what a dictionary holds depends on its data). In the synthetic
music corpus (``synth:N``) a partial never occurs without its harmonics, so the dictionaries
learned on it hold harmonic complexes and no single partial, on the positive controls too
(docs/partials.md). The matched stimuli of the batch test are data in which the target partial
varies on its own: it is present in one signal of each pair and absent from the other, over
contexts that vary with the seed.

The recipe, the same for every model of the run (measured model and controls alike, so the
method the controls validate is the method applied to the measured model):

- data: per model and swept layer, the layer's frame vectors (every frame, margins included) of
  both signals of at least :func:`min_stimuli` ``= ceil(K ln K)`` distinct stimuli (``K`` =
  ``controls.dictionary_size`` latents): every *training* stimulus of every unit of the run at
  that layer (every family, target and density; ``ModelPlan.train``), then further stimuli of
  the same units drawn from the same generator with seeds from :data:`SEED_OFFSET` upwards
  (round robin over the units), never a held-out seed (``ModelPlan.test``); on the path the
  directions at that layer are learned on; a seeded subsample of about
  ``controls.dictionary_vectors`` frames (the same fraction of every clip);
- SAE: TopK, ``controls.dictionary_size`` latents, ``controls.dictionary_k`` active, lr 1e-3,
  batch 256, centred and normalised (``steerlab learn``'s defaults), seed = run seed,
  ``ceil(dictionary_steps * 256 / vectors)`` epochs;
- selection: unchanged (:func:`steerlab.partials.directions.sae_feature`).

Why ``ceil(K ln K)`` stimuli (issue 11, fixed before any control was run with it): a stimulus
is quasi-stationary, so its frames are one sample of the spectrum, not many; the recipe before
counted only the training stimuli (12 on ``--quick``, 24 clips for 128 latents), and the
dictionary memorised clips (the median live latent active in 2 of 24 clips). Dictionary learning
needs a number of independent samples that grows as ``K log K`` in the number of atoms ``K`` to
identify them (Spielman, Wang & Wright 2012, "Exact recovery of sparsely-used dictionaries",
COLT: ``O(n log n)`` samples; Arora, Ge & Moitra 2014, COLT; the coupon-collector bound for
seeing every atom), so the recipe draws that many distinct stimuli.

Dictionaries are cached in ``RUN/stimulus_dictionaries/MODEL__LAYER/`` with their recipe and the
keys of the stimuli they saw, and reused only when both are this run's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.artifacts import config_hash
from steerlab.errors import PlanError
from steerlab.partials.config import PartialsConfig
from steerlab.partials.plan import ModelPlan

FOLDER = "stimulus_dictionaries"
LR, BATCH = 1e-3, 256
#: the first seed of the stimuli drawn beyond the training seeds: far above any held-out seed
#: (``train_seeds + test_seeds`` must stay below it), and fixed, so more held-out seeds leave the
#: dictionary's data bitwise as it was
SEED_OFFSET = 2**20


def min_stimuli(size: int) -> int:
    """The distinct stimuli a dictionary of ``size`` latents is learned from: ``ceil(K ln K)``
    (at least 1; module docstring)."""
    return max(1, math.ceil(size * math.log(size)))


def uses_stimuli(cfg: PartialsConfig) -> bool:
    return cfg.grid.sae_data == "stimuli"


def recipe(cfg: PartialsConfig) -> dict[str, Any]:
    """The SAE settings every model's stimulus dictionary is learned with (one dict for all)."""
    c = cfg.controls
    return {
        "data": (
            "stimuli: both signals of every training stimulus of the run at the layer, then of further "
            "stimuli of the same units (seeds from extra_seeds_from) up to min_stimuli; held-out never"
        ),
        "min_stimuli": min_stimuli(c.dictionary_size),
        "min_stimuli_rule": "ceil(size * ln(size)) distinct stimuli (Spielman, Wang & Wright 2012)",
        "extra_seeds_from": SEED_OFFSET,
        "size": c.dictionary_size,
        "k": c.dictionary_k,
        "vectors": c.dictionary_vectors,
        "steps": c.dictionary_steps,
        "seed": cfg.run.seed,
        "architecture": "topk",
        "lr": LR,
        "batch_size": BATCH,
        "center": True,
        "normalize": True,
    }


def run_recipe(cfg: PartialsConfig, plans: list[ModelPlan]) -> dict[str, Any] | None:
    """The recipe when this run learns stimulus dictionaries (``sae_data = "stimuli"`` and some
    model runs ``sae``), else None."""
    if not uses_stimuli(cfg) or not any("sae" in p.methods for p in plans):
        return None
    return recipe(cfg)


def training_specs(plan: ModelPlan, layer_name: str) -> list[Any]:
    """The distinct training stimuli of every unit of ``plan`` at ``layer_name``, in plan order."""
    seen: dict[str, Any] = {}
    for unit, specs in plan.train.items():
        if unit.layer == layer_name:
            for spec in specs:
                seen.setdefault(spec.key(), spec)
    return list(seen.values())


def dictionary_specs(plan: ModelPlan, layer_name: str, count: int) -> list[Any]:
    """The stimuli a stimulus dictionary at ``layer_name`` is learned on: the distinct training
    stimuli (:func:`training_specs`), then further stimuli of the same units with seeds
    ``SEED_OFFSET, SEED_OFFSET + 1, ...`` (each unit's generator, its training stimulus with
    another seed; infeasible draws skipped), one unit after another, until there are ``count``.
    Raises :class:`PlanError` when a held-out seed could reach :data:`SEED_OFFSET`, or when the
    units give no feasible stimulus in ``count`` tries each."""
    from dataclasses import replace

    from steerlab.errors import Infeasible
    from steerlab.stimuli import partials

    specs = training_specs(plan, layer_name)
    held_out = [s.seed for unit, sp in plan.test.items() if unit.layer == layer_name for s in sp]
    if held_out and max(held_out) >= SEED_OFFSET:
        raise PlanError(f"held-out seeds reach {max(held_out)}; the dictionary's extra stimuli start at {SEED_OFFSET}")
    seen = {s.key() for s in specs}
    units = [sp[0] for unit, sp in plan.train.items() if unit.layer == layer_name and sp]
    seeds = [SEED_OFFSET] * len(units)
    tries = 0
    while len(specs) < count and units:
        for i, base in enumerate(units):
            if len(specs) >= count:
                break
            spec = replace(base, seed=seeds[i])
            seeds[i] += 1
            try:
                partials(spec)
            except Infeasible:
                continue
            if spec.key() not in seen:
                seen.add(spec.key())
                specs.append(spec)
        tries += 1
        if tries > count and len(specs) < count:
            raise PlanError(f"no {count} feasible stimuli for the dictionary at {layer_name}")
    return specs


def capture_path(plan: ModelPlan, layer: Any) -> str:
    """The path the directions at ``layer`` are learned on (the first, where there are several)."""
    return next(iter(dict.fromkeys(plan.capture_path(layer, p) for p in plan.paths_for(layer))))


def stimulus_frames(
    plan: ModelPlan, layer: Any, specs: list[Any], vectors: int, seed: int, max_batch: int
) -> tuple[np.ndarray, int]:
    """A seeded subsample ``[n, channels]`` (float32) of the frames of both signals of ``specs``
    at ``layer``, about ``vectors`` of them (the same fraction of every clip), and the number of
    frames it was drawn from. Captured a few stimuli at a time, so memory stays at the sample."""
    from steerlab.partials.directions import capture_pairs

    rng = np.random.default_rng([seed, 7919])
    path = capture_path(plan, layer)
    kept: list[np.ndarray] = []
    total, fraction = 0, None
    step = max(1, max_batch // 2)
    for i in range(0, len(specs), step):
        without, with_ = capture_pairs(plan.model, layer, specs[i : i + step], path, max_batch)
        for f in [x for pair in zip(without, with_) for x in pair]:
            if fraction is None:  # clips of a model share one length (duration and margins)
                fraction = min(1.0, vectors / (len(f) * 2 * len(specs)))
            n = max(1, int(round(fraction * len(f))))
            idx = np.sort(rng.choice(len(f), size=min(n, len(f)), replace=False))
            kept.append(f[idx].astype(np.float32))
            total += len(f)
    return np.concatenate(kept, 0), total


def fit(x: np.ndarray, r: dict[str, Any], device: Any = None) -> tuple[Any, dict[str, Any]]:
    """The recipe's SAE (``r``: :func:`recipe`) trained on frames ``x`` ``[n, width]``:
    TopK, ``r["size"]`` latents, ``r["k"]`` active, ``ceil(steps * batch / n)`` epochs; returns
    ``(SparseAutoencoder, metrics)`` (:func:`steerlab.sae.train_sae`); ``device``: where it trains."""
    from steerlab.sae import SAEConfig, train_sae

    config = SAEConfig(
        width=x.shape[1],
        size=r["size"],
        architecture="topk",
        k=r["k"],
        lr=LR,
        epochs=max(1, math.ceil(r["steps"] * BATCH / len(x))),
        batch_size=BATCH,
        seed=r["seed"],
        center=True,
        normalize=True,
    )
    return train_sae(x, config, device=device)


def learn(plan: ModelPlan, layer: Any, cfg: PartialsConfig) -> Any:
    """The stimulus dictionary of ``plan.model`` at ``layer`` (module docstring): data from
    :func:`dictionary_specs` (``min_stimuli`` of them), SAE from :func:`fit`; its
    ``data_manifest`` records the recipe, the stimuli's keys and the frame counts."""
    from steerlab import devices
    from steerlab.dictionary import Dictionary

    r = recipe(cfg)
    specs = dictionary_specs(plan, layer.name, r["min_stimuli"])
    x, total = stimulus_frames(plan, layer, specs, r["vectors"], r["seed"], cfg.run.max_batch)
    sae, metrics = fit(x, r, device=devices.of(plan.model))  # where the model runs
    epochs = sae.config.epochs
    keys = [s.key() for s in specs]
    return Dictionary(
        sae=sae,
        model=plan.model.name,
        layer=layer.name,
        target="feature",
        weights_hash=plan.model.weights_hash(),
        data_description=(
            f"features of {plan.model.name} {layer.name} over the training and further stimuli of a "
            f"steerlab partials run ({len(specs)} stimuli, both signals; "
            f"{len(x)} of {total} frames)"
        ),
        metrics=metrics,
        data_manifest={
            "stimulus_recipe": r,
            "stimuli": keys,
            "stimuli_digest": config_hash(keys),
            "frames_total": total,
            "frames_used": int(len(x)),
            "epochs": epochs,
            "capture_path": capture_path(plan, layer),
        },
    )


def dictionaries(
    cfg: PartialsConfig, plans: list[ModelPlan], folder: Path, notify: Callable[[str], None] = lambda s: None
) -> dict[tuple[str, str], Any]:
    """Learn (or load from ``folder/stimulus_dictionaries/MODEL__LAYER``) every model's
    stimulus dictionary at every swept layer where it runs ``sae``; ``(model, layer) -> Dictionary``.
    A cached one is used only if its recipe, stimuli, layer and weights are this run's."""
    from steerlab import dictionary as dictionary_io

    out: dict[tuple[str, str], Any] = {}
    for plan in plans:
        if "sae" not in plan.methods:
            continue
        for layer in plan.layers:
            where = folder / FOLDER / f"{plan.model.name}__{layer.name}"
            want = (
                layer.name,
                plan.model.weights_hash(),
                recipe(cfg),
                config_hash([s.key() for s in dictionary_specs(plan, layer.name, recipe(cfg)["min_stimuli"])]),
            )
            if (where / dictionary_io.CONFIG_FILE).is_file():
                d = dictionary_io.load(where)
                m = d.data_manifest or {}
                if (d.layer, d.weights_hash, m.get("stimulus_recipe"), m.get("stimuli_digest")) != want:
                    raise PlanError(f"{where} holds a stimulus dictionary of another recipe; use a new output folder")
            else:
                notify(
                    f"learning an SAE dictionary on the stimuli of {plan.model.name} {layer.name} (recipe: sae_data stimuli)"
                )
                d = learn(plan, layer, cfg)
                where.parent.mkdir(exist_ok=True)
                dictionary_io.save(d, where)
            out[(plan.model.name, layer.name)] = d
    return out


def describe(dicts: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """What run.json records of each stimulus dictionary: data hash, SAE config, frames, metrics."""
    out = {}
    for (model, layer), d in sorted(dicts.items()):
        m = d.data_manifest or {}
        out[f"{model}:{layer}"] = {
            "data_sha256": d.data_hash,
            "sae": d.config.to_dict(),
            "stimuli": len(m.get("stimuli", [])),
            "stimuli_digest": m.get("stimuli_digest"),
            "frames_used": m.get("frames_used"),
            "frames_total": m.get("frames_total"),
            "explained_variance": d.metrics.get("explained_variance"),
            "dead_fraction": d.metrics.get("dead_fraction"),
            "folder": f"{FOLDER}/{model}__{layer}",
        }
    return out
