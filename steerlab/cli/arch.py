"""``steerlab arch``: which partials can survive to each layer, from strides and kernels alone."""

from __future__ import annotations

import click

from steerlab.cli.options import CONTEXT, checkpoint_option, density_option, echo_json, json_option, model_option


def _hz(x: float) -> str:
    return f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def _mark(p) -> str:
    if p.infeasible:
        return "x"
    if not p.survives:
        return "-"
    return "+" if p.survives_path else "r"


def _table(report) -> None:
    m = report.mixture
    ctx = {
        "inharmonic": f"band {m.band_low_hz:g}-{m.band_high_hz:g} Hz",
        "harmonic": f"f0 {m.f0} Hz",
        "chord": f"{m.chord} on {m.f0} Hz",
        "tone": "no mixture",
        "instrument": "rendered General MIDI notes (context: harmonics of the seed's notes)",
    }[m.family]
    click.echo(
        f"model {report.model} ({report.sample_rate} Hz); {m.family} mixture, {ctx}, "
        f"min separation {m.min_separation_hz:g} Hz; densities {' '.join(map(str, report.densities))}"
    )
    click.echo(
        "per target: alias (Hz) at the layer's rate, then per density: + survives as an oscillation, "
        "r the layer could hold it but it was above an earlier Nyquist (re-synthesised, not carried), "
        "- does not, x infeasible stimulus"
    )
    width = max(8 + 1 + len(report.densities), 10)
    name_w = max([22] + [len(lp.layer.name) + 1 for lp in report.layers])  # a long name never meets the rate
    head = f"{'layer':<{name_w}}{'rate Hz':>9}{'Nyq Hz':>9}{'lobe Hz':>10} "
    click.echo(head + "".join(f"{_hz(f) + ' Hz':>{width + 1}}" for f in report.targets_hz))
    n_d = len(report.densities)
    for lp in report.layers:
        lobe = _hz(lp.main_lobe_hz) + ("*" if lp.main_lobe_upper_bound else " ")
        row = f"{lp.layer.name:<{name_w}}{_hz(lp.layer.frame_rate):>9}{_hz(lp.layer.nyquist_hz):>9}{lobe:>10} "
        for i in range(len(report.targets_hz)):
            preds = lp.predictions[i * n_d : (i + 1) * n_d]
            cell = f"{_hz(preds[0].aliased_to):>8} " + "".join(_mark(p) for p in preds)
            row += f"{cell:>{width + 1}}"
        click.echo(row)
    for note in dict.fromkeys(lp.layer.context_note for lp in report.layers if lp.main_lobe_upper_bound):
        click.echo(f"* {note}. So the lobe is an upper bound: the receptive field bounds the filter length from below")


@click.command(context_settings=CONTEXT)
@model_option()
@checkpoint_option()
@click.option("--random-init", is_flag=True, help="Architecture only, random weights (no weights file needed).")
@click.option(
    "-t",
    "--targets-hz",
    "targets",
    multiple=True,
    type=float,
    help="Target partial in Hz (repeatable).  [default: 8 log-spaced from 100 to 4000, as steerlab stimuli]",
)
@density_option()
@click.option(
    "-f", "--family", default="inharmonic", help="Mixture family: tone, harmonic, chord, inharmonic, instrument."
)
@click.option(
    "--f0", type=float, default=None, help="Fundamental / chord root in Hz for harmonic and chord.  [default: 110]"
)
@click.option("--chord", default="major", help="Chord shape for family chord.")
@click.option(
    "--band",
    type=(float, float),
    default=None,
    metavar="LO HI",
    help="Frequency band of inharmonic partials in Hz.  [default: 50 to 8000, or to 0.45 fs when lower]",
)
@click.option(
    "--min-separation-hz", type=float, default=30.0, help="Least distance of mixture partials from the target."
)
@json_option("Everything, machine-readable.")
def arch(
    model_name: str | None,
    checkpoint: str | None,
    random_init: bool,
    targets: tuple[float, ...],
    densities: tuple[int, ...],
    family: str,
    f0: float | None,
    chord: str,
    band: tuple[float, float] | None,
    min_separation_hz: float,
    as_json: bool,
) -> None:
    """Predict from strides and kernels alone which partials can survive to each layer.

    Per layer: frame rate, Nyquist, the main-lobe width fs/N of a filter as long as
    the receptive field; per target: where it aliases to, and per density whether it
    can exist there as its own oscillation (below Nyquist, resolvable from its
    neighbours, no aliased neighbour on top of it). Definitions: steerlab/arch.py.
    """
    from steerlab import api
    from steerlab.arch import Mixture, predict
    from steerlab.cli.stimuli import DEFAULT_GRID
    from steerlab.stimuli import log_grid

    model = api.load_model(model_name, checkpoint, random_init=random_init)
    # the default band must stay below the model's Nyquist (8 kHz is Nyquist itself at 16 kHz)
    band = band or (50.0, min(8000.0, 0.45 * model.sample_rate))
    mixture = Mixture(family, f0, chord, band[0], band[1], min_separation_hz)
    report = predict(list(api.layers(model)), targets or log_grid(*DEFAULT_GRID), densities, mixture, model.name)
    if as_json:
        return echo_json(report.to_json())
    _table(report)


COMMANDS = (arch,)
