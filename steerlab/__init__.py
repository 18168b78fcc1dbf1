"""steerlab: steer the internal variables of neural audio models and measure what changes.

The Python API, re-exported here lazily so that ``import steerlab`` (and the CLI's
``--help``) does not import torch:

- models and layers: :func:`load_model`, :func:`layers`;
- audio files: :func:`load_audio` (``(wave [channels, samples] float32, conversion)``, at a
  given rate and channel count or the file's own);
- activations: :func:`capture_activations` (a layer's unpatched activations for arrays);
- directions: :class:`Direction` (from any array; its provenance is recorded),
  :func:`channel_direction`, :func:`load_direction` (``.npy`` / ``.safetensors``);
- dictionaries: :func:`load_dictionary` (a folder or a shipped name; ``.decoder`` is the
  ``[n_latents, channels]`` decoder matrix), :func:`learned_direction` (one latent's direction,
  a :class:`LearnedDirection`);
- patched runs: :class:`InterventionSpec` with :class:`Strength` and :class:`Span`, run by
  :func:`intervene` on arrays (one :class:`ItemResult` per input) or by
  :func:`intervene_files` on files (written as the CLI writes them; returns each
  ``scores.json``);
- :class:`SteerlabError`, the base of every error the library raises, and :data:`hookimpl`
  for plugins.

The command line is :func:`steerlab.cli.get_cli`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "steerlab.api",
    "layers": "steerlab.api",
    "intervene": "steerlab.api",
    "intervene_files": "steerlab.runner",
    "capture_activations": "steerlab.capture",
    "load_audio": "steerlab.audio",
    "InterventionSpec": "steerlab.api",
    "ItemResult": "steerlab.api",
    "Direction": "steerlab.interventions",
    "Span": "steerlab.interventions",
    "Strength": "steerlab.interventions",
    "channel_direction": "steerlab.interventions",
    "load_direction": "steerlab.interventions",
    "load_dictionary": "steerlab.dictionary",
    "Dictionary": "steerlab.dictionary",
    "learned_direction": "steerlab.api",
    "LearnedDirection": "steerlab.api",
    "SteerlabError": "steerlab.errors",
    "hookimpl": "steerlab.hookspecs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'steerlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
