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

Intervention types that need more than a direction take ``options`` (a dictionary
feature, a source audio, a reference set) and compute what they need once per run
(:func:`prepare`); models without a decoder are scored on their class probabilities
(:func:`classification_scores`) instead of the spectrum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from steerlab import plugins
from steerlab.errors import DirectionError, InterventionError, SteerlabError
from steerlab.interventions import Direction, Prepared, Span, Strength
from steerlab.model import AudioModel, LayerInfo, LoadOptions
from steerlab.registry import LayerRegistry

if TYPE_CHECKING:
    from steerlab.dictionary import Dictionary

NO_DECODER_NOTE = "spectral scores do not apply: the model has no decoder (its output is class logits)"


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
    """What to patch: a layer, a direction, an intervention type, a strength, a span and
    the type's own options.

    ``direction`` may be None for types that do not need one (``patch``, ``mean-ablate``,
    ``feature-clamp``). ``options`` are type-specific (``steerlab interventions`` lists
    each type's names), e.g. ``{"source": "voice.wav"}`` for ``patch`` or
    ``{"dictionary": "dicts/feat", "feature": 7}`` for ``feature-clamp``.
    """

    layer: str
    direction: Direction | None
    kind: str = "add"
    strength: Strength = Strength(1.0, "relative")
    span: Span = Span()
    path: str | None = None
    n_q: int | None = None
    normalize_direction: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str) or not self.layer:
            raise InterventionError(f"layer must be a layer name, got {self.layer!r}")
        if self.direction is not None and not isinstance(self.direction, Direction):
            raise DirectionError(f"direction must be a steerlab Direction or None, got {type(self.direction).__name__}")
        if not isinstance(self.kind, str) or not self.kind:
            raise InterventionError(f"intervention type must be a name, got {self.kind!r}")
        if not isinstance(self.strength, Strength):
            raise InterventionError(f"strength must be a steerlab Strength, got {type(self.strength).__name__}")
        if not isinstance(self.span, Span):
            raise InterventionError(f"span must be a steerlab Span, got {type(self.span).__name__}")
        if self.n_q is not None and (isinstance(self.n_q, bool) or not isinstance(self.n_q, int) or self.n_q < 1):
            raise InterventionError(f"--n-q must be a whole number >= 1, got {self.n_q!r}")
        if not isinstance(self.options, Mapping) or not all(isinstance(k, str) for k in self.options):
            raise InterventionError("options must be a mapping with string keys")
        # a read-only copy: a spec is shared by every item and chunk of a run
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def to_json(self, layer: LayerInfo, prepared: Prepared | None = None) -> dict[str, Any]:
        from steerlab.interventions import json_safe

        return {
            "layer": layer.name,
            "layer_info": layer.to_json(),
            "intervention": self.kind,
            "alpha": self.strength.alpha,
            "strength_mode": self.strength.mode,
            "value_kind": prepared.value_kind if prepared is not None else None,
            "start_s": self.span.start_s,
            "end_s": self.span.end_s,
            "fade_in_frames": self.span.fade_in,
            "fade_out_frames": self.span.fade_out,
            "direction": None if self.direction is None else {**self.direction.provenance, "norm": self.direction.norm},
            "normalize_direction": self.normalize_direction,
            "options": json_safe(dict(self.options)),
            **_with_reason("prepared", prepared.summary if prepared is not None else None,
                           "not prepared yet (api.prepare was not called)" if prepared is None else
                           f"intervention {self.kind!r} has no prepare step: nothing computed before the run"),
            **({} if self.span.end_s is not None else {"end_s_reason": "not given: the span runs to the end of the input"}),
        }


def _with_reason(key: str, value: Any, reason: str) -> dict[str, Any]:
    """``{key: value}``, plus ``{key}_reason`` when value is None: no null without a reason in a record."""
    return {key: value} if value is not None else {key: None, f"{key}_reason": reason}


def _model_record(model: AudioModel) -> dict[str, Any]:
    """``model.describe()`` for a run's record, with a ``K_reason`` beside each unset (None) entry
    of its configuration (e.g. EnCodec's ``segment``: the input is encoded in one piece)."""
    doc = model.describe()
    config = doc.get("config")
    if isinstance(config, dict) and any(v is None for v in config.values()):
        out: dict[str, Any] = {}
        for key, value in config.items():
            out[key] = value
            if value is None:
                out[f"{key}_reason"] = f"not set in {model.name}'s configuration (the model's own default applies)"
        doc["config"] = out
    return doc


def codebooks(model: AudioModel) -> int | None:
    """How many codebooks ``model``'s quantizer holds (``model.n_q``, else ``model.cfg.n_q``); None
    for a model without one."""
    for owner in (model, getattr(model, "cfg", None)):
        n = getattr(owner, "n_q", None)
        if isinstance(n, int) and not isinstance(n, bool):
            return n
    return None


def check_n_q(model: AudioModel, path: str, n_q: int | None) -> None:
    """Refuse an ``n_q`` (codebooks to decode with) that ``model`` on ``path`` cannot use: one-line
    InterventionError when the model has no codebooks, when ``path`` bypasses the quantizer of a
    model that has a ``quantized`` path, or when ``n_q`` exceeds the model's codebooks."""
    if n_q is None:
        return
    total = codebooks(model)
    if total is None:
        raise InterventionError(f"--n-q does not apply to {model.name}: it has no codebooks (no quantizer); drop --n-q")
    if "quantized" in model.paths and path != "quantized":
        raise InterventionError(f"--n-q {n_q} applies to the quantized path only, and the {path} path bypasses the "
                                "quantizer; add -p quantized or drop --n-q")
    if n_q > total:
        raise InterventionError(f"--n-q {n_q} is out of range: {model.name} has {total} codebooks (1..{total})")


def n_q_record(model: AudioModel, path: str, n_q: int | None) -> dict[str, Any]:
    """``{"n_q": codebooks used}`` for a run's record, with ``n_q_reason`` when none are used."""
    total = codebooks(model)
    if "quantized" in model.paths and path != "quantized":
        return _with_reason("n_q", None, f"the {path} path bypasses the quantizer: no codebooks are used")
    if total is None:
        return _with_reason("n_q", None, f"{model.name} has no codebooks (no quantizer)")
    return {"n_q": total if n_q is None else n_q}


@dataclass
class ItemResult:
    """Baseline and patched outputs of one input, their scores, and what was done.

    ``baseline`` / ``patched`` are decodes ``[channels, samples]``, or class logits
    ``[classes]`` for a model without a decoder."""

    name: str
    baseline: np.ndarray
    patched: np.ndarray
    scores: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)


# -- dictionaries: learned directions ------------------------------------------------------------


@dataclass(frozen=True)
class DictionaryRef:
    """A dictionary resolved for a model: where it came from and what it holds."""

    spec: str
    path: Path
    dictionary: "Dictionary"
    config_sha256: str

    def to_json(self) -> dict[str, Any]:
        d = self.dictionary
        return {"spec": self.spec, "path": str(self.path), "config_sha256": self.config_sha256, "kind": d.kind,
                "model": d.model, "model_weights_hash": d.weights_hash, "layer": d.layer, "size": d.config.size}


def resolve_dictionary(spec: "str | Path | DictionaryRef", model: AudioModel) -> DictionaryRef:
    """A dictionary for ``model`` from ``spec``: a folder written by ``steerlab learn``, or
    the name of a dictionary shipped with the model's weights (``model.shipped_dictionaries()``,
    listed by ``steerlab dictionaries``). The dictionary must have been learned on this
    model: same name and same weights hash."""
    from steerlab import dictionary
    from steerlab.artifacts import file_sha256

    if isinstance(spec, DictionaryRef):
        ref = spec
    else:
        folder = dictionary.locate(spec, model.shipped_dictionaries(), model.name)  # the one name resolver
        d = dictionary.load(folder)
        ref = DictionaryRef(str(spec), folder.resolve(), d, file_sha256(folder / dictionary.CONFIG_FILE))
    d = ref.dictionary
    if d.model != model.name:
        raise dictionary.DictionaryError(
            f"dictionary {ref.spec} was learned on model {d.model!r}, not {model.name!r}; "
            f"use -m {d.model} or a dictionary learned on {model.name} (`steerlab learn`)")
    ours = model.weights_hash()
    if d.weights_hash != ours:
        theirs = "no weights hash" if d.weights_hash is None else f"weights {d.weights_hash[:12]}"
        raise dictionary.DictionaryError(
            f"dictionary {ref.spec} has {theirs} but {model.name} has weights {ours[:12]}; "
            f"re-learn it on these weights (`steerlab learn`) or load the weights it was learned on (--checkpoint)")
    return ref


def check_dictionary_fits(ref: DictionaryRef, model: AudioModel, layer: LayerInfo, kind: str) -> None:
    """The dictionary must describe ``layer`` and be of ``kind`` (``feature`` or ``archetype``)."""
    from steerlab.dictionary import DictionaryError

    d = ref.dictionary
    try:
        theirs = layers(model).get(d.layer).name
    except SteerlabError:
        theirs = d.layer
    if theirs != layer.name:
        raise DictionaryError(f"dictionary {ref.spec} describes layer {d.layer!r}, not {layer.name!r}; "
                              f"use -l {d.layer} or a dictionary of {layer.name}")
    if d.kind != kind:
        flag = "--feature" if d.kind == "feature" else "--archetype"
        raise DictionaryError(f"dictionary {ref.spec} holds {d.kind}s, not {kind}s; pass it as {flag} DICT:ID")
    if d.config.width != layer.channels:
        raise DictionaryError(f"dictionary {ref.spec} has width {d.config.width} but layer {layer.name!r} has "
                              f"{layer.channels} channels; it is damaged or from another model")


def parse_learned(value: str) -> tuple[str, int]:
    """``DICT:ID`` -> ``(DICT, ID)``."""
    spec, sep, index = str(value).rpartition(":")
    try:
        j = int(index)
    except ValueError:
        j = -1
    if not sep or not spec or j < 0:
        raise DirectionError(f"{value!r} is not DICT:ID; give a dictionary folder and a latent number, e.g. dicts/feat:3")
    return spec, j


def learned_direction(value: "str | tuple[str | Path | DictionaryRef, int]", model: AudioModel, layer: str,
                      kind: str = "feature") -> tuple[DictionaryRef, int, Direction]:
    """The decoder direction of latent ``ID`` of dictionary ``DICT`` (``"DICT:ID"`` or a pair),
    in the layer's activation units (unit norm), checked against the model, layer and kind."""
    spec, j = parse_learned(value) if isinstance(value, str) else value
    ref = resolve_dictionary(spec, model)
    info = layers(model).get(layer)
    check_dictionary_fits(ref, model, info, kind)
    size = ref.dictionary.config.size
    if not 0 <= j < size:
        raise DirectionError(f"{kind} {j} is out of range: dictionary {ref.spec} has {size} {kind}s (0..{size - 1})")
    vec = ref.dictionary.directions[j].detach().double().numpy()
    provenance = {"source": kind, "id": j, "dictionary": ref.to_json()}
    return ref, j, Direction(vec, provenance)


# -- runs ------------------------------------------------------------------------------------------


def prepare(model: AudioModel, spec: InterventionSpec, max_batch: int = 16) -> Prepared:
    """Check ``spec`` against ``model`` and run its type's ``prepare`` step once.

    Pass the result to :func:`intervene` (or :func:`run_pairs`) to reuse it across calls
    (files, chunks): the reference mean of ``mean-ablate`` is computed once, not per file.
    """
    from steerlab import interventions as iv

    layer = layers(model).get(spec.layer)
    kind = plugins.interventions().get(spec.kind)
    path = model.check_path(spec.path or model.default_path)
    check_n_q(model, path, spec.n_q)
    if spec.direction is None:
        if iv.needs_direction(kind):
            raise DirectionError(f"intervention {spec.kind!r} needs a direction: give --direction FILE, --channel K, "
                                 "--feature DICT:ID or --archetype DICT:ID")
        direction = None
    else:
        spec.direction.check_fits(layer)
        direction = _direction_tensor(spec)
    owner = plugins.interventions().owners.get(kind.name, "unknown")
    return plugins.guarded(owner, f"preparing intervention {kind.name!r}", iv.prepare, kind, model, layer, direction,
                           spec.options, iv.RunContext(path, spec.n_q, max_batch))


def _direction_tensor(spec: InterventionSpec):
    import torch

    if spec.direction is None:
        return None
    return spec.direction.unit() if spec.normalize_direction else torch.from_numpy(spec.direction.vector).float()


def _make_edit(kind, direction_t, prepared: Prepared, strength: Strength, span: Span, layer: LayerInfo,
               info: dict) -> Callable:
    """The edit run inside the trace on one item's activation ``[1, channels, frames]``."""
    from steerlab import interventions as iv

    owner = plugins.interventions().owners.get(kind.name, "unknown")

    def edit(act, n_frames: int):
        a = act[0]
        valid = a[:, :n_frames]
        value = strength.resolve(valid, prepared.value_kind)
        weight = span.weights(layer, n_frames, a.shape[-1]).to(a.dtype)
        d = direction_t.to(a.dtype) if direction_t is not None else None
        info.update(value=value, layer_rms_norm=iv.rms_norm(valid), layer_rms_step_norm=iv.rms_step_norm(valid),
                    span_frames=list(span.frames(layer, n_frames)))
        return plugins.guarded(owner, f"intervention {kind.name!r}", iv.apply, kind, a, d, value, weight,
                               prepared.state)[None]

    return edit


def check_inputs(model: AudioModel, spec: InterventionSpec, prepared: Prepared, lengths: Sequence[int],
                 names: Sequence[str] | None = None) -> None:
    """Ask the type whether it can patch inputs of these lengths (in samples), before any pass."""
    from steerlab import interventions as iv

    layer = layers(model).get(spec.layer)
    kind = plugins.interventions().get(spec.kind)
    owner = plugins.interventions().owners.get(kind.name, "unknown")
    for i, n in enumerate(lengths):
        frames = layer.frames_for(int(n))
        try:
            plugins.guarded(owner, f"checking intervention {kind.name!r}", iv.check_item, kind, prepared, frames,
                            spec.span.frames(layer, frames))
        except InterventionError as exc:
            name = names[i] if names else f"input {i}"
            raise InterventionError(f"{name}: {exc}") from None


def run_pairs(model: AudioModel, waves: Sequence[np.ndarray], spec: InterventionSpec, max_batch: int = 16,
              prepared: Prepared | None = None):
    """Baseline and patched outputs of each wave (one batched trace); returns
    ``(baselines, patcheds, infos, codes_changed)`` lists. Outputs are decodes
    ``[channels, samples]``, or logits ``[classes]`` for a model without a decoder."""
    import torch

    from steerlab import tracing

    layer = layers(model).get(spec.layer)
    kind = plugins.interventions().get(spec.kind)
    path = model.check_path(spec.path or model.default_path)
    if prepared is None:
        prepared = prepare(model, spec, max_batch)
    elif prepared.kind != spec.kind:
        raise InterventionError(f"prepared state is for {prepared.kind!r}, not {spec.kind!r}; call api.prepare again")
    check_inputs(model, spec, prepared, [w.shape[-1] for w in waves])
    direction = _direction_tensor(spec)
    infos: list[dict] = [{} for _ in waves]
    items = []
    for w in waves:
        items.append(tracing.TraceItem(torch.from_numpy(np.ascontiguousarray(w)).float()))
    for w, info in zip(waves, infos):
        edit = _make_edit(kind, direction, prepared, spec.strength, spec.span, layer, info)
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


def output_scorers(model: AudioModel) -> list[str]:
    """Names of the scorers of ``model``'s output: those whose ``output_kind`` is ``"audio"``
    for a model with a decoder, or the model's own ``output_kind`` (none for class logits)."""
    kind = "audio" if model.has_decoder else getattr(model, "output_kind", "")
    return [s.name for s in plugins.scorers() if kind and getattr(s, "output_kind", "audio") == kind]


def score_all(baseline: np.ndarray, patched: np.ndarray, sr: int, target_hz: Sequence[float], names: Sequence[str] | None = None,
              model: AudioModel | None = None) -> dict[str, Any]:
    """Run the registered scorers (``names``, or every scorer of audio decodes) on one pair of
    outputs; a scorer whose function declares a ``model`` parameter receives ``model``."""
    import inspect

    reg = plugins.scorers()
    out = {}
    for name in names or [s.name for s in reg if getattr(s, "output_kind", "audio") == "audio"]:
        scorer = reg.get(name)
        extra = {"model": model} if "model" in inspect.signature(scorer.fn).parameters else {}
        out[name] = plugins.guarded(reg.owners[name], f"scorer {name!r}", scorer.fn, baseline, patched, sr,
                                    tuple(target_hz), **extra)
    return out


def class_names(model: AudioModel, n_classes: int) -> list[str]:
    """The model's ``class_names`` when it has a list of the right length, else ``class0``, ``class1``, ..."""
    names = getattr(model, "class_names", None)
    if isinstance(names, (list, tuple)) and len(names) == n_classes:
        return [str(n) for n in names]
    return [f"class{i}" for i in range(n_classes)]


def classification_scores(baseline: np.ndarray, patched: np.ndarray, names: Sequence[str] | None = None) -> dict[str, Any]:
    """How a patch changed a classifier's output: logits ``[classes]`` before and after.

    Per class: baseline and patched probability (softmax) and logit, and their deltas;
    the top class before and after; ``kl_divergence`` = KL(p_baseline || p_patched) in nats;
    ``total_variation`` = half the L1 distance between the two distributions.
    """
    b = np.asarray(baseline, dtype=np.float64).reshape(-1)
    p = np.asarray(patched, dtype=np.float64).reshape(-1)
    if b.shape != p.shape or b.size == 0:
        raise SteerlabError(f"logits must be two vectors of one length; got {b.shape} and {p.shape}")
    names = list(names) if names is not None else [f"class{i}" for i in range(b.size)]

    def log_softmax(x: np.ndarray) -> np.ndarray:
        z = x - x.max()
        return z - np.log(np.exp(z).sum())

    lb, lp = log_softmax(b), log_softmax(p)
    pb, pp = np.exp(lb), np.exp(lp)
    classes = [{"class": names[i], "index": i, "baseline_prob": float(pb[i]), "patched_prob": float(pp[i]),
                "delta_prob": float(pp[i] - pb[i]), "baseline_logit": float(b[i]), "patched_logit": float(p[i]),
                "delta_logit": float(p[i] - b[i])} for i in range(b.size)]
    tb, tp = int(np.argmax(b)), int(np.argmax(p))
    return {
        "classes": classes,
        "top_before": {"class": names[tb], "index": tb, "prob": float(pb[tb])},
        "top_after": {"class": names[tp], "index": tp, "prob": float(pp[tp])},
        "top_changed": tb != tp,
        "kl_divergence": float(np.sum(pb * (lb - lp))),
        "kl_definition": "KL(p_baseline || p_patched) = sum_c p_b(c) (log p_b(c) - log p_p(c)), nats",
        "total_variation": float(0.5 * np.abs(pp - pb).sum()),
    }


def check_targets(model: AudioModel, target_hz: Sequence[float]) -> None:
    if target_hz and not model.has_decoder and not output_scorers(model):
        raise SteerlabError(f"--target-hz does not apply to {model.name}: it has no decoder, so there is no "
                            "spectrum to score (its scores are class probabilities); drop --target-hz")
    for f in target_hz:
        if not (math.isfinite(f) and 0 < f < model.sample_rate / 2):
            raise SteerlabError(f"--target-hz {f} is outside (0, {model.sample_rate / 2:g}) Hz for {model.name}")


def intervene(
    model: AudioModel,
    waves: Sequence[Any],
    spec: InterventionSpec,
    target_hz: Sequence[float] = (),
    scorers: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    max_batch: int = 16,
    prepared: Prepared | None = None,
) -> list[ItemResult]:
    """Patch ``waves`` (arrays ``[channels, samples]`` at the model's rate) and score them.

    Decodes are checked with :func:`steerlab.scoring.output_check` (clipping, level jumps
    against the baseline) into ``record["output_check"]``, whose ``flags`` list is empty
    when nothing is wrong. A model without a decoder (``has_decoder = False``) is scored with
    :func:`classification_scores` under ``scores["classification"]``; its record says
    that spectral scores do not apply. ``prepared``: from :func:`prepare`, to reuse
    a type's prepared state across calls.
    """
    from steerlab import audio
    from steerlab.artifacts import versions
    from steerlab.scoring import output_check

    arrays = [audio.validate_array(w, f"input {i}") for i, w in enumerate(waves)]
    for i, a in enumerate(arrays):
        if a.shape[0] != model.channels:
            raise SteerlabError(
                f"input {i} has {a.shape[0]} channels but {model.name} takes {model.channels}; "
                "load files with steerlab.audio.load to convert"
            )
    check_targets(model, target_hz)
    layer = layers(model).get(spec.layer)
    if prepared is None:
        prepared = prepare(model, spec, max_batch)
    base, patched, infos, codes_changed = run_pairs(model, arrays, spec, max_batch, prepared)
    path = spec.path or model.default_path
    results = []
    for i, (b, p, info, cc) in enumerate(zip(base, patched, infos, codes_changed)):
        record = {
            "model": _model_record(model),
            "path": path,
            **n_q_record(model, path, spec.n_q),
            **spec.to_json(layer, prepared),
            "effective_value": info.get("value"),
            "layer_rms_norm": info.get("layer_rms_norm"),
            "layer_rms_step_norm": info.get("layer_rms_step_norm"),
            "span_frames": info.get("span_frames"),
            **_with_reason("codes_changed_share", cc, f"the {path} path produces no codes (only a codec's "
                           "quantized path does)"),
            "target_hz": list(target_hz),
            "versions": versions(),
        }
        if model.has_decoder:
            scores = score_all(b, p, model.sample_rate, target_hz, scorers)
            record["output_check"] = output_check(b, p, model.sample_rate)
        elif output_scorers(model):  # an output space of its own (e.g. pitch salience) with its scorers
            record["output"] = model.output_kind
            scores = score_all(b, p, model.sample_rate, target_hz, scorers or output_scorers(model), model)
        else:
            record["output"] = "class logits"
            record["spectral_scores"] = NO_DECODER_NOTE
            scores = {"classification": classification_scores(b, p, class_names(model, b.size))}
        results.append(ItemResult(names[i] if names else f"item{i}", b, p, scores, record))
    return results
