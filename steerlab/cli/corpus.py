"""``steerlab corpus render|clips``: build folders of real and rendered audio with a manifest."""

from __future__ import annotations

import click

from steerlab.cli import SteerlabGroup
from steerlab.cli.options import CONTEXT, echo_json, json_option, output_option, skip_bad_files_option


# a SteerlabGroup, so an error names the flags of the subcommand that ran (steerlab.cli.errors)
@click.group(cls=SteerlabGroup, context_settings=CONTEXT)
def corpus() -> None:
    """Build audio corpora: rendered General MIDI instruments, or clips of long real recordings."""


@corpus.command(context_settings=CONTEXT)
@output_option("Folder for WAVs and manifest.json.", dest="output_dir", aliases=("--output-dir",))
@click.option("-n", "--count", type=int, default=200, help="Clips to render.")
@click.option("-s", "--seed", type=int, default=0, help="Seed of the scores (clip i uses default_rng([seed, i])).")
@click.option(
    "-k",
    "--kind",
    "kinds",
    multiple=True,
    default=("note", "interval", "chord", "melody", "drums"),
    help="Clip kind (repeatable): note, interval, chord, melody, drums; clip i is kinds[i % len].",
)
@click.option("--seconds", type=float, default=2.0, help="Length of every clip.")
@click.option("-r", "--sample-rate", type=int, default=24_000, help="Sample rate in Hz.")
@click.option(
    "--soundfont",
    type=click.Path(dir_okay=False),
    default=None,
    help="SoundFont (.sf2). Default: TimGM6mb.sf2 from the pretty_midi package.",
)
@click.option(
    "-p",
    "--program",
    "programs",
    multiple=True,
    type=int,
    help="Restrict pitched clips to these General MIDI programs, 0-127 (repeatable).",
)
@json_option("Print the manifest's summary as JSON.")
def render(output_dir, count, seed, kinds, seconds, sample_rate, soundfont, programs, as_json) -> None:
    """Render notes, intervals, chords, melodies and drums of GM instruments, with exact MIDI ground truth."""
    from steerlab.corpus import render_corpus

    doc = render_corpus(
        output_dir,
        count,
        seed,
        kinds=tuple(kinds),
        seconds=seconds,
        sample_rate=sample_rate,
        soundfont=soundfont,
        programs=tuple(programs) or None,
        log=lambda m: click.echo(m, err=True),
    )
    _summary(doc, output_dir, as_json)


@corpus.command(context_settings=CONTEXT)
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@output_option("Folder for WAVs and manifest.json.", dest="output_dir", aliases=("--output-dir",))
@click.option(
    "-n",
    "--count",
    type=int,
    default=100,
    help="Clips to cut, exactly: one per file, the rest shared by length (fewer clips than files: files drawn by length with --seed); quiet draws are redrawn.",
)
@click.option("-s", "--seed", type=int, default=0, help="Seed of the offsets.")
@click.option("--seconds", type=float, default=3.0, help="Length of every clip.")
@click.option("-r", "--sample-rate", type=int, default=24_000, help="Sample rate in Hz (clips are mono).")
@click.option("--min-level-db", type=float, default=-45.0, help="Skip clips quieter than this RMS level (dBFS).")
@skip_bad_files_option(
    "Skip unreadable, empty or NaN files (listed in the manifest) instead of failing before any clip."
)
@json_option("Print the manifest's summary as JSON.")
def clips(sources, output_dir, count, seed, seconds, sample_rate, min_level_db, skip_bad_files, as_json) -> None:
    """Cut clips of SOURCES (audio files or folders: MP3, OGG, FLAC, WAV) for use as data."""
    from steerlab.corpus import clip_corpus

    doc = clip_corpus(
        list(sources),
        output_dir,
        count,
        seed,
        seconds=seconds,
        sample_rate=sample_rate,
        min_level_db=min_level_db,
        log=lambda m: click.echo(m, err=True),
        skip_bad_files=skip_bad_files,
    )
    _summary(doc, output_dir, as_json)


def _summary(doc: dict, output_dir: str, as_json: bool) -> None:
    keep = {k: v for k, v in doc.items() if k not in ("clips", "provenance")}
    if as_json:
        return echo_json(keep)
    click.echo(f"wrote {len(doc['clips'])} clips and manifest.json to {output_dir}")


COMMANDS = (corpus,)
