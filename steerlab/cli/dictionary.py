"""``steerlab dictionary``: move dictionaries between steerlab's format and SAELens'.

``import-saelens FOLDER -o OUT`` reads a SAELens folder (``cfg.json`` +
``sae_weights.safetensors``) and writes a steerlab dictionary; ``export-saelens DICT -o OUT``
writes one in SAELens' layout (:func:`steerlab.dictionary.export_saelens`: the normalisation folded
into the weights, ``metadata.steerlab_input`` saying whether the SAE reads ``r_t`` or
``r_{t+1} - r_t``). torch is imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import click

from steerlab.cli import SteerlabGroup
from steerlab.cli.options import CONTEXT, echo_json, json_option, model_option, output_option


def _summary(d, source: Path, output: Path) -> dict:
    return {
        "source": str(source),
        "output": str(output),
        "model": d.model,
        "layer": d.layer,
        "target": d.target,
        "architecture": d.config.architecture,
        "width": d.config.width,
        "size": d.config.size,
    }


def _say(info: dict, verb: str) -> None:
    click.echo(
        f"{verb} {info['source']} -> {info['output']}: a {info['architecture']} {info['target']} dictionary of "
        f"{info['size']} latents over {info['width']} dims at {info['model']} / {info['layer']}"
    )


@click.group(cls=SteerlabGroup, context_settings=CONTEXT)
def dictionary() -> None:
    """Import and export dictionaries in SAELens' format."""


@dictionary.command("import-saelens", context_settings=CONTEXT)
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@output_option("The steerlab dictionary folder to write.")
@model_option("Model name (default: cfg.json's model_name).")
@click.option("--layer", default=None, help="Layer name (default: cfg.json's hook_name).")
@click.option("--overwrite", is_flag=True, help="Replace an existing dictionary folder.")
@json_option()
def import_saelens(
    folder: Path, output: str, model_name: str | None, layer: str | None, overwrite: bool, as_json: bool
) -> None:
    """Read the SAELens folder FOLDER (cfg.json + sae_weights.safetensors) as a steerlab dictionary.

    The dictionary is checked before anything is written: finite weights, a config read exactly
    (TopK, ReLU, JumpReLU) or refused, a model that exists with that layer, and a width equal to the
    layer's channels. SAELens records no weights hash: intervene and analyze then need
    --allow-weights-mismatch."""
    from steerlab import api
    from steerlab import dictionary as dictionaries
    from steerlab.learned import check_dictionary_fits

    d = dictionaries.import_saelens(folder, model=model_name, layer=layer)
    model = api.load_model(d.model, random_init=True)  # the layer table; no weights needed: they are not checked
    d.layer = check_dictionary_fits(d, model, allow_weights_mismatch=True, label=str(folder)).name  # an alias: its name
    out = dictionaries.save(d, output, overwrite=overwrite)
    info = _summary(d, folder, out)
    echo_json(info) if as_json else _say(info, "imported")


@dictionary.command("export-saelens", context_settings=CONTEXT)
@click.argument("source")
@output_option("The SAELens folder to write (cfg.json + sae_weights.safetensors).")
@click.option("--overwrite", is_flag=True, help="Replace an existing folder.")
@json_option()
def export_saelens(source: str, output: str, overwrite: bool, as_json: bool) -> None:
    """Write the dictionary SOURCE in SAELens' layout: a dictionary folder, or the name of one shipped
    with the default model (`steerlab dictionaries`), resolved as intervene --feature resolves it."""
    from steerlab import dictionary as dictionaries

    d = dictionaries.load_dictionary(source)
    out = dictionaries.export_saelens(d, output, overwrite=overwrite)
    info = _summary(d, Path(source), out)
    echo_json(info) if as_json else _say(info, "exported")


COMMANDS = (dictionary,)
