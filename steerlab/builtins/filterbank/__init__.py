"""Built-in plugin: ``filterbank_24khz``, the positive-control model of the
partial-steerability test (a bank of long narrowband filters with a matching
synthesis; no training). See docs/filterbank.md."""

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
            "positive control: 64 long narrowband filters 100 Hz-8 kHz with a phase-vocoder decoder; "
            "partials at band centres are steerable at layer 'bands' by construction",
        )
    )


@hookimpl
def steerlab_register_layers(model, registry):
    from .model import FilterbankModel, register_layers

    if isinstance(model, FilterbankModel):
        register_layers(model, registry)
