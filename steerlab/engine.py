"""The one engine for patched passes.

An intervention is resolved once for a model (:func:`resolve`): its layer, its type and
the plugin that registered it, the decode path, the direction as a tensor and the state
the type's ``prepare`` step computed. A :class:`Patch` says how one input is patched with
it: the value ``v`` and the frame weights ``w`` follow from the input's own activation at
the layer, by the spec's strength and span (:func:`spec_rule`) or by a rule of the
caller's (the partials sweep's calibrated subtraction). :func:`run` runs inputs, patched
or not, in batched traced passes (:func:`steerlab.tracing.run`), and every call into plugin
code (the type's ``apply``, ``check`` and ``prepare``, the model's forward pass) goes
through the plugin guard (:func:`steerlab.plugins.guarded`). Every patched pass steerlab
makes goes through :func:`run`: single (:func:`run_pairs`, :func:`steerlab.running.intervene`)
or swept (:mod:`steerlab.partials.sweep`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from steerlab import plugins
from steerlab.errors import DirectionError, InterventionError
from steerlab.interventions import Prepared
from steerlab.loading import layers
from steerlab.model import AudioModel, LayerInfo
from steerlab.spec import InterventionSpec, check_n_q

if TYPE_CHECKING:
    import torch

#: the traced output whose change between the baseline and the patched pass a run records
#: (``codes_changed_share``): a codec's code indices, declared in ``AudioModel.traced_outputs``
CODES = "codes"


@dataclass(frozen=True)
class ResolvedIntervention:
    """An :class:`InterventionSpec` resolved for one model, once: everything a patched pass
    looks up. ``direction``: ``[channels]`` float32 (unit unless ``normalize_direction`` is
    False), or None; ``intervention_type``: the registered intervention type; ``owner``: the plugin that
    registered it (named when it fails)."""

    spec: InterventionSpec
    layer: LayerInfo
    intervention_type: Any
    owner: str
    path: str
    direction: torch.Tensor | None
    prepared: Prepared


def _direction_tensor(spec: InterventionSpec) -> torch.Tensor | None:
    import torch

    if spec.direction is None:
        return None
    return spec.direction.unit() if spec.normalize_direction else torch.from_numpy(spec.direction.vector).float()


def resolve(
    model: AudioModel, spec: InterventionSpec, max_batch: int = 16, prepared: Prepared | None = None
) -> ResolvedIntervention:
    """Check ``spec`` against ``model`` and resolve it: layer, type, decode path and codebooks,
    direction (it must fit the layer; a type that needs one must have one), then the type's
    ``prepare`` step, run once under the plugin guard, unless ``prepared`` (from an earlier
    :func:`prepare` of the same type) is given. Raises the registry's error for an unknown
    layer or type, :class:`~steerlab.errors.ConfigError` naming ``max_batch`` unless it is an
    integer >= 1, :class:`DirectionError` / :class:`InterventionError` otherwise."""
    from steerlab import interventions as iv
    from steerlab.validation import integer

    integer("max_batch", max_batch, low=1)
    layer = layers(model).get(spec.layer)
    itype = plugins.interventions().get(spec.intervention)
    path = model.check_path(spec.path or model.default_path)
    check_n_q(model, path, spec.n_q)
    if spec.direction is None:
        if iv.needs_direction(itype):
            raise DirectionError(
                f"intervention {spec.intervention!r} needs a direction: pass a steerlab.Direction as "
                "direction (channel_direction, learned_direction or Direction(array))",
                parameter="direction",
            )
    else:
        spec.direction.check_fits(layer)
    direction = _direction_tensor(spec)
    owner = plugins.interventions().owners.get(itype.name, "unknown")
    if prepared is None:
        prepared = plugins.guarded(
            owner,
            f"preparing intervention {itype.name!r}",
            iv.prepare,
            itype,
            model,
            layer,
            direction,
            spec.options,
            iv.RunContext(path, spec.n_q, max_batch),
        )
    elif prepared.intervention != spec.intervention:
        raise InterventionError(
            f"prepared state is for {prepared.intervention!r}, not {spec.intervention!r}; call api.prepare again",
            parameter="prepared",
        )
    return ResolvedIntervention(spec, layer, itype, owner, path, direction, prepared)


def prepare(model: AudioModel, spec: InterventionSpec, max_batch: int = 16) -> Prepared:
    """Check ``spec`` against ``model`` and run its type's ``prepare`` step once.

    Pass the result to :func:`steerlab.running.intervene` (or :func:`run_pairs`) to reuse it
    across calls (files, chunks): the reference mean of ``mean-ablate`` is computed once, not
    per file.
    """
    return resolve(model, spec, max_batch).prepared


def check_items(resolved: ResolvedIntervention, lengths: Sequence[int], names: Sequence[str] | None = None) -> None:
    """Ask the type whether it can patch inputs of these lengths (in samples), before any pass;
    its refusal is re-raised naming the input."""
    from steerlab import interventions as iv

    r = resolved
    for i, n in enumerate(lengths):
        frames = r.layer.frames_for(int(n))
        try:
            plugins.guarded(
                r.owner,
                f"checking intervention {r.intervention_type.name!r}",
                iv.check_item,
                r.intervention_type,
                r.prepared,
                frames,
                r.spec.span.frames(r.layer, frames),
            )
        except InterventionError as exc:
            name = names[i] if names else f"input {i}"
            raise InterventionError(f"{name}: {exc}", parameter=exc.parameters) from None


def check_inputs(
    model: AudioModel,
    spec: InterventionSpec,
    prepared: Prepared,
    lengths: Sequence[int],
    names: Sequence[str] | None = None,
) -> None:
    """:func:`check_items` for ``spec`` on ``model`` with an earlier :func:`prepare`'s state."""
    check_items(resolve(model, spec, prepared=prepared), lengths, names)


# -- how one input is patched ------------------------------------------------------------------

# rule(resolved, act [channels, total frames], valid frames) -> (value v, weights [total frames], record);
# the record's entries go into the pass's info for that input
EditRule = Callable[[ResolvedIntervention, "torch.Tensor", int], "tuple[float, torch.Tensor, dict[str, Any]]"]


def spec_rule(r: ResolvedIntervention, act: torch.Tensor, n_frames: int) -> tuple[float, torch.Tensor, dict]:
    """The spec's own rule: ``v`` is its strength resolved on the input's valid frames (relative
    to their RMS norm, or of their motion, per the type's value scale), ``w`` its span's weights
    (0 on padding frames). Records the layer's RMS norms, the span's frames and its fade-in."""
    from steerlab.interventions import rms_norm, rms_step_norm

    spec = r.spec
    valid = act[:, :n_frames]
    value = spec.strength.resolve(valid, r.prepared.value_scale)
    weight = spec.span.weights(r.layer, n_frames, act.shape[-1])
    return (
        value,
        weight,
        {
            "layer_rms_norm": rms_norm(valid),
            "layer_rms_step_norm": rms_step_norm(valid),
            "span_frames": list(spec.span.frames(r.layer, n_frames)),
            "fade_frames": spec.span.fade_in,
            "strength_mode": spec.strength.mode,
        },
    )


@dataclass(frozen=True)
class Patch:
    """How one input is patched: a resolved intervention and the rule giving its value and
    frame weights (None: :func:`spec_rule`)."""

    intervention: ResolvedIntervention
    rule: EditRule | None = None


def _edit(patch: Patch, info: dict[str, Any]) -> Callable:
    """The edit run inside the trace on one input's activation ``[1, channels, frames]``; what
    it resolved (the value, the rule's record) goes into ``info``."""
    from steerlab import interventions as iv

    r = patch.intervention
    rule = patch.rule or spec_rule

    def edit(act, n_frames: int):
        a = act[0]
        value, weight, record = rule(r, a, n_frames)
        d = r.direction.to(a.device, a.dtype) if r.direction is not None else None
        info.update(value=value, **record)
        return plugins.guarded(
            r.owner,
            f"intervention {r.intervention_type.name!r}",
            iv.apply,
            r.intervention_type,
            a,
            d,
            value,
            weight.to(a.device, a.dtype),
            r.prepared.state,
        )[None]

    return edit


# -- passes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PassItem:
    """One input of a pass: ``wave [channels, samples]`` at the model's rate, and its patch
    (None: the unpatched baseline)."""

    wave: torch.Tensor
    patch: Patch | None = None


@dataclass
class PassResult:
    """One input's output (CPU ``[channels, samples]`` decode, or the model's own output), the
    model's traced outputs read on the pass (by name) and what its edit recorded."""

    output: torch.Tensor
    traced: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def run(
    model: AudioModel,
    items: Sequence[PassItem],
    path: str,
    n_q: int | None = None,
    max_batch: int = 16,
    share_inputs: bool = False,
) -> list[PassResult]:
    """Run ``items`` through ``model`` on decode ``path`` in batched traced passes
    (:func:`steerlab.tracing.run`: inputs of one pass share it, each patched on its own row),
    under the model plugin's guard, reading the model's traced outputs on that path. Every
    patch must be resolved for ``path``. ``share_inputs``: equal inputs of a pass run once up
    to the edited layer where the model allows it (:func:`steerlab.tracing.run`; results equal
    up to a float's last bits)."""
    from steerlab import tracing

    wrong = {it.patch.intervention.path for it in items if it.patch is not None} - {path}
    if wrong:
        raise InterventionError(f"patches resolved for path(s) {', '.join(sorted(wrong))} run on the {path} path")
    infos: list[dict[str, Any]] = [{} for _ in items]
    trace_items = [
        tracing.TraceItem(it.wave)
        if it.patch is None
        else tracing.TraceItem(it.wave, it.patch.intervention.layer, _edit(it.patch, info))
        for it, info in zip(items, infos)
    ]
    owner = plugins.models().owners.get(model.name, f"model {model.name}")
    results = plugins.guarded(
        owner,
        f"the forward pass of {model.name!r}",
        tracing.run,
        model,
        trace_items,
        path,
        n_q,
        save_traced=True,
        max_batch=max_batch,
        order=layers(model).names(),
        share_inputs=share_inputs,
    )
    return [PassResult(r.output, r.traced, info) for r, info in zip(results, infos)]


def _wave(w: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(w)).float()


def pairs(
    model: AudioModel, resolved: ResolvedIntervention, waves: Sequence[np.ndarray], max_batch: int = 16
) -> tuple[list[np.ndarray], list[np.ndarray], list[dict], list[float | None]]:
    """Baseline and patched outputs of each wave with one resolved intervention, in one batched
    run (baselines first, then the patched inputs); see :func:`run_pairs`."""
    check_items(resolved, [w.shape[-1] for w in waves])
    patch = Patch(resolved)
    items = [PassItem(_wave(w)) for w in waves] + [PassItem(_wave(w), patch) for w in waves]
    results = run(model, items, resolved.path, resolved.spec.n_q, max_batch)
    n = len(waves)
    base, patched = results[:n], results[n:]
    codes_changed = [
        float((b.traced[CODES] != p.traced[CODES]).float().mean()) if CODES in b.traced and CODES in p.traced else None
        for b, p in zip(base, patched)
    ]
    return (
        [r.output.numpy() for r in base],
        [r.output.numpy() for r in patched],
        [r.info for r in patched],
        codes_changed,
    )


def run_pairs(
    model: AudioModel,
    waves: Sequence[np.ndarray],
    spec: InterventionSpec,
    max_batch: int = 16,
    prepared: Prepared | None = None,
):
    """Baseline and patched outputs of each wave (one batched trace); returns
    ``(baselines, patcheds, infos, codes_changed)`` lists. Outputs are decodes
    ``[channels, samples]``, or logits ``[classes]`` for a model without a decoder; an info
    holds the value the edit used and the layer's norms; ``codes_changed`` is the share of a
    codec's codes that changed (None where the path produces none)."""
    return pairs(model, resolve(model, spec, max_batch, prepared), waves, max_batch)
