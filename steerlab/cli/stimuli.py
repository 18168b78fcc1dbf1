"""``steerlab stimuli``: write the matched stimulus pairs of the partial-steerability test."""

from __future__ import annotations

import click

from steerlab.cli.options import CONTEXT, density_option, echo_json, json_option, output_option

DEFAULT_GRID = (100.0, 4000.0, 8)


def _snr(text: str) -> float | None:
    from steerlab.stimuli import StimulusError

    if text.strip().lower() in ("none", "inf", "clean"):
        return None
    try:
        return float(text)
    except ValueError:
        raise StimulusError(f"--snr-db must be a number in dB or 'none', got {text!r}") from None


def _context(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # a rule name; StimulusSpec checks it


@click.command(context_settings=CONTEXT)
@output_option("Folder for WAVs and manifest.csv.", dest="output_dir", aliases=("--output-dir",))
@click.option(
    "-f",
    "--family",
    "families",
    multiple=True,
    default=("tone", "harmonic", "chord", "inharmonic"),
    help="Stimulus family (repeatable): tone, harmonic, chord, inharmonic, instrument (rendered "
    "General MIDI notes, the nearest MIDI note to each target; needs steerlab[render]).",
)
@click.option(
    "-t",
    "--targets-hz",
    "targets",
    multiple=True,
    type=float,
    help="Target partial in Hz (repeatable). Default: the --grid.",
)
@click.option(
    "-g",
    "--grid",
    type=(float, float, int),
    default=None,
    metavar="FMIN FMAX N",
    help="N log-spaced targets from FMIN to FMAX Hz.  [default: 100 4000 8]",
)
@density_option()
@click.option(
    "--f0",
    "f0s",
    multiple=True,
    type=float,
    default=(110.0, 220.0),
    help="Fundamental / chord root in Hz for harmonic and chord (repeatable).",
)
@click.option("--chord", default="major", help="Chord shape: major, minor, major7, minor7, sus4.")
@click.option("-s", "--seeds", type=click.IntRange(min=1), default=3, help="Seeds 0..N-1 per combination.")
@click.option("--duration", type=float, default=1.0, help="Seconds per stimulus.")
@click.option(
    "--snr-db",
    "snrs",
    multiple=True,
    default=("none",),
    help="White-noise SNR in dB against the without-target mixture (repeatable; 'none' = clean).",
)
@click.option("-r", "--sample-rate", type=int, default=24_000, help="Sample rate in Hz.")
@click.option("-a", "--amplitude", type=float, default=0.1, help="Linear amplitude of the target partial.")
@click.option(
    "--context-amplitude",
    default="match",
    help="Per-partial mixture amplitude: a number, or a rule (match, rolloff, random).",
)
@click.option("--phase", default="random", help="Phase policy: random or zero.")
@click.option("--fade-ms", type=float, default=10.0, help="Raised-cosine fade in and out.")
@click.option(
    "--margin-s",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds of silence before and after each sound (both signals).",
)
@click.option(
    "--min-separation-hz", type=float, default=30.0, help="Least distance of mixture partials from the target."
)
@click.option(
    "--band",
    type=(float, float),
    default=(50.0, 8000.0),
    metavar="LO HI",
    help="Frequency band of inharmonic partials in Hz.",
)
@json_option("Print a JSON summary instead of text.")
def stimuli(
    output_dir: str,
    families: tuple[str, ...],
    targets: tuple[float, ...],
    grid: tuple[float, float, int] | None,
    densities: tuple[int, ...],
    f0s: tuple[float, ...],
    chord: str,
    seeds: int,
    duration: float,
    snrs: tuple[str, ...],
    sample_rate: int,
    amplitude: float,
    context_amplitude: str,
    phase: str,
    fade_ms: float,
    margin_s: float,
    min_separation_hz: float,
    band: tuple[float, float],
    as_json: bool,
) -> None:
    """Write matched stimulus pairs (without / with a target partial) and manifest.csv to a folder.

    Every combination of family, target, density, f0, seed and SNR becomes
    <key>_without.wav and <key>_with.wav (float WAV, same seed, same mixture and
    noise); combinations that cannot keep the mixture clear of the target are skipped
    and counted.
    """
    from steerlab import stimuli as st

    if targets and grid is not None:
        raise st.StimulusError("give either --targets-hz or --grid, not both")
    target_list = list(targets) if targets else st.log_grid(*(grid or DEFAULT_GRID))
    specs = st.design(
        families,
        target_list,
        densities,
        f0s,
        range(seeds),
        snrs=[_snr(s) for s in snrs],
        chord=chord,
        sample_rate=sample_rate,
        duration_s=duration,
        amplitude=amplitude,
        context_amplitude=_context(context_amplitude),
        phase=phase,
        fade_ms=fade_ms,
        margin_s=margin_s,
        min_separation_hz=min_separation_hz,
        band_low_hz=band[0],
        band_high_hz=band[1],
    )
    from steerlab.cli.options import progressbar

    with progressbar(len(specs), "stimuli", show_eta=True) as bar:  # a plain line when stderr is not a terminal
        manifest = st.write_set(specs, output_dir, progress=lambda _spec: bar.update(1))
    if as_json:
        return echo_json(
            {
                "output_dir": output_dir,
                "manifest": str(manifest),
                "pairs": len(specs),
                "wav_files": 2 * len(specs),
                "skipped": specs.skipped,
            }
        )
    click.echo(f"wrote {len(specs)} pairs ({2 * len(specs)} WAV files) and {manifest}")
    if specs.skipped:
        reasons = "; ".join(f"{reason}: {count}" for reason, count in specs.skipped.items())
        click.echo(f"skipped {specs.n_skipped} infeasible combinations ({reasons})")


COMMANDS = (stimuli,)
