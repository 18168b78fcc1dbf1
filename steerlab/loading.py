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
    name: str | None = None,
    checkpoint: str | Path | None = None,
    random_init: bool = False,
    device: Any = "auto",
    **extra: Any,
) -> AudioModel:
    """Load a registered model (the embedded default when ``name`` is None).

    ``random_init=True`` asks for the architecture with random weights (layer
    tables and architecture predictions need no weights). ``device``: where the model runs,
    ``"auto"`` (CUDA when torch sees it, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
    ``"mps"`` or a ``torch.device`` (:func:`steerlab.devices.resolve`; an unavailable device is
    a :class:`~steerlab.errors.ConfigError`, never a silent fallback). The loader receives it
    in ``LoadOptions.device`` and the loaded model is moved there whatever the loader did; the
    request is kept on the model (``model.device_requested``) for the records."""
    from steerlab import devices

    target = devices.use(devices.resolve(device))  # an unavailable device fails before any loading
    name = name or default_model_name()
    spec = plugins.models().get(name)
    owner = plugins.models().owners[name]
    options = LoadOptions(
        checkpoint=Path(checkpoint) if checkpoint else None, device=str(target), random_init=random_init, extra=extra
    )
    model = plugins.guarded(owner, f"loading model {name!r}", spec.loader, options)
    if devices.of(model) != target:
        model.to(target)
    setattr(model, devices.REQUEST_ATTR, "auto" if device is None else str(device))
    model.eval()
    model.layer_registry = plugins.layers_for(model)
    return model


def layers(model: AudioModel) -> LayerRegistry:
    """The model's layers, in forward order (``.get(name)`` also accepts aliases)."""
    reg = getattr(model, "layer_registry", None)
    if reg is None:
        reg = model.layer_registry = plugins.layers_for(model)
    return reg
