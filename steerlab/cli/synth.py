"""``steerlab synth``: write clips of the project's synthetic music corpus."""

from __future__ import annotations

import click

from steerlab.cli.options import CONTEXT


@click.command(context_settings=CONTEXT)
@click.argument("output", type=click.Path(dir_okay=False))
@click.option(
    "-k", "--kind", default="chord", help="tone, harmonic, chord, melody, noise_burst, percussion or mixture."
)
@click.option("-s", "--seed", type=int, default=0, help="Seed (the clip is a pure function of kind and seed).")
@click.option("--seconds", type=float, default=2.0, help="Duration.")
@click.option("--sample-rate", type=int, default=24_000, help="Sample rate in Hz.")
def synth(output: str, kind: str, seed: int, seconds: float, sample_rate: int) -> None:
    """Write one synthetic clip (float WAV) to OUTPUT."""
    from pathlib import Path

    from steerlab import audio
    from steerlab.errors import SteerlabError
    from steerlab.synth import ClipSpec, synthesize

    try:
        spec = ClipSpec(kind, seed, sample_rate, seconds)
    except SteerlabError:
        raise  # its parameter names the flag (cli/errors.py)
    except ValueError as exc:
        raise SteerlabError(str(exc)) from None
    audio.check_writable_dir(Path(output).resolve().parent)
    audio.write_wav(output, synthesize(spec)[None], sample_rate)
    click.echo(f"wrote {output} ({kind}, seed {seed}, {seconds:g} s at {sample_rate} Hz)")


COMMANDS = (synth,)
