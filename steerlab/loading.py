"""Loading models and reading their layer tables.

:func:`load_model` loads a registered model (through its plugin's loader, under the
plugin guard) and attaches its layer table; :func:`layers` returns that table, in
forward order, for any model (building it on first use for a model loaded by hand).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steerlab import plugins
from steerlab.errors import SteerlabError
from steerlab.model import AudioModel, LoadOptions
from steerlab.registry import LayerRegistry


def default_model_name() -> str:
    """The name of the model registered as the default (the embedded codec)."""
    reg = plugins.models()
    defaults = [spec.name for spec in reg if spec.default]
    if not defaults:
        raise SteerlabError(
            f"no default model is registered; name the model to load (one of: {', '.join(reg.names())})"
        )
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
