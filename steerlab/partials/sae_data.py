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

The third recipe, ``grid.sae_data = "independent"`` (issue 11; pre-registered: written down,
with its reasons and its planted test, before any control was run with it; docs/partials.md).
Measured under ``"stimuli"``: the filterbank's partial feature still mixes in the *other*
target's bands (two targets, mutually exclusive, each present in half the data), and on the STFT
128 latents over 2,049 bins are undercomplete (explained variance 0.70): no partial feature. So:

- data: one clip per stimulus of :func:`dictionary_specs` (the same ``ceil(K ln K)`` distinct
  stimuli, training ones first, never a held-out one): the stimulus's *context* (its
  ``without`` signal, mixture and noise) plus every target of the layer's units (the distinct
  ``target_hz`` of the units at that layer), each present independently with probability
  :data:`P_PRESENT` = 0.1 (:func:`presence`, seeded by run seed and clip index), at the
  stimulus's amplitude, a random phase and the stimulus's fades and margins; the generator's
  peak rule (scaled down only above 0.9). The sparse-coding model a dictionary is identifiable
  under is exactly this: every atom used rarely and independently of the others (Olshausen &
  Field 1996, Nature 381; the Bernoulli(θ) coefficients of Spielman, Wang & Wright 2012, COLT,
  with θ small; features each present independently with probability ``1 - S`` in Elhage et al.
  2022, "Toy Models of Superposition"). In the matched stimuli a target is present in exactly
  half the clips and the two targets exclude each other, so "target A" and "not target B" are
  one and the same event, and the dictionary mixes them. ``p`` = 0.1: rare (an expected 0.2
  targets a clip against ``k`` = 8 active latents), yet at ``ceil(K ln K)`` clips every target
  is present in about 27 of them or more for ``K`` >= 64 (planted bands, docs/partials.md:
  independent presence at 10 % of the clips recovers the band, at 50 % it does not);
  targets are sinusoids, so the ``instrument`` family is refused (:class:`PlanError`);
- size: ``K`` = the layer's width (a complete dictionary, expansion factor 1, the smallest an
  SAE in the field's sense takes: SAELens' ``expansion_factor`` >= 1; Bricken et al. 2023), not
  ``controls.dictionary_size``: 128 latents over the STFT's 2,049 bins were undercomplete, and on
  planted bands 2 x width splits the target over several noisy features (feature splitting,
  Bricken et al. 2023: chosen cosine 0.64-0.99 over three seeds at 128 latents over 64 bands,
  0.950-0.997 at 64; docs/partials.md); ``ceil(K ln K)`` stimuli for that ``K`` (15,624 at 2,049
  latents), about ``controls.dictionary_vectors`` frames (the same fraction of every clip, at
  least one) and about ``controls.dictionary_steps`` steps, as before: the compute is bounded by
  the step budget, the same for every model;
- SAE and selection: as ``"stimuli"`` (:func:`fit`; :func:`steerlab.partials.directions.sae_feature`
  on the training pairs).

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
#: ``sae_data = "independent"``: the probability with which each target is present in a clip,
#: independently of the other targets and of the clip's context (module docstring)
P_PRESENT = 0.1
#: the first element of the presence generator's seed (so it is no other stream's)
PRESENCE_STREAM = 104_729


def min_stimuli(size: int) -> int:
    """The distinct stimuli a dictionary of ``size`` latents is learned from: ``ceil(K ln K)``
    (at least 1; module docstring)."""
    return max(1, math.ceil(size * math.log(size)))


def uses_stimuli(cfg: PartialsConfig) -> bool:
    """Whether every model learns its dictionaries on the run's stimuli (``"stimuli"`` or
    ``"independent"``)."""
    return cfg.grid.sae_data in ("stimuli", "independent")


def independent(cfg: PartialsConfig) -> bool:
    return cfg.grid.sae_data == "independent"


def size_for(cfg: PartialsConfig, width: int) -> int:
    """The dictionary's latents at a layer of ``width`` channels: ``controls.dictionary_size``,
    or under ``"independent"`` ``width`` (a complete dictionary; module docstring)."""
    return int(width) if independent(cfg) else cfg.controls.dictionary_size


def presence(n_clips: int, n_targets: int, p: float, seed: int) -> np.ndarray:
    """Which targets each clip holds: bool ``[n_clips, n_targets]``, every entry True
    independently with probability ``p`` (clip ``i`` drawn from ``default_rng([PRESENCE_STREAM,
    seed, i])``, so a clip's draw does not depend on how many clips there are)."""
    out = np.zeros((n_clips, n_targets), dtype=bool)
    for i in range(n_clips):
        out[i] = np.random.default_rng([PRESENCE_STREAM, seed, i]).random(n_targets) < p
    return out


def layer_recipe(cfg: PartialsConfig, width: int) -> dict[str, Any]:
    """:func:`recipe` with the size and stimulus count of a layer of ``width`` channels (the same
    dict as :func:`recipe` under ``"stimuli"``)."""
    r = recipe(cfg)
    if independent(cfg):
        size = size_for(cfg, width)
        r = {**r, "size": size, "min_stimuli": min_stimuli(size)}
    return r


def recipe(cfg: PartialsConfig) -> dict[str, Any]:
    """The SAE settings every model's stimulus dictionary is learned with (one dict for all;
    under ``"independent"`` size and stimulus count are rules of the layer's width, resolved by
    :func:`layer_recipe`)."""
    c = cfg.controls
    training = {  # the SAE's own settings, the same under both recipes
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
    if independent(cfg):
        return {
            "data": (
                "independent: one clip per stimulus (every training stimulus of the run at the layer, then "
                "further stimuli of the same units, seeds from extra_seeds_from; held-out never): the "
                "stimulus's context plus every target of the layer's units, each present independently "
                "with probability p"
            ),
            "p": P_PRESENT,
            "p_reason": "sparse coding: atoms used rarely and independently (Olshausen & Field 1996; "
            "Spielman, Wang & Wright 2012; Elhage et al. 2022)",
            "size": None,
            "size_rule": "the layer's width: a complete dictionary, expansion factor 1 (Bricken et al. 2023)",
            "min_stimuli": None,
            "min_stimuli_rule": "ceil(size * ln(size)) distinct stimuli (Spielman, Wang & Wright 2012)",
            "extra_seeds_from": SEED_OFFSET,
            **training,
        }
    return {
        "data": (
            "stimuli: both signals of every training stimulus of the run at the layer, then of further "
            "stimuli of the same units (seeds from extra_seeds_from) up to min_stimuli; held-out never"
        ),
        "min_stimuli": min_stimuli(c.dictionary_size),
        "min_stimuli_rule": "ceil(size * ln(size)) distinct stimuli (Spielman, Wang & Wright 2012)",
        "extra_seeds_from": SEED_OFFSET,
        "size": c.dictionary_size,
        **training,
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


def layer_targets(plan: ModelPlan, layer_name: str) -> list[float]:
    """The distinct targets (Hz, sorted) of the units of ``plan`` at ``layer_name``."""
    return sorted({unit.target_hz for unit in plan.train if unit.layer == layer_name})


def independent_clip(spec: Any, targets: list[float], present: np.ndarray, seed: int, index: int) -> np.ndarray:
    """One clip of the ``"independent"`` data: float32 ``[samples]`` (margins included), the
    context of ``spec`` (mixture and noise, unscaled) plus ``spec.amplitude * sin(2 pi f t + phi)``
    for every target ``f`` with ``present`` True (phases from ``default_rng([PRESENCE_STREAM + 1,
    seed, index])``), faded as the stimulus, scaled down only where the peak exceeds the
    generator's (:data:`steerlab.stimuli.PEAK`). Raises :class:`PlanError` for ``instrument``."""
    from steerlab.stimuli import _PEAK_SAFE, fade, render_parts

    if spec.family == "instrument":
        raise PlanError("sae_data 'independent' adds sinusoidal targets; it does not support the instrument family")
    r = render_parts(spec)
    sr = spec.sample_rate
    n = int(round(spec.duration_s * sr))
    m = int(round(spec.margin_s * sr))
    t = np.arange(n) / sr
    env = fade(n, sr, spec.fade_ms)
    phases = np.random.default_rng([PRESENCE_STREAM + 1, seed, index]).uniform(0, 2 * np.pi, len(targets))
    added = np.zeros(n)
    for f, on, ph in zip(targets, present, phases):
        if on:
            added += spec.amplitude * np.sin(2 * np.pi * f * t + ph)
    clip = r.mixture + r.noise + np.pad(added * env, (m, m))
    peak = float(np.max(np.abs(clip)))
    scale = 1.0 if peak <= _PEAK_SAFE else _PEAK_SAFE / peak
    return (scale * clip).astype(np.float32)


def independent_frames(
    plan: ModelPlan, layer: Any, specs: list[Any], r: dict[str, Any], max_batch: int
) -> tuple[np.ndarray, int, dict[str, int]]:
    """The ``"independent"`` data at ``layer``: a seeded subsample ``[n, channels]`` (float32) of
    the frames of one clip per spec (:func:`independent_clip`), about ``r["vectors"]`` of them
    (the same fraction of every clip, at least one), the number of frames drawn from, and how
    many clips hold each target (``{"300": count}``)."""
    import torch

    from steerlab import tracing

    targets = layer_targets(plan, layer.name)
    present = presence(len(specs), len(targets), r["p"], r["seed"])
    rng = np.random.default_rng([r["seed"], 7919])
    path = capture_path(plan, layer)
    kept: list[np.ndarray] = []
    total, fraction = 0, None
    step = max(1, max_batch)
    for i in range(0, len(specs), step):
        waves = [
            torch.from_numpy(independent_clip(spec, targets, present[j], r["seed"], j))[None].repeat(
                plan.model.channels, 1
            )
            for j, spec in enumerate(specs[i : i + step], start=i)
        ]
        acts = tracing.capture(plan.model, waves, [layer], max_batch=max_batch, path=path)
        for a in acts:
            f = a[layer.name].double().numpy().T
            if fraction is None:  # clips of a model share one length (duration and margins)
                fraction = min(1.0, r["vectors"] / (len(f) * len(specs)))
            k = max(1, int(round(fraction * len(f))))
            idx = np.sort(rng.choice(len(f), size=min(k, len(f)), replace=False))
            kept.append(f[idx].astype(np.float32))
            total += len(f)
    counts = {f"{t:g}": int(c) for t, c in zip(targets, present.sum(0))}
    return np.concatenate(kept, 0), total, counts


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

    r = layer_recipe(cfg, layer.channels)
    specs = dictionary_specs(plan, layer.name, r["min_stimuli"])
    extra: dict[str, Any] = {}
    if independent(cfg):
        x, total, counts = independent_frames(plan, layer, specs, r, cfg.run.max_batch)
        extra = {"targets_present": counts}
    else:
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
            f"steerlab partials run ({len(specs)} stimuli, "
            f"{'one clip each, targets present independently' if independent(cfg) else 'both signals'}; "
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
            **extra,
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
            r = layer_recipe(cfg, layer.channels)
            want = (
                layer.name,
                plan.model.weights_hash(),
                r,
                config_hash([s.key() for s in dictionary_specs(plan, layer.name, r["min_stimuli"])]),
            )
            if (where / dictionary_io.CONFIG_FILE).is_file():
                d = dictionary_io.load(where)
                m = d.data_manifest or {}
                if (d.layer, d.weights_hash, m.get("stimulus_recipe"), m.get("stimuli_digest")) != want:
                    raise PlanError(f"{where} holds a stimulus dictionary of another recipe; use a new output folder")
            else:
                notify(
                    f"learning an SAE dictionary on the stimuli of {plan.model.name} {layer.name} "
                    f"(recipe: sae_data {cfg.grid.sae_data})"
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
            **({"targets_present": m["targets_present"]} if "targets_present" in m else {}),
            "dead_fraction": d.metrics.get("dead_fraction"),
            "folder": f"{FOLDER}/{model}__{layer}",
        }
    return out
