"""``steerlab intervene``: patch a layer along a direction, decode, score, write."""

from __future__ import annotations

import math
from pathlib import Path

import click

from steerlab.cli.options import CONTEXT, echo_json


def _direction(value: str) -> tuple[Path, str | None]:
    path, _, key = value.partition(":") if value.count(":") == 1 and not Path(value).exists() else (value, "", "")
    return Path(path), key or None


@click.command(context_settings=CONTEXT)
@click.argument("audio_files", metavar="AUDIO...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-m", "--model", "model_name", default=None, help="Model name (default: the embedded tiny_encodec_24khz).")
@click.option("--checkpoint", type=click.Path(), default=None, help="Local weights for the model (official format for encodec_*).")
@click.option("-l", "--layer", required=True, help="Layer name or alias (see `steerlab layers`).")
@click.option("-d", "--direction", "direction_file", default=None, metavar="FILE[:KEY]", help="Direction from .npy or .safetensors.")
@click.option("-c", "--channel", type=int, default=None, help="Use the unit vector on channel K as the direction.")
@click.option("-a", "--alpha", type=float, default=1.0, help="Strength: added amount, scale factor or clamp value.")
@click.option("--strength-mode", type=click.Choice(["relative", "absolute"]), default="relative",
              help="relative: alpha times the layer's RMS activation norm on that input.")
@click.option("-i", "--intervention", "kind", default="add", help="Intervention type (see `steerlab interventions`).")
@click.option("--start", "start_s", type=float, default=0.0, help="Span start in seconds.")
@click.option("--end", "end_s", type=float, default=None, help="Span end in seconds (default: end of input).")
@click.option("--fade-in", type=int, default=0, help="Fade-in length in frames of the layer.")
@click.option("--fade-out", type=int, default=0, help="Fade-out length in frames of the layer.")
@click.option("-p", "--path", "decode_path", type=click.Choice(["continuous", "quantized"]), default=None,
              help="Decode path [default: continuous, the quantizer bypassed].")
@click.option("--n-q", type=int, default=None, help="Codebooks on the quantized path [default: all].")
@click.option("-t", "--target-hz", type=float, multiple=True, help="Target frequency to score (repeatable).")
@click.option("--no-normalize-direction", is_flag=True, help="Use the direction's own norm instead of a unit vector.")
@click.option("--chunk-s", type=float, default=60.0, help="Inputs longer than this stream in chunks.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def intervene(audio_files, model_name, checkpoint, layer, direction_file, channel, alpha, strength_mode, kind,
              start_s, end_s, fade_in, fade_out, decode_path, n_q, target_hz, no_normalize_direction, chunk_s,
              out_dir, as_json) -> None:
    """Patch LAYER along a direction on each AUDIO file, decode, and score the change.

    Writes OUTDIR/<stem>/baseline.wav, patched.wav, scores.json and spectrogram.png.
    The patched decode is always compared with the baseline decode of the same input.
    """
    from steerlab import api, plugins
    from steerlab.errors import InterventionError, SteerlabError
    from steerlab.interventions import Span, Strength, channel_direction, load_direction
    from steerlab.runner import intervene_files

    if (direction_file is None) == (channel is None):
        raise SteerlabError("give exactly one of --direction FILE or --channel K")
    if not math.isfinite(alpha):
        raise InterventionError(f"--alpha must be a finite number, got {alpha}")
    plugins.interventions().get(kind)
    span = Span(start_s, end_s, fade_in, fade_out)
    strength = Strength(alpha, strength_mode)
    model = api.load_model(model_name, checkpoint)
    layer_info = api.layers(model).get(layer)
    if channel is not None:
        direction = channel_direction(channel, layer_info)
    else:
        direction = load_direction(*_direction(direction_file))
    direction.check_fits(layer_info)
    spec = api.InterventionSpec(layer_info.name, direction, kind, strength, span, decode_path, n_q,
                                not no_normalize_direction)
    with click.progressbar(length=len(audio_files), label="intervene", file=click.get_text_stream("stderr"),
                           show_eta=True) as bar:
        def step(name: str) -> None:
            bar.label = name
            bar.update(1)

        docs = intervene_files(model, audio_files, spec, out_dir, target_hz, chunk_s=chunk_s, progress=step,
                               notify=lambda msg: click.echo(msg, err=True))
    if as_json:
        return echo_json(docs)
    for doc in docs:
        s = doc["scores"].get("spectral", {})
        line = f"{Path(doc['input']['path']).name}: lsd {s.get('lsd_db', float('nan')):.2f} dB"
        for t in s.get("targets", []):
            line += f"; {t['target_hz']:g} Hz gain {t['gain_db']:+.2f} dB conc {t['concentration']:.2f}"
        click.echo(line)
    click.echo(f"wrote {len(docs)} result folder(s) under {out_dir}")


COMMANDS = (intervene,)
