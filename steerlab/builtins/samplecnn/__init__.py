"""Built-in plugin: a toy SampleCNN (sample-level CNN with length-3 filters, after
Lee et al. 2018) trained by steerlab in two checkpoints, one classifying the kinds of
its synthetic clips, one the General MIDI instrument family of rendered notes and
chords; its layer table, and the ``steerlab train samplecnn`` / ``steerlab eval
samplecnn`` commands. A discriminative model: no decoder, ``forward`` returns class logits."""

from __future__ import annotations

from steerlab.hookspecs import hookimpl


@hookimpl
def steerlab_register_models(registry):
    from steerlab.registry import ModelSpec

    from .loaders import INSTRUMENTS_NAME, SHIPPED_NAME, load_instruments, load_shipped

    registry.add(
        ModelSpec(
            SHIPPED_NAME,
            load_shipped,
            "toy SampleCNN (length-3 filters, 24 kHz, no decoder) classifying synthetic clip kinds; ships with the package",
        )
    )
    registry.add(
        ModelSpec(
            INSTRUMENTS_NAME,
            load_instruments,
            "toy SampleCNN (length-3 filters, 24 kHz, no decoder) classifying the General MIDI instrument family "
            "of rendered notes and chords, held out by note and by program; ships with the package",
        )
    )


@hookimpl
def steerlab_register_layers(model, registry):
    from .model import SampleCNN, register_layers

    if isinstance(model, SampleCNN):
        register_layers(model, registry)


@hookimpl
def steerlab_register_commands(cli):
    from .commands import eval_samplecnn, train_samplecnn

    # the core owns the ``train`` and ``eval`` groups; plugins add their recipes to them
    cli.commands["train"].add_command(train_samplecnn)
    cli.commands["eval"].add_command(eval_samplecnn)
