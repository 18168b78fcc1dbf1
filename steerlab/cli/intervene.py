"""``steerlab intervene``: patch a layer along a direction, decode, score, write.

The direction comes from a file (``--direction``), a channel (``--channel``) or a
learned dictionary (``--feature DICT:ID``, ``--archetype DICT:ID``); types that
need more than a direction get their options from ``--source`` (patch),
``--reference`` (mean-ablate), ``--feature`` (feature-clamp) and ``--opt KEY VALUE``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from steerlab.cli.options import (
    CONTEXT,
    allow_weights_mismatch_option,
    checkpoint_option,
    compute_options,
    echo_json,
    json_option,
    model_option,
    output_option,
    setup_compute,
)


def _direction(value: str) -> tuple[Path, str | None]:
    path, _, key = value.partition(":") if value.count(":") == 1 and not Path(value).exists() else (value, "", "")
    return Path(path), key or None


def _option_value(text: str) -> Any:
    """``--opt`` values: whole numbers and decimals as numbers, the rest as text."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _summary_line(doc: dict) -> str:
    name = Path(doc["input"]["path"]).name
    if "classification" in doc["scores"]:
        c = doc["scores"]["classification"]
        b, a = c["top_before"], c["top_after"]
        return (
            f"{name}: top class {b['class']} ({b['prob']:.2f}) -> {a['class']} ({a['prob']:.2f}); "
            f"KL {c['kl_divergence']:.3g} nats; spectral scores do not apply (no decoder)"
        )
    if doc.get("output") and "spectral" not in doc["scores"]:  # an output space of its own (pitch salience)
        s: dict = next(iter(doc["scores"].values()), {})
        line = f"{name}: {doc['output']}: rms change {s.get('rms_change', float('nan')):.3g}"
        for t in s.get("targets", []):
            conc = "n/a" if t.get("concentration") is None else f"{t['concentration']:.2f}"
            line += (
                f"; {t['target_hz']:g} Hz not scored ({t.get('reason')})"
                if t.get("gain_db") is None
                else f"; {t['target_hz']:g} Hz gain {t['gain_db']:+.2f} dB conc {conc}"
            )
        return line
    s = doc["scores"].get("spectral", {})
    parts = [] if s.get("lsd_db") is None else [f"lsd {s['lsd_db']:.2f} dB"]
    for t in s.get("targets", []):
        if t.get("gain_db") is None:
            parts.append(f"{t['target_hz']:g} Hz not scored ({t.get('unresolved') or 'not resolved'})")
        else:
            conc = "n/a" if t.get("concentration") is None else f"{t['concentration']:.2f}"
            parts.append(f"{t['target_hz']:g} Hz gain {t['gain_db']:+.2f} dB conc {conc}")
    parts += _not_scored(s)
    fidelity = doc.get("fidelity") or {}
    if (
        fidelity.get("si_sdr_db") is not None
    ):  # how well the model reproduces this input at all: context for every score
        parts.append(f"model fidelity SI-SDR {fidelity['si_sdr_db']:.1f} dB")
    elif fidelity:
        parts.append(f"fidelity not measured ({fidelity.get('reason') or 'no reason given'})")
    line = f"{name}: " + "; ".join(parts)
    flags = (doc.get("output_check") or {}).get("flags")
    if flags:
        line += f"; WARNING: {', '.join(flags)} (see output_check in scores.json)"
    return line


# the overall spectral numbers, as the summary line names them
_SHORT_NAMES = {
    "lsd_db": "lsd",
    "concentration": "concentration",
    "offband_lsd_db": "off-band lsd",
    "mrstft": "mrstft",
    "centroid_shift_hz": "centroid shift",
    "flatness_shift": "flatness shift",
    "bandwidth_shift_hz": "bandwidth shift",
}


def _not_scored(scores: dict) -> list[str]:
    """``"X, Y not scored (reason)"`` for every null top-level number of a scorer's dict, grouped by
    reason (the scorer writes the reason beside it as ``X_reason``)."""
    by_reason: dict[str, list[str]] = {}
    for key, value in scores.items():
        if value is None and not key.endswith("_reason"):
            reason = scores.get(f"{key}_reason") or "no reason given"
            by_reason.setdefault(reason, []).append(_SHORT_NAMES.get(key, key))
    return [f"{', '.join(names)} not scored ({reason})" for reason, names in by_reason.items()]


@contextmanager
def _progress(total: int) -> Iterator[Callable[[str], None]]:
    """A progress bar on a terminal; elsewhere (a log, a pipe) one plain line per input,
    ``intervene 1/2: NAME``, instead of the bar's bare labels."""
    err = sys.stderr  # (click.get_text_stream is deprecated since click 8.5)
    if not err.isatty():
        done = [0]

        def line(name: str) -> None:
            done[0] += 1
            click.echo(f"intervene {done[0]}/{total}: {name}", err=True)

        yield line
        return
    with click.progressbar(length=total, label="intervene", file=err, show_eta=True) as bar:

        def step(name: str) -> None:
            bar.label = name
            bar.update(1)

        yield step


@click.command(context_settings=CONTEXT)
@click.argument("audio_files", metavar="AUDIO...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@model_option()
@checkpoint_option("Local weights for the model (official format for encodec_*).")
@click.option("-l", "--layer", required=True, help="Layer name or alias (see `steerlab layers`).")
@click.option(
    "-d",
    "--direction",
    "direction_file",
    default=None,
    metavar="FILE[:KEY]",
    help="Direction from .npy or .safetensors.",
)
@click.option("-c", "--channel", type=int, default=None, help="Use the unit vector on channel K as the direction.")
@click.option(
    "--feature",
    "feature",
    default=None,
    metavar="DICT:ID",
    help="Feature ID of a feature dictionary (steerlab learn features): its decoder direction; "
    "with -i feature-clamp, the feature to clamp.",
)
@click.option(
    "--archetype",
    "archetype",
    default=None,
    metavar="DICT:ID",
    help="Archetype ID of an archetype dictionary (steerlab learn archetypes); implies -i archetype.",
)
@click.option(
    "--source",
    "source",
    default=None,
    type=click.Path(dir_okay=False),
    help="Source audio whose activations replace the input's (-i patch).",
)
@click.option(
    "--reference",
    "reference",
    multiple=True,
    metavar="SPEC",
    help="Reference set for -i mean-ablate: folder, audio file, synth:N, noise:N, flat:N, sines:N (repeatable).",
)
@click.option(
    "--opt",
    "opts",
    multiple=True,
    nargs=2,
    metavar="KEY VALUE",
    help="Option of the intervention type (repeatable; see `steerlab interventions`).",
)
@click.option("-a", "--alpha", type=float, default=1.0, help="Strength: added amount, scale factor or clamp value.")
@click.option(
    "--strength-mode",
    type=click.Choice(["relative", "absolute"]),
    default="relative",
    help="relative: alpha times the layer's RMS activation norm on that input "
    "(for -i archetype, the RMS norm of its steps r_{t+1} - r_t).",
)
@click.option(
    "-i",
    "--intervention",
    "intervention",
    default=None,
    help="Intervention type (see `steerlab interventions`) [default: add; archetype with --archetype].",
)
@click.option("--start", "start_s", type=float, default=0.0, help="Span start in seconds.")
@click.option("--end", "end_s", type=float, default=None, help="Span end in seconds (default: end of input).")
@click.option(
    "--fade-in",
    type=int,
    default=None,
    help="Fade-in length in frames of the layer [default: 10 ms at the layer's frame rate; 0: abrupt].",
)
@click.option(
    "--fade-out",
    type=int,
    default=None,
    help="Fade-out length in frames of the layer [default: 10 ms at the layer's frame rate; 0: abrupt].",
)
@click.option(
    "-p",
    "--path",
    "decode_path",
    default=None,
    help="Decode path: continuous or quantized for codecs, or one the model lists "
    "[default: the model's own; continuous (quantizer bypassed) for codecs].",
)
@click.option(
    "--model-option",
    "model_opts",
    multiple=True,
    nargs=2,
    metavar="KEY VALUE",
    help="Option of the model's loader (repeatable), e.g. tokenlm_24khz sampling: n_frames, seed.",
)
@click.option("--n-q", type=int, default=None, help="Codebooks on the quantized path [default: all].")
@click.option("-t", "--target-hz", type=float, multiple=True, help="Target frequency to score (repeatable).")
@click.option("--no-normalize-direction", is_flag=True, help="Use the direction's own norm instead of a unit vector.")
@click.option("--chunk-s", type=float, default=60.0, help="Inputs longer than this stream in chunks.")
@allow_weights_mismatch_option(
    "With --feature/--archetype: use the dictionary even if the model's weights differ from those it was learned "
    "on, or are not known (a dictionary imported from SAELens records none)."
)
@output_option("Output directory.", dest="out_dir")
@json_option("Print the scores as JSON.")
@compute_options
def intervene(
    audio_files,
    model_name,
    checkpoint,
    layer,
    direction_file,
    channel,
    feature,
    archetype,
    source,
    reference,
    opts,
    alpha,
    strength_mode,
    intervention,
    start_s,
    end_s,
    fade_in,
    fade_out,
    decode_path,
    model_opts,
    n_q,
    target_hz,
    no_normalize_direction,
    chunk_s,
    allow_weights_mismatch,
    out_dir,
    as_json,
    device,
    threads,
) -> None:
    """Patch LAYER along a direction on each AUDIO file, decode, and score the change.

    Writes OUTDIR/<stem>/baseline.wav, patched.wav, scores.json and spectrogram.png
    (for a model without a decoder: scores.json with class probabilities, and
    probabilities.png). The patched output is always compared with the baseline
    output of the same input.
    """
    from steerlab import api, plugins
    from steerlab.errors import InterventionError, SteerlabError
    from steerlab.interventions import Span, Strength, channel_direction, load_direction, needs_direction
    from steerlab.runner import check_input_paths, default_fade_frames, intervene_files

    check_input_paths(audio_files)  # every AUDIO argument, before the model loads or any file decodes
    setup_compute(device, threads)
    if intervention is None:
        intervention = "archetype" if archetype is not None else "add"
    itype = plugins.interventions().get(intervention)
    given = [
        name
        for name, value in (
            ("--direction", direction_file),
            ("--channel", channel),
            ("--feature", feature),
            ("--archetype", archetype),
        )
        if value is not None
    ]
    if len(given) > 1 or (not given and needs_direction(itype)):
        raise SteerlabError(
            "give exactly one of --direction FILE or --channel K (or --feature/--archetype DICT:ID)"
            + (f"; got {' and '.join(given)}" if given else f"; {intervention} needs a direction")
        )
    if intervention == "feature-clamp" and feature is None:
        raise SteerlabError(
            "-i feature-clamp needs the feature to clamp: give --feature DICT:ID"
            + (f" instead of {given[0]}" if given else "")
        )
    if source is not None and intervention != "patch":
        raise SteerlabError(
            f"--source is the source audio of -i patch, not of -i {intervention}; add -i patch or drop --source"
        )
    if reference and intervention != "mean-ablate":
        raise SteerlabError(
            f"--reference is the reference set of -i mean-ablate, not of -i {intervention}; "
            "add -i mean-ablate or drop --reference"
        )
    if not math.isfinite(alpha):
        raise InterventionError(f"--alpha must be a finite number, got {alpha}")
    options: dict[str, Any] = {key: _option_value(value) for key, value in opts}
    Span(start_s, end_s, fade_in or 0, fade_out or 0)  # checks the span before the model loads
    strength = Strength(alpha, strength_mode)
    model = api.load_model(model_name, checkpoint, device=device, **dict(model_opts))
    if decode_path is not None:
        model.check_path(decode_path)
    layer_info = api.layers(model).get(layer)
    default_fade = default_fade_frames(layer_info)
    span = Span(
        start_s, end_s, default_fade if fade_in is None else fade_in, default_fade if fade_out is None else fade_out
    )
    direction = None
    if channel is not None:
        direction = channel_direction(channel, layer_info)
    elif direction_file is not None:
        direction = load_direction(*_direction(direction_file))
    elif feature is not None or archetype is not None:
        target = "feature" if feature is not None else "archetype"
        learned = api.learned_direction(
            feature or archetype, model, layer_info.name, target, allow_weights_mismatch=allow_weights_mismatch
        )
        direction = learned.direction
        if intervention == "feature-clamp":
            options.update(dictionary=learned.ref, feature=learned.latent)
    if direction is not None:
        direction.check_fits(layer_info)
    if source is not None:
        options["source"] = source
    if reference:
        options["reference"] = list(reference)
    spec = api.InterventionSpec(
        layer=layer_info.name,
        direction=direction,
        intervention=intervention,
        strength=strength,
        span=span,
        path=decode_path,
        n_q=n_q,
        normalize_direction=not no_normalize_direction,
        options=options,
    )
    with _progress(len(audio_files)) as step:
        docs = intervene_files(
            model,
            audio_files,
            spec,
            out_dir,
            target_hz,
            chunk_s=chunk_s,
            progress=step,
            notify=lambda msg: click.echo(msg, err=True),
        )
    if as_json:
        return echo_json(docs)
    for doc in docs:
        click.echo(_summary_line(doc))
    click.echo(f"wrote {len(docs)} result folder(s) under {out_dir}")


COMMANDS = (intervene,)
