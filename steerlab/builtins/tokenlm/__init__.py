"""Built-in plugin: a small causal transformer over the embedded codec's tokens
(``tokenlm_24khz``), its layer table, and ``steerlab train tokenlm``.

See ``docs/tokenlm.md`` for the architecture, the intervention flow (encode a
prompt, patch the residual stream on every generation step, decode the
continuation) and the measured quality of the shipped checkpoint.
"""

from __future__ import annotations

from steerlab.hookspecs import hookimpl


@hookimpl
def steerlab_register_models(registry):
    from steerlab.registry import ModelSpec

    from .loaders import NAME, load_tokenlm

    registry.add(
        ModelSpec(
            NAME,
            load_tokenlm,
            "causal transformer (transformer-lens hook points) over tiny_encodec_24khz tokens; "
            "decodes a sampled continuation of the prompt; ships with the package",
        )
    )


@hookimpl
def steerlab_register_layers(model, registry):
    from .model import TokenLMAudioModel, register_tokenlm_layers

    if isinstance(model, TokenLMAudioModel):
        register_tokenlm_layers(model, registry)


@hookimpl
def steerlab_register_commands(cli):
    from .commands import train_tokenlm

    cli.commands["train"].add_command(train_tokenlm)
