"""steerlab: steer the internal variables of neural audio models and measure what changes.

The public API is re-exported here lazily so that ``import steerlab`` (and the
CLI's ``--help``) does not import torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "steerlab.api",
    "layers": "steerlab.api",
    "intervene": "steerlab.api",
    "intervene_files": "steerlab.runner",
    "InterventionSpec": "steerlab.api",
    "ItemResult": "steerlab.api",
    "Direction": "steerlab.interventions",
    "Span": "steerlab.interventions",
    "Strength": "steerlab.interventions",
    "channel_direction": "steerlab.interventions",
    "load_direction": "steerlab.interventions",
    "SteerlabError": "steerlab.errors",
    "hookimpl": "steerlab.hookspecs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'steerlab' has no attribute {name!r}")
