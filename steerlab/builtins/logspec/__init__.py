"""Built-in plugin: ``logspec_24khz``, the third positive-control model (the log-magnitude of a
long-window STFT, resynthesised with the analysis phase: a gain and a spectral tilt are linear
directions of its layer by construction; no training). See docs/logspec.md."""

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
            "positive control: STFT log-magnitudes (4096-sample Hann window, hop 1024, 2049 bins, nats above "
            "a 1e-12 floor) resynthesised with the analysis phase; a gain and a spectral tilt are linear "
            "directions of layer 'log_magnitude' by construction",
        )
    )


@hookimpl
def steerlab_register_layers(model, registry):
    from .model import LogSpecModel, register_layers

    if isinstance(model, LogSpecModel):
        register_layers(model, registry)
