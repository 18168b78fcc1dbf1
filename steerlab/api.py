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

This module gathers the public names of the modules that do each job: loading models
(:mod:`steerlab.loading`), what to patch (:mod:`steerlab.spec`), dictionaries and learned
directions (:mod:`steerlab.learned`), patched passes (:mod:`steerlab.engine`), runs with
records (:mod:`steerlab.running`), scoring outputs (:mod:`steerlab.outputs`) and classifiers
(:mod:`steerlab.classifier`).
"""

from __future__ import annotations

from steerlab.classifier import class_names, classification_scores
from steerlab.engine import check_inputs, prepare, run_pairs
from steerlab.learned import (
    DictionaryRef,
    LearnedDirection,
    check_dictionary_fits,
    learned_direction,
    parse_learned,
    resolve_dictionary,
)
from steerlab.loading import default_model_name, layers, load_model
from steerlab.outputs import NO_DECODER_NOTE, check_targets, output_scorers, score_all
from steerlab.running import ItemResult, intervene
from steerlab.spec import InterventionSpec, check_n_q, codebooks, n_q_record

__all__ = [
    "NO_DECODER_NOTE",
    "DictionaryRef",
    "InterventionSpec",
    "ItemResult",
    "LearnedDirection",
    "check_dictionary_fits",
    "check_inputs",
    "check_n_q",
    "check_targets",
    "class_names",
    "classification_scores",
    "codebooks",
    "default_model_name",
    "intervene",
    "layers",
    "learned_direction",
    "load_model",
    "n_q_record",
    "output_scorers",
    "parse_learned",
    "prepare",
    "resolve_dictionary",
    "run_pairs",
    "score_all",
]
