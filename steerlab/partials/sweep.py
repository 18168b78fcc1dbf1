"""Executing work items: batched patched passes, scores, rows (SCIENCE.md steps 3 and 4).

Each batch of :func:`steerlab.partials.plan.batches` (items of one model, path and
layer) is one run of the engine (:func:`steerlab.engine.run`): every item is patched on
its own row with its own edit, so several (stimulus, strength, direction) items share one
forward pass.
The patched decode is scored against the unpatched decode of the same signal on
the same path (:func:`steerlab.scoring.score`); on the quantized path the share of
quantizer codes that changed is recorded too.

Edits use the registered intervention types: ``add`` with ``+v``, ``v = strength * RMS
norm of the item's own activation at the layer``; subtraction, ``add`` with ``-v``,
``v = strength * c`` where ``c`` is the item's measured projection excess along the
direction (:func:`projection_excess`: strength 1 removes what is there, whatever the
layer's norm or the density); and ``ablate`` (project the direction out). The ``sae``
method also gets ``sae_ablate``, removal in the SAE's code space (:func:`sae_code_ablation`).
Where in time, see :func:`edit_span`.
Padding frames of the batch get weight 0.

:func:`batch_rows` (one batch's rows, a pure function of a :class:`BatchContext` and the batch)
is what an executor (:mod:`steerlab.executors`: in process, or Ray tasks) runs; :func:`execute`
computes the baselines, maps it over the batches still missing rows, and writes every row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.partials.plan import ModelPlan, WorkItem, batches

ProgressFn = Callable[[int], None]


@lru_cache(maxsize=256)
def _pair(spec: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rendering is a pure function of the spec; one pair serves its many items."""
    from steerlab.stimuli import render

    return render(spec)


def _wave(model: Any, spec: Any, role: str):
    import torch

    without, with_ = _pair(spec)
    return torch.from_numpy(without if role == "without" else with_)[None].repeat(model.channels, 1)


def baselines(
    plan: ModelPlan, items: Sequence[WorkItem], max_batch: int, n_q: int | None
) -> dict[tuple[str, str, str], tuple[np.ndarray, Any]]:
    """Unpatched decode (and codes) of every signal ``items`` use, per path, keyed by
    (path, stimulus key, role). Computed for all items of the plan in plan order, so the
    batches (and hence the float rounding) never depend on what a resumed run still lacks."""
    from steerlab import engine

    model = plan.model
    out: dict[tuple[str, str, str], tuple[np.ndarray, Any]] = {}
    for path in plan.paths:
        signals: dict[tuple[str, str], tuple[Any, str]] = {}
        for it in items:
            if it.path == path:
                signals.setdefault((it.stimulus.key(), it.role), (it.stimulus, it.role))
        if not signals:
            continue
        results = engine.run(
            model, [engine.PassItem(_wave(model, spec, role)) for spec, role in signals.values()], path, n_q, max_batch
        )
        for (stimulus_key, role), r in zip(signals, results):
            out[(path, stimulus_key, role)] = (r.output.numpy().astype(np.float64), r.traced.get(engine.CODES))
    return out


def outputs(model: Any, specs: Sequence[Any], max_batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The model's unpatched outputs (its default path) of the without- and with-target signals
    of each spec: ``[(without, with)]``, each ``[...output shape]`` float64 (a salience
    ``[bins, frames]`` for a pitch model). The oracle of a model whose output is not a sound."""
    from steerlab import engine

    items = [engine.PassItem(_wave(model, spec, role)) for spec in specs for role in ("without", "with")]
    res = engine.run(model, items, model.default_path, None, max_batch)
    outs = [r.output.numpy().astype(np.float64) for r in res]
    return [(outs[2 * i], outs[2 * i + 1]) for i in range(len(specs))]


def edit_span(op: str, spec: Any, layer: Any):
    """Where an edit acts. Adding and subtracting act on the sound's own span (the margins
    excluded), with fades as long as the stimulus's, so an added partial has the envelope
    of the ideal edit instead of starting and stopping at the clip's edges; ablation, which
    only removes what is there, acts on every frame, the layer's response in the margins
    included."""
    from steerlab.interventions import Span

    if op in ("ablate", "sae_ablate"):
        return Span()
    fade = int(round(spec.fade_ms / 1000 * layer.frame_rate))
    return Span(spec.margin_s, spec.margin_s + spec.duration_s, fade, fade)


def projection_excess(act, unit_dir, template, level) -> float:
    """How much of the partial an item holds along the direction, in units of the partial
    measured on the training pairs: the least-squares amplitude ``c`` of the template ``T_t``
    in ``p_t - b_t``, ``c = sum_t T_t (p_t - b_t) / sum_t T_t^2``, where ``p_t = a_t . u`` is the
    item's projection at frame ``t`` on the unit direction, ``T_t`` the mean with-minus-without
    projection of the training pairs and ``b_t`` their mean without-target projection
    (:func:`steerlab.partials.directions.template`). ``act``: ``[channels, frames]``;
    ``unit_dir``: ``[channels]``; ``template``, ``level``: ``[frames]`` tensors (cut or
    zero-padded to the item). Subtracting ``c * T_t * u`` removes, in the least-squares sense,
    what the item holds beyond the without-target level, with the partial's own time course at
    the layer (its response outlasts the sound and rises and falls with the layer's filters): so
    strength 1 is the measured amount on every layer and at every density, where a multiple of
    the layer's RMS norm is not (the norm grows with the number of partials; issue 11). 0 when
    the template is zero."""
    n = act.shape[-1]
    t = _fit(template.double(), n)
    den = float((t * t).sum())
    if den <= 0:
        return 0.0
    p = unit_dir.double() @ act.double()
    return float((t * (p - _fit(level.double(), n))).sum() / den)


def _fit(x, n: int):
    import torch

    return x[:n] if len(x) >= n else torch.cat([x, x.new_zeros(n - len(x))])


@dataclass(frozen=True)
class CalibratedSubtraction:
    """The edit rule of ``subtract`` (an :data:`steerlab.engine.EditRule`): ``add`` with
    ``v = -strength * c``, ``c`` the item's :func:`projection_excess` along the unit direction,
    and weights the template ``T_t`` (cut or zero-padded to the item, 0 on padding frames), on
    every frame. ``template``, ``level``: ``[frames]`` tensors."""

    strength: float
    template: Any
    level: Any

    def __call__(self, r: Any, act: Any, n_frames: int) -> tuple[float, Any, dict[str, Any]]:
        from steerlab.interventions import rms_norm

        excess = projection_excess(act[:, :n_frames], r.direction, self.template, self.level)
        weight = _fit(self.template.to(act.dtype), n_frames)
        weight = _fit(weight, act.shape[-1]) if act.shape[-1] > n_frames else weight[: act.shape[-1]]
        return (
            -self.strength * excess,
            weight,
            {
                "layer_rms_norm": rms_norm(act[:, :n_frames]),
                "projection_excess": excess,
                "span_frames": [0, n_frames],
                "fade_frames": None,
                "strength_mode": "projection",
            },
        )


def sae_code_ablation(sae: Any, feature: int) -> Any:
    """The prepared ``feature-clamp`` state (:class:`steerlab.builtins.interventions.learned.FeatureClamp`)
    that sets feature ``feature`` of ``sae`` to 0 with the reconstruction error kept: applied with
    value 0 and weights ``w_t`` it gives ``a'_t = a_t - w_t z_tj s W_dec[j]``, ``z_t = E(a_t)`` the
    SAE's codes (centring, normalisation and TopK included; ``s`` its scale). The SAE literature's
    ablation of a feature (Marks et al. 2024, "Sparse Feature Circuits", arXiv:2403.19647: a
    feature's activation set to zero, the error term kept; Templeton et al. 2024, "Scaling
    Monosemanticity": clamping with the error term). ``sae``: a
    :class:`steerlab.sae.SparseAutoencoder` over the layer's ``[channels]``."""
    from steerlab.builtins.interventions.learned import FeatureClampState
    from steerlab.interventions import Prepared

    atom = (sae.W_dec[feature] * sae.scale).detach().clone()
    state = FeatureClampState(None, int(feature), "set", atom, sae)
    return Prepared("feature-clamp", state, {"feature": int(feature), "mode": "set", "value": 0.0}, "strength")


def patch_for(
    model: Any,
    it: WorkItem,
    vectors: dict[str, np.ndarray],
    saes: dict[str, Any] | None = None,
    provenance: dict | None = None,
):
    """The engine's :class:`~steerlab.engine.Patch` of one work item: ``add`` (``strength`` x the
    item's RMS norm at the layer, on :func:`edit_span`), ``ablate`` (every frame) or ``subtract``
    (:class:`CalibratedSubtraction`) along the item's direction (unit norm), or ``sae_ablate``
    (every frame: the feature its direction's ``provenance`` names, of the SAE ``saes`` holds for
    its layer, set to 0: :func:`sae_code_ablation`). ``vectors`` holds each direction by id and,
    beside it, its subtraction template and level (ids + ``runner.TEMPLATE`` / ``runner.LEVEL``)."""
    import torch

    from steerlab import engine
    from steerlab.interventions import Direction, Span, Strength
    from steerlab.loading import layers
    from steerlab.spec import InterventionSpec

    layer = layers(model).get(it.layer)
    if it.op == "sae_ablate":
        sae = (saes or {}).get(it.layer)
        feature = (provenance or {}).get(it.direction_id, {}).get("feature")
        if sae is None or feature is None:
            from steerlab.errors import SteerlabError

            raise SteerlabError(f"sae_ablate item {it.key()[:12]} has no dictionary for {it.model} {it.layer}")
        spec = InterventionSpec(
            layer=it.layer, intervention="feature-clamp", strength=Strength(0.0), span=Span(), path=it.path
        )
        return engine.Patch(engine.resolve(model, spec, prepared=sae_code_ablation(sae, feature)))
    spec = InterventionSpec(
        layer=it.layer,
        direction=Direction(vectors[it.direction_id], {"id": it.direction_id}),
        intervention="ablate" if it.op == "ablate" else "add",
        strength=Strength(it.strength),
        span=edit_span(it.op, it.stimulus, layer),
        path=it.path,
    )
    # (the grid's n_q goes to the pass, engine.run, on every path, as the grid says)
    rule = None
    if it.op == "subtract":
        from steerlab.partials.runner import LEVEL, TEMPLATE

        rule = CalibratedSubtraction(
            it.strength,
            torch.from_numpy(np.asarray(vectors[it.direction_id + TEMPLATE])),
            torch.from_numpy(np.asarray(vectors[it.direction_id + LEVEL])),
        )
    return engine.Patch(engine.resolve(model, spec), rule)


def run_batch(
    plan: ModelPlan,
    batch: Sequence[WorkItem],
    vectors: dict[str, np.ndarray],
    base: dict,
    max_batch: int,
    provenance: dict | None = None,
    saes: dict[str, Any] | None = None,
) -> list[tuple[np.ndarray, Any, dict]]:
    """Patched decodes of one batch (:func:`patch_for` each item, one engine run); returns
    ``(decode [channels, samples], codes, info)`` per item, ``info`` holding ``value``,
    ``layer_rms_norm``, ``projection_excess``, ``edit_frames``, ``edit_fade_frames`` and
    ``strength_mode``. ``saes``: the ``sae`` method's dictionaries' SAEs by layer (``sae_ablate``
    items, with the feature from ``provenance``)."""
    from steerlab import engine

    model = plan.model
    items = [
        engine.PassItem(_wave(model, it.stimulus, it.role), patch_for(model, it, vectors, saes, provenance))
        for it in batch
    ]
    results = engine.run(model, items, batch[0].path, batch[0].n_q, max_batch)
    out = []
    for r in results:
        info = r.info
        info = {
            "value": info["value"],
            "layer_rms_norm": info["layer_rms_norm"],
            "projection_excess": info.get("projection_excess"),
            "edit_frames": info["span_frames"],
            "edit_fade_frames": info["fade_frames"],
            "strength_mode": info["strength_mode"],
        }
        out.append((r.output.numpy().astype(np.float64), r.traced.get(engine.CODES), info))
    return out


class _BaselineSpectra:
    """STFTs of the baselines, the few most recent kept: an item's settings follow each other
    (work_items orders them so), so each baseline is transformed about once, and scoring an
    item transforms only its patched decode (:func:`steerlab.scoring.score`)."""

    def __init__(self, base: dict, n_fft: int, keep: int = 32) -> None:
        from collections import OrderedDict

        self.base, self.n_fft, self.keep = base, n_fft, keep
        self.cache: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def get(self, key: tuple) -> np.ndarray:
        from steerlab.scoring import as_audio, stft

        if key in self.cache:
            self.cache.move_to_end(key)
        else:
            self.cache[key] = stft(as_audio(self.base[key][0], "baseline"), self.n_fft)
            if len(self.cache) > self.keep:
                self.cache.popitem(last=False)
        return self.cache[key]


def scored_by_note(model: Any, spec: Any) -> bool:
    """Whether ``spec`` is scored by the note-partials rule on ``model`` (docs/partials.md): an
    ``instrument`` pair on a model whose output is audio. A pitch salience reports a note at its
    fundamental, so there (and for every sinusoid family) the target's band is scored."""
    return spec.family == "instrument" and bool(model.has_decoder)


@lru_cache(maxsize=256)
def _note_bands(spec: Any, band_hz: float, n_fft: int, local_criterion_db: float, tolerance_db: float) -> Any:
    from steerlab.scoring import NoteRule, ScoreConfig, note_bands
    from steerlab.stimuli import render_parts

    r = render_parts(spec)
    return note_bands(
        r.scale * r.target,
        r.without,
        spec.sample_rate,
        ScoreConfig(band_hz=band_hz, n_fft=n_fft),
        NoteRule(local_criterion_db, tolerance_db),
    )


def note_bands_for(model: Any, spec: Any, scoring: dict) -> Any | None:
    """The note's bands (:func:`steerlab.scoring.note_bands` of the ideal edit, the target note
    rendered alone, in the pair's without-note signal; cached per spec) when :func:`scored_by_note`,
    else None. ``scoring``: ``band_hz``, ``n_fft`` and the note options of
    :class:`steerlab.partials.config.ScoringConfig` (defaults where absent)."""
    if not scored_by_note(model, spec):
        return None
    if spec.sample_rate != model.sample_rate:
        from steerlab.errors import SteerlabError

        raise SteerlabError(f"stimulus at {spec.sample_rate} Hz scored on a model at {model.sample_rate} Hz")
    return _note_bands(
        spec,
        float(scoring.get("band_hz", 50.0)),
        int(scoring.get("n_fft", 4096)),
        float(scoring.get("note_local_criterion_db", 0.0)),
        float(scoring.get("note_tolerance_db", 1.0)),
    )


def score_output(
    model: Any,
    baseline: np.ndarray,
    patched: np.ndarray,
    target_hz: Any,
    scoring: dict,
    baseline_stft: np.ndarray | None = None,
    note: Any | None = None,
) -> dict[str, Any]:
    """The scores a verdict reads, of one patched output against its baseline, in the model's
    output space. A model with a decoder: :func:`steerlab.scoring.score` of the decodes
    (``[channels, samples]``) at ``target_hz``, off-band distance ``offband_lsd_db``; or, when
    ``note`` (a note's :func:`note_bands_for`) is given, :func:`steerlab.scoring.score_note` on its
    bands (the note-partials rule, docs/partials.md). A model without one: the
    first scorer its plugin registers for its ``output_kind`` (:func:`steerlab.outputs.output_scorers`;
    for a pitch salience ``[bins, frames]``: gain at the target's bins in dB, concentration of
    the salience change there, and the salience off-band distance ``offband_db``, see
    docs/partials.md). Returns ``output_kind``, ``gain_db``, ``concentration`` (and
    ``concentration_reason``: None, or why it is None), ``offband_db``
    (the value the off-band rule reads), ``offband_lsd_db`` (None off audio), ``baseline_band``,
    ``patched_band``, ``lsd_db``, ``snr_change_db`` and ``scoring`` (the scorer's settings).
    Raises ``SteerlabError`` (from the scorer) on outputs of the wrong shape."""
    from steerlab.outputs import output_scorers, score_all

    if model.has_decoder:
        from steerlab.scoring import ScoreConfig, score, score_note

        cfg = ScoreConfig(band_hz=scoring["band_hz"], n_fft=scoring["n_fft"])
        if note is not None:
            s = score_note(baseline, patched, model.sample_rate, note, cfg, baseline_stft)
            return {
                "output_kind": "audio",
                "gain_db": s["gain_db"],
                "concentration": s["concentration"],
                "concentration_reason": s.get("concentration_reason"),
                "offband_db": s["offband_lsd_db"],
                "offband_lsd_db": s["offband_lsd_db"],
                "baseline_band": s["baseline_band_energy"],
                "patched_band": s["patched_band_energy"],
                "lsd_db": s["lsd_db"],
                "snr_change_db": s["snr_change_db"],
                "scoring": {**s["config"], **s["note"], **({"reason": s["unresolved"]} if s["unresolved"] else {})},
            }
        targets = [float(target_hz)] if np.ndim(target_hz) == 0 else [float(f) for f in target_hz]
        s = score(baseline, patched, model.sample_rate, targets, cfg, multires=False, baseline_stft=baseline_stft)
        t = s["targets"][0]
        return {
            "output_kind": "audio",
            "gain_db": t["gain_db"],
            "concentration": t["concentration"],
            "concentration_reason": t.get("concentration_reason"),
            "offband_db": t["offband_lsd_db"],
            "baseline_band": t["baseline_band_energy"],
            "patched_band": t["patched_band_energy"],
            "offband_lsd_db": t["offband_lsd_db"],
            "lsd_db": s["lsd_db"],
            "snr_change_db": s["snr_change_db"],
            "scoring": s["config"],
        }
    target_hz = float(target_hz) if np.ndim(target_hz) == 0 else float(target_hz[0])
    name = output_scorers(model)[0]
    s = score_all(baseline, patched, model.sample_rate, [target_hz], [name], model)[name]
    t = s["targets"][0]
    return {
        "output_kind": getattr(model, "output_kind", None),
        "gain_db": t.get("gain_db"),
        "concentration": t.get("concentration"),
        "concentration_reason": None,  # an unresolved target's reason is the scoring's ("reason")
        "offband_db": t.get("offband_db"),
        "offband_lsd_db": None,
        "baseline_band": t.get("baseline_band_salience"),
        "patched_band": t.get("patched_band_salience"),
        "lsd_db": None,
        "snr_change_db": None,
        "scoring": {
            "scorer": name,
            "band_cents": t.get("band_cents"),
            "rms_change": s.get("rms_change"),
            "offband_cells": t.get("offband_cells"),
            **({"reason": t["reason"]} if "reason" in t else {}),
        },
    }


def make_row(
    plan: ModelPlan,
    it: WorkItem,
    patched: np.ndarray,
    codes: Any,
    info: dict,
    base: dict,
    direction: dict,
    context: dict,
    baseline_stft: np.ndarray | None = None,
) -> dict[str, Any]:
    from steerlab.loading import layers

    model = plan.model
    layer = layers(model).get(it.layer)
    b, b_codes = base[(it.path, it.stimulus.key(), it.role)]
    t = score_output(
        model,
        b,
        patched,
        it.stimulus.target_hz,
        context["scoring"],
        baseline_stft,
        note_bands_for(model, it.stimulus, context["scoring"]),
    )
    changed = None
    if codes is not None and b_codes is not None:
        changed = float((codes != b_codes).float().mean())
    return {
        "key": it.key(),
        "config_hash": it.config_hash,
        "model": it.model,
        "model_role": plan.role,
        "weights_sha256": context["weights"][it.model],
        "layer": it.layer,
        "layer_side": layer.side,
        "layer_frame_rate_hz": layer.frame_rate,
        "layer_nyquist_hz": layer.nyquist_hz,
        "family": it.stimulus.family,
        "target_hz": it.stimulus.target_hz,
        "density": it.stimulus.density,
        "seed": it.stimulus.seed,
        "stimulus_key": it.stimulus.key(),
        "stimulus": it.stimulus.to_dict(),
        "role": it.role,
        "method": it.method,
        "direction_id": it.direction_id,
        "direction_source": direction.get("source"),
        "direction_norm": direction.get("norm"),
        "op": it.op,
        "strength": it.strength,
        "strength_mode": info.get("strength_mode", "relative"),
        "value": info.get("value"),
        "layer_rms_norm": info.get("layer_rms_norm"),
        "projection_excess": info.get("projection_excess"),
        "edit_frames": info.get("edit_frames"),
        "edit_fade_frames": info.get("edit_fade_frames"),
        "path": it.path,
        "n_q": it.n_q,
        "output_kind": t["output_kind"],
        "gain_db": t["gain_db"],
        "concentration": t["concentration"],
        # a null concentration says why (a change of nothing); rows with a number carry no such key
        **({"concentration_reason": t["concentration_reason"]} if t.get("concentration_reason") else {}),
        "offband_lsd_db": t["offband_lsd_db"],
        "offband_db": t["offband_db"],
        "baseline_band_energy": t["baseline_band"],
        "patched_band_energy": t["patched_band"],
        "lsd_db": t["lsd_db"],
        "snr_change_db": t["snr_change_db"],
        "codes_changed_share": changed,
        "scoring": t["scoring"],
        "run_seed": context["seed"],
        "versions": context["versions"],
    }


@dataclass(frozen=True)
class BatchContext:
    """What every batch of one plan needs (:func:`batch_rows`), sent once per plan to an
    executor: the model by name and weights hash (a Ray worker loads it once, see
    :func:`plan_model`), the plan's role, the directions (``vectors``, ``provenance``), the
    unpatched decodes (``base``, :func:`baselines`), the rows' ``context``, ``max_batch`` and
    the keys of the items whose audio goes into the report (``examples``) and, when the plan has
    ``sae_ablate`` items, the SAEs of its dictionaries by layer (``saes``)."""

    model: str
    weights_sha256: str
    role: str
    vectors: dict[str, np.ndarray]
    provenance: dict
    base: dict
    context: dict
    max_batch: int
    examples: frozenset[str]
    saes: dict[str, Any] | None = None  # the sae method's SAEs by layer, for sae_ablate items


def _load_checked(name: str, weights_sha256: str, versions: dict) -> Any:
    from steerlab import api
    from steerlab.artifacts import versions as our_versions
    from steerlab.errors import SteerlabError

    model = api.load_model(name, device="cpu")  # workers run on the CPU (run_partials checks the run's device)
    if model.weights_hash() != weights_sha256:
        raise SteerlabError(
            f"a worker loaded {name} with weights {model.weights_hash()[:12]}, not this run's "
            f"{weights_sha256[:12]}; install the same weights on every node"
        )
    ours = our_versions()
    if ours != versions:
        diff = ", ".join(
            f"{k} {ours.get(k)} (run: {versions.get(k)})"
            for k in sorted(set(ours) | set(versions))
            if ours.get(k) != versions.get(k)
        )
        raise SteerlabError(
            f"a worker has other library versions than this run: {diff}; install the same on every node"
        )
    return model


def plan_model(ctx: BatchContext) -> ModelPlan:
    """The plan :func:`run_batch` and :func:`make_row` read (its model and role), with the model
    loaded once per process (:func:`steerlab.executors.cached`; the caller's own model when run
    in process, checked for the run's weights and library versions in a Ray worker)."""
    from steerlab import executors

    model = executors.cached(
        ("partials-model", ctx.model, ctx.weights_sha256),
        lambda: _load_checked(ctx.model, ctx.weights_sha256, ctx.context["versions"]),
    )
    return ModelPlan(model, ctx.role, [], [], (), ())


def batch_rows(ctx: BatchContext, batch: Sequence[WorkItem]) -> list[tuple[dict[str, Any], np.ndarray | None]]:
    """The rows of one batch (:func:`run_batch`, then :func:`make_row` per item), each with its
    patched output when the item is one of ``ctx.examples`` (else None). A pure function of its
    arguments: an executor may run it anywhere; the caller writes."""
    plan = plan_model(ctx)
    spectra = _BaselineSpectra(ctx.base, ctx.context["scoring"]["n_fft"]) if plan.model.has_decoder else None
    outs = run_batch(plan, batch, ctx.vectors, ctx.base, ctx.max_batch, ctx.provenance, ctx.saes)
    out = []
    for it, (patched, codes, info) in zip(batch, outs):
        row = make_row(
            plan,
            it,
            patched,
            codes,
            info,
            ctx.base,
            ctx.provenance[it.direction_id],
            ctx.context,
            spectra.get((it.path, it.stimulus.key(), it.role)) if spectra is not None else None,
        )
        out.append((row, patched if it.key() in ctx.examples else None))
    return out


def sae_ablate_saes(model: str, items: Iterable[Any], dictionaries: dict | None) -> dict[str, Any] | None:
    """The SAEs by layer of ``model`` (its name) that the ``sae_ablate`` items among ``items``
    need, from ``dictionaries`` keyed by (model, layer) (None: no such item)."""
    needed = {it.layer for it in items if it.op == "sae_ablate"}
    if not needed:
        return None
    return {layer: d.sae for (m, layer), d in (dictionaries or {}).items() if m == model and layer in needed}


def execute(
    plan: ModelPlan,
    items: Sequence[WorkItem],
    vectors: dict[str, np.ndarray],
    provenance: dict,
    store: Any,
    context: dict,
    max_batch: int,
    examples: set[str],
    examples_dir: Path,
    progress: ProgressFn | None = None,
    executor: Any = None,
    dictionaries: dict | None = None,
) -> int:
    """Run every batch with a missing row (:func:`batch_rows`, on ``executor``, a
    :class:`steerlab.executors.Executor`; None: in process) and write its rows as each batch
    completes, this process the one writer; return the number of rows written. ``dictionaries``:
    the run's feature dictionaries by (model, layer), needed by ``sae_ablate`` items."""
    from steerlab import executors
    from steerlab.audio import write_wav

    todo = [batch for batch in batches(items, max_batch) if any(not store.done(it.key()) for it in batch)]
    if not todo:
        return 0
    base = baselines(plan, items, max_batch, items[0].n_q)
    weights = context["weights"][plan.model.name]
    executors.seed(("partials-model", plan.model.name, weights), plan.model)
    ids = {it.direction_id for batch in todo for it in batch}
    ctx = BatchContext(
        plan.model.name,
        weights,
        plan.role,
        {k: v for k, v in vectors.items() if k.split("/")[0] in ids},
        {k: provenance[k] for k in ids},
        base,
        context,
        max_batch,
        frozenset(examples),
        sae_ablate_saes(plan.model.name, (it for batch in todo for it in batch), dictionaries),
    )
    audio = plan.model.has_decoder
    written = 0
    for _, results in (executor or executors.LocalExecutor()).map(batch_rows, ctx, todo):
        rows = []
        for row, patched in results:
            key = row["key"]
            if store.done(key):
                continue
            rows.append(row)
            if patched is not None:
                sr = plan.model.sample_rate
                it_base = base[(row["path"], row["stimulus_key"], row["role"])][0]
                if audio:
                    write_wav(examples_dir / f"{key}_baseline.wav", it_base.astype(np.float32), sr)
                    write_wav(examples_dir / f"{key}_patched.wav", patched.astype(np.float32), sr)
                else:  # an output that is not a sound (a salience [bins, frames]): the arrays
                    np.save(examples_dir / f"{key}_baseline.npy", it_base.astype(np.float32))
                    np.save(examples_dir / f"{key}_patched.npy", patched.astype(np.float32))
        store.append(rows)  # after the example audio: a row on disk means its files are there
        written += len(rows)
        if progress is not None:
            progress(len(rows))
    store.sync()
    return written
