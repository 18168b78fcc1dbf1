"""Scoring a patched output against its baseline with the registered scorers.

A model with a decoder is scored on its decodes by the scorers of ``audio`` outputs (the
spectral scorer, ...); a model whose output is an output space of its own (``output_kind``,
e.g. a pitch salience) by the scorers registered for that space; a classifier (no scorer)
by :func:`steerlab.classifier.classification_scores`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from steerlab import plugins
from steerlab.errors import SteerlabError
from steerlab.model import AudioModel

NO_DECODER_NOTE = "spectral scores do not apply: the model has no decoder (its output is class logits)"


def output_scorers(model: AudioModel) -> list[str]:
    """Names of the scorers of ``model``'s output: those whose ``output_kind`` is ``"audio"``
    for a model with a decoder, or the model's own ``output_kind`` (none for class logits)."""
    kind = "audio" if model.has_decoder else getattr(model, "output_kind", "")
    return [s.name for s in plugins.scorers() if kind and getattr(s, "output_kind", "audio") == kind]


def score_all(
    baseline: np.ndarray,
    patched: np.ndarray,
    sr: int,
    target_hz: Sequence[float],
    names: Sequence[str] | None = None,
    model: AudioModel | None = None,
) -> dict[str, Any]:
    """Run the registered scorers (``names``, or every scorer of audio decodes) on one pair of
    outputs, each under the plugin guard; a scorer whose function declares a ``model``
    parameter receives ``model``. Returns ``{scorer name: its scores}``."""
    reg = plugins.scorers()
    out = {}
    for name in names or [s.name for s in reg if getattr(s, "output_kind", "audio") == "audio"]:
        scorer = reg.get(name)
        extra = {"model": model} if "model" in inspect.signature(scorer.fn).parameters else {}
        out[name] = plugins.guarded(
            reg.owners[name], f"scorer {name!r}", scorer.fn, baseline, patched, sr, tuple(target_hz), **extra
        )
    return out


def check_targets(model: AudioModel, target_hz: Sequence[float]) -> None:
    """Refuse target frequencies ``model``'s output cannot be scored at: any, for a classifier;
    one outside ``(0, sample_rate / 2)`` Hz otherwise. ``target_hz`` must be a list of numbers
    (Hz): anything else is a :class:`~steerlab.errors.ConfigError` naming ``target_hz``."""
    from steerlab.validation import number, sequence

    if isinstance(target_hz, np.ndarray):
        target_hz = target_hz.tolist()
    for f in sequence("target_hz", target_hz):
        number("target_hz", f, unit="Hz")
    if target_hz and not model.has_decoder and not output_scorers(model):
        raise SteerlabError(
            f"target_hz does not apply to {model.name}: it has no decoder, so there is no "
            "spectrum to score (its scores are class probabilities); drop target_hz",
            parameter="target_hz",
        )
    for f in target_hz:
        if not (math.isfinite(f) and 0 < f < model.sample_rate / 2):
            raise SteerlabError(
                f"target_hz {f} is outside (0, {model.sample_rate / 2:g}) Hz for {model.name}", parameter="target_hz"
            )
