"""Built-in plugin: EnCodec models (official 24/48 kHz, the embedded tiny codec),
their layer tables, and the ``steerlab train codec`` / ``steerlab eval codec`` commands."""

from __future__ import annotations

from steerlab.hookspecs import hookimpl


@hookimpl
def steerlab_register_models(registry):
    from steerlab.registry import ModelSpec

    from .loaders import EMBEDDED_NAME, load_embedded, load_official

    registry.add(
        ModelSpec(
            EMBEDDED_NAME,
            load_embedded,
            "EnCodec 24 kHz architecture at reduced width, trained by steerlab on its synthetic corpus; ships with the package",
            default=True,
        )
    )
    registry.add(
        ModelSpec("encodec_24khz", lambda o: load_official("encodec_24khz", o), "Meta's EnCodec 24 kHz (causal, mono)")
    )
    registry.add(
        ModelSpec(
            "encodec_48khz", lambda o: load_official("encodec_48khz", o), "Meta's EnCodec 48 kHz (non-causal, stereo)"
        )
    )


@hookimpl
def steerlab_register_layers(model, registry):
    from .model import EncodecAudioModel, register_seanet_layers

    if isinstance(model, EncodecAudioModel):
        register_seanet_layers(model, registry)


@hookimpl
def steerlab_register_commands(cli):
    from .commands import eval_codec, train_codec

    # the core owns the ``train`` and ``eval`` groups; plugins add their recipes to them
    cli.commands["train"].add_command(train_codec)
    cli.commands["eval"].add_command(eval_codec)
