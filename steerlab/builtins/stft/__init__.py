"""Built-in plugin: ``stft_24khz``, the second positive-control model of the
partial-steerability test (a long-window STFT with its least-squares overlap-add
inverse; no training). See docs/stft.md."""

from __future__ import annotations

from steerlab.hookspecs import hookimpl


@hookimpl
def steerlab_register_models(registry):
    from steerlab.registry import ModelSpec

    from .model import MODEL_NAME, load

    registry.add(
        ModelSpec(
            MODEL_NAME,
            load,
            "positive control: STFT magnitudes (4096-sample Hann window, hop 1024, 2049 bins) with a "
            "least-squares overlap-add inverse; partials are steerable at layer 'magnitude' by construction",
        )
    )


@hookimpl
def steerlab_register_layers(model, registry):
    from .model import StftModel, register_layers

    if isinstance(model, StftModel):
        register_layers(model, registry)
