"""The Python API: load a model, list its layers, run interventions, get scores.

The CLI is a thin layer over these functions, so a notebook gets exactly what
``steerlab intervene`` does::

    import steerlab
    model = steerlab.load_model()                     # the embedded default
    layer = steerlab.layers(model).get("first_conv")
    spec = steerlab.InterventionSpec(layer="first_conv", direction=steerlab.channel_direction(3, layer),
                                     strength=steerlab.Strength(0.5))
    result = steerlab.intervene(model, [audio_array], spec, target_hz=[440.0])[0]
    result.scores["spectral"]["targets"][0]["gain_db"]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from steerlab import plugins
from steerlab.errors import SteerlabError
from steerlab.interventions import Direction, Span, Strength
from steerlab.model import AudioModel, LayerInfo, LoadOptions
from steerlab.registry import LayerRegistry


def default_model_name() -> str:
    reg = plugins.models()
    defaults = [spec.name for spec in reg if spec.default]
    if not defaults:
        raise SteerlabError(f"no default model is registered; pass --model (one of: {', '.join(reg.names())})")
    return defaults[0]


def load_model(
    name: str | None = None, checkpoint: str | Path | None = None, random_init: bool = False, **extra: Any
) -> AudioModel:
    """Load a registered model (the embedded default when ``name`` is None).

    ``random_init=True`` asks for the architecture with random weights (layer
    tables and architecture predictions need no weights)."""
    name = name or default_model_name()
    spec = plugins.models().get(name)
    owner = plugins.models().owners[name]
    options = LoadOptions(checkpoint=Path(checkpoint) if checkpoint else None, random_init=random_init, extra=extra)
    model = plugins.guarded(owner, f"loading model {name!r}", spec.loader, options)
    model.eval()
    model.layer_registry = plugins.layers_for(model)
    return model


def layers(model: AudioModel) -> LayerRegistry:
    """The model's layers, in forward order (``.get(name)`` also accepts aliases)."""
    reg = getattr(model, "layer_registry", None)
    if reg is None:
        reg = model.layer_registry = plugins.layers_for(model)
    return reg


@dataclass(frozen=True)
class InterventionSpec:
    """What to patch: a layer, a direction, an intervention type, a strength and a span."""

    layer: str
    direction: Direction
    kind: str = "add"
    strength: Strength = Strength(1.0, "relative")
    span: Span = Span()
    path: str | None = None
    n_q: int | None = None
    normalize_direction: bool = True

    def to_json(self, layer: LayerInfo) -> dict[str, Any]:
        return {
            "layer": layer.name,
            "layer_info": layer.to_json(),
            "intervention": self.kind,
            "alpha": self.strength.alpha,
            "strength_mode": self.strength.mode,
            "start_s": self.span.start_s,
            "end_s": self.span.end_s,
            "fade_in_frames": self.span.fade_in,
            "fade_out_frames": self.span.fade_out,
            "direction": {**self.direction.provenance, "norm": self.direction.norm},
            "normalize_direction": self.normalize_direction,
        }


@dataclass
class ItemResult:
    """Baseline and patched decodes of one input, their scores, and what was done."""

    name: str
    baseline: np.ndarray  # [channels, samples]
    patched: np.ndarray  # [channels, samples]
    scores: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)


def _make_edit(kind, direction_t, value_kind: str, strength: Strength, span: Span, layer: LayerInfo, info: dict) -> Callable:
    """The edit run inside the trace on one item's activation ``[1, channels, frames]``."""
    import torch

    owner = plugins.interventions().owners.get(kind.name, "unknown")

    def edit(act: torch.Tensor, n_frames: int) -> torch.Tensor:
        a = act[0]
        valid = a[:, :n_frames]
        if value_kind == "strength":
            value = strength.resolve(valid)
        elif value_kind == "factor":
            value = strength.alpha
        else:
            value = 0.0
        weight = span.weights(layer, n_frames, a.shape[-1]).to(a.dtype)
        d = direction_t.to(a.dtype)
        info.update(value=value, layer_rms_norm=float(valid.pow(2).sum(0).mean().sqrt()) if n_frames else 0.0,
                    span_frames=list(span.frames(layer, n_frames)))
        return plugins.guarded(owner, f"intervention {kind.name!r}", kind.apply, a, d, value, weight)[None]

    return edit


def run_pairs(model: AudioModel, waves: Sequence[np.ndarray], spec: InterventionSpec, max_batch: int = 16):
    """Baseline and patched decodes of each wave (one batched trace); returns
    ``(baselines, patcheds, infos, codes_changed)`` lists."""
    import torch

    from steerlab import tracing

    layer = layers(model).get(spec.layer)
    spec.direction.check_fits(layer)
    kind = plugins.interventions().get(spec.kind)
    path = model.check_path(spec.path or model.default_path)
    direction = spec.direction.unit() if spec.normalize_direction else torch.from_numpy(spec.direction.vector).float()
    infos: list[dict] = [{} for _ in waves]
    items = []
    for w in waves:
        items.append(tracing.TraceItem(torch.from_numpy(np.ascontiguousarray(w)).float()))
    for w, info in zip(waves, infos):
        edit = _make_edit(kind, direction, kind.value_kind, spec.strength, spec.span, layer, info)
        items.append(tracing.TraceItem(torch.from_numpy(np.ascontiguousarray(w)).float(), layer, edit))
    owner = plugins.models().owners.get(model.name, f"model {model.name}")
    results = plugins.guarded(
        owner, f"the forward pass of {model.name!r}", tracing.run, model, items, path, spec.n_q, path == "quantized", max_batch
    )
    n = len(waves)
    base, patched = results[:n], results[n:]
    codes_changed = [
        float((b.codes != p.codes).float().mean()) if b.codes is not None and p.codes is not None else None
        for b, p in zip(base, patched)
    ]
    return [r.output.numpy() for r in base], [r.output.numpy() for r in patched], infos, codes_changed


def score_all(baseline: np.ndarray, patched: np.ndarray, sr: int, target_hz: Sequence[float], names: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the registered scorers (all, or ``names``) on one pair of decodes."""
    reg = plugins.scorers()
    out = {}
    for name in names or reg.names():
        scorer = reg.get(name)
        out[name] = plugins.guarded(reg.owners[name], f"scorer {name!r}", scorer.fn, baseline, patched, sr, tuple(target_hz))
    return out


def intervene(
    model: AudioModel,
    waves: Sequence[Any],
    spec: InterventionSpec,
    target_hz: Sequence[float] = (),
    scorers: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    max_batch: int = 16,
) -> list[ItemResult]:
    """Patch ``waves`` (arrays ``[channels, samples]`` at the model's rate) and score them."""
    from steerlab import audio
    from steerlab.artifacts import versions

    arrays = [audio.validate_array(w, f"input {i}") for i, w in enumerate(waves)]
    for i, a in enumerate(arrays):
        if a.shape[0] != model.channels:
            raise SteerlabError(
                f"input {i} has {a.shape[0]} channels but {model.name} takes {model.channels}; "
                "load files with steerlab.audio.load to convert"
            )
    for f in target_hz:
        if not (math.isfinite(f) and 0 < f < model.sample_rate / 2):
            raise SteerlabError(f"--target-hz {f} is outside (0, {model.sample_rate / 2:g}) Hz for {model.name}")
    layer = layers(model).get(spec.layer)
    base, patched, infos, codes_changed = run_pairs(model, arrays, spec, max_batch)
    path = spec.path or model.default_path
    results = []
    for i, (b, p, info, cc) in enumerate(zip(base, patched, infos, codes_changed)):
        record = {
            "model": model.describe(),
            "path": path,
            "n_q": spec.n_q,
            **spec.to_json(layer),
            "effective_value": info.get("value"),
            "layer_rms_norm": info.get("layer_rms_norm"),
            "span_frames": info.get("span_frames"),
            "codes_changed_share": cc,
            "target_hz": list(target_hz),
            "versions": versions(),
        }
        results.append(ItemResult(names[i] if names else f"item{i}", b, p, score_all(b, p, model.sample_rate, target_hz, scorers), record))
    return results
