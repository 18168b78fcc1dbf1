"""Patch arrays in memory and score them: :func:`intervene`, what ``steerlab intervene`` does for
each input (file handling and chunking: :mod:`steerlab.runner`).

The patched pass is the engine's (:mod:`steerlab.engine`); each item's record says what was
done (model, path, spec, the value the edit used, the layer's norms, versions) beside its
scores (:mod:`steerlab.outputs`, or :mod:`steerlab.classifier` for a model without a decoder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from steerlab import engine
from steerlab.classifier import class_names, classification_scores
from steerlab.interventions import Prepared
from steerlab.model import AudioModel
from steerlab.outputs import NO_DECODER_NOTE, check_targets, output_scorers, score_all
from steerlab.spec import InterventionSpec, n_q_record, with_reason


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


def model_record(model: AudioModel) -> dict[str, Any]:
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


def intervene(
    model: AudioModel,
    waves: Sequence[Any],
    spec: InterventionSpec,
    target_hz: Sequence[float] = (),
    scorers: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    max_batch: int = 16,
    prepared: Prepared | None = None,
    device: Any = None,
) -> list[ItemResult]:
    """Patch ``waves`` (arrays ``[channels, samples]`` at the model's rate) and score them.

    ``device``: where the passes run (:func:`steerlab.devices.resolve`); the model is moved
    there first. None: where the model is. Inputs go to the model's device batch by batch;
    decodes come back as CPU arrays and are scored on the CPU in float64.

    Decodes are checked with :func:`steerlab.scoring.output_check` (clipping, level jumps
    against the baseline) into ``record["output_check"]``, whose ``flags`` list is empty
    when nothing is wrong. A model without a decoder (``has_decoder = False``) is scored with
    :func:`steerlab.classifier.classification_scores` under ``scores["classification"]``; its
    record says that spectral scores do not apply. ``prepared``: from
    :func:`steerlab.engine.prepare`, to reuse a type's prepared state across calls.
    """
    from steerlab import devices
    from steerlab.artifacts import versions
    from steerlab.capture import check_waves
    from steerlab.scoring import output_check

    arrays = check_waves(model, waves)
    devices.place(model, device)
    check_targets(model, target_hz)
    resolved = engine.resolve(model, spec, max_batch, prepared)
    base, patched, infos, codes_changed = engine.pairs(model, resolved, arrays, max_batch)
    layer, prepared, path = resolved.layer, resolved.prepared, resolved.path
    results = []
    for i, (b, p, info, cc) in enumerate(zip(base, patched, infos, codes_changed)):
        record = {
            "model": model_record(model),
            "path": path,
            **n_q_record(model, path, spec.n_q),
            **spec.to_json(layer, prepared),
            "effective_value": info.get("value"),
            "layer_rms_norm": info.get("layer_rms_norm"),
            "layer_rms_step_norm": info.get("layer_rms_step_norm"),
            "span_frames": info.get("span_frames"),
            **with_reason(
                "codes_changed_share", cc, f"the {path} path produces no codes (only a codec's quantized path does)"
            ),
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
