"""``steerlab partials``: are partials steerable? The batch test with its controls."""

from __future__ import annotations

import functools

import click

from steerlab.cli.options import (
    CONTEXT,
    compute_options,
    echo_json,
    executor_options,
    json_option,
    model_option,
    output_option,
    setup_compute,
    split_names,
)


@click.command(context_settings=CONTEXT)
@model_option()
@click.option(
    "-l",
    "--layers",
    "layers",
    multiple=True,
    help="Layer(s) to sweep (repeatable or comma-separated).  [default: one per encoder frame rate; "
    "--quick: an early layer and the bottleneck]",
)
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file with [grid] [stimuli] [thresholds] [scoring] [controls] [run] (see docs/partials.md).",
)
@click.option(
    "-f",
    "--family",
    "families",
    multiple=True,
    help="Stimulus family to run (repeatable or comma-separated: tone, harmonic, chord, inharmonic, "
    "instrument); overrides [grid] families.",
)
@click.option("--quick", is_flag=True, help="A small grid (about half a minute on two cores).")
@click.option(
    "-D",
    "--dictionary",
    "dictionaries",
    multiple=True,
    help="SAE feature dictionary for one swept layer: a folder from `steerlab learn` or the name of "
    "one shipped with the model (`steerlab dictionaries`); repeatable; enables the 'sae' method there.",
)
@click.option(
    "--sae-data",
    "sae_data",
    type=click.Choice(["corpus", "stimuli", "independent"]),
    default=None,
    help="Data the 'sae' method's dictionaries are learned on: 'corpus' (the --dictionary given; each "
    "control learns one on synth:N) or 'stimuli' (every model, main and controls, learns one per "
    "swept layer on the run's stimuli: its training stimuli and further draws of the same units, "
    "ceil(K ln K) for K latents, never a held-out one; same settings) or 'independent' (as stimuli, "
    "but each clip is a context with every target present independently with probability 0.1, and "
    "as many latents as the layer has channels).  [default: corpus]",
)
@click.option(
    "--seed", type=int, default=None, help="Run seed (null directions, probe frames, bootstrap).  [default: 0]"
)
@click.option("--min-gain-db", type=float, default=None, help="Threshold: gain adding.  [default: 6]")
@click.option("--min-loss-db", type=float, default=None, help="Threshold: loss removing.  [default: 6]")
@click.option(
    "--min-concentration", type=float, default=None, help="Threshold: share of the change in band.  [default: 0.5]"
)
@click.option(
    "--max-offband-db",
    type=float,
    default=None,
    help="Threshold: off-band log-spectral distance (on a pitch salience: the off-band "
    "log-salience distance, docs/partials.md).  [default: 1]",
)
@click.option("--min-share", type=float, default=None, help="Threshold: share of held-out stimuli.  [default: 0.8]")
@output_option("Run folder (rerun with the same arguments to resume).", dest="out_dir", file_okay=True)
@executor_options()
@json_option("Print the verdict summary as JSON.")
@compute_options
def partials(
    model_name,
    layers,
    families,
    config_file,
    quick,
    dictionaries,
    sae_data,
    seed,
    min_gain_db,
    min_loss_db,
    min_concentration,
    max_offband_db,
    min_share,
    out_dir,
    executor,
    address,
    as_json,
    device,
    threads,
) -> None:
    """Batch test: can single partials be created and deleted by steering each layer?

    Learns directions (difference of means, SAE feature, probe, and a norm-matched
    random null) on training stimuli, patches held-out ones (add to without-target,
    subtract/ablate from with-target) over strengths and decode paths, scores the
    change at the target, and writes results.jsonl, summary.csv, figures/ and
    report.html to OUTPUT, with the positive-control model and the null beside
    every verdict. Killed runs resume when rerun with the same arguments.
    """
    from steerlab import partials as p

    setup_compute(device, threads)

    thresholds = {
        k: v
        for k, v in dict(
            min_gain_db=min_gain_db,
            min_loss_db=min_loss_db,
            min_concentration=min_concentration,
            max_offband_db=max_offband_db,
            min_share=min_share,
        ).items()
        if v is not None
    }
    overrides = {
        "thresholds": thresholds,
        "grid": {
            **({"layers": split_names(layers)} if layers else {}),
            **({"families": split_names(families)} if families else {}),
            **({"sae_data": sae_data} if sae_data else {}),
        },
        "run": {k: v for k, v in (("model", model_name), ("seed", seed)) if v is not None},
    }
    cfg = p.build(config_file, quick, overrides)

    from steerlab.cli.progress import progress
    from steerlab.executors import make_executor

    runner = make_executor(executor, address)
    try:
        outcome, out = p.run(
            cfg,
            out_dir,
            quick,
            dictionaries,
            bar=functools.partial(progress, every=None),  # the first line only off a terminal
            notify=lambda m: click.echo(m, err=True),
            device=device,
            executor=runner,
        )
    finally:
        runner.close()
    ctrl = out["controls"]
    if as_json:
        return echo_json(
            {
                "folder": str(outcome.folder),
                "config_hash": outcome.config_hash,
                "rows": len(outcome.rows),
                "written": outcome.written,
                "controls": ctrl,
                "agreement": out["agreement"],
                "verdicts": [v.flat() for v in out["verdicts"]],
            }
        )
    vs = out["verdicts"]
    val = ctrl["validation"]
    for plan in outcome.plans:
        for method, removal in dict.fromkeys((v.method, v.removal) for v in vs):
            for path in plan.paths:
                sel = [
                    v
                    for v in vs
                    if v.model == plan.model.name and v.method == method and v.path == path and v.removal == removal
                ]
                if sel:
                    st = val.get(f"{method}/{removal}", {}).get("status", "")
                    tag = plan.role if plan.role != "main" else st
                    click.echo(
                        f"{plan.model.name:<20} {path:<11} {method:<10} {removal:<9} steerable "
                        f"{sum(v.steerable for v in sel)}/{len(sel)}  [{tag}]"
                    )
    click.echo(
        f"null steerable {ctrl['null_steerable']}/{ctrl['null_total']} ({'ok' if ctrl['null_ok'] else 'FAIL'}); "
        f"positive controls {ctrl['positive_steerable']}/{ctrl['positive_total']} learned-direction verdicts "
        f"steerable ({'ok' if ctrl['positive_ok'] else outcome.control_status.get('positive')}); "
        f"oracle {ctrl['oracle_steerable']}/{ctrl['oracle_total']}"
    )
    bad = [k for k, v in val.items() if v["status"] in ("not validated", "unchecked")]
    if bad:
        click.echo(
            "not validated or unchecked (their verdicts are not measurements): "
            + ", ".join(
                f"{k} ({val[k]['status']}: "
                + (
                    "; ".join(
                        f"{c} {p['status']} {p['steerable']}/{p['total']}"
                        for c, p in val[k].get("by_control", {}).items()
                    )
                    or val[k].get("reason")  # no control ran: why, not an empty list
                )
                + ")"
                for k in bad
            )
        )
    click.echo(
        f"wrote {outcome.written} new rows ({len(outcome.rows)} in all) and the report to "
        f"{outcome.folder / 'report.html'}"
    )


@click.command("partials-compare", context_settings=CONTEXT)
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@output_option("Folder for side_by_side.png/.svg, report.md and report.json.", dest="out_dir")
@json_option("Print report.json's cells as JSON.")
def partials_compare(run_dirs, out_dir, as_json) -> None:
    """Put finished `steerlab partials` runs side by side (e.g. the codec against CREPE).

    Per model, layer, path and family: the share of units steerable per method and removal,
    marked as each run's positive controls mark it (validated, not validated, unchecked), beside
    the oracle and the architecture's prediction; a figure (PNG, SVG), report.md and report.json
    (every number, the command line and the sha256 of every input file) in OUTPUT.
    """
    import sys

    from steerlab.partials.compare import FIGURE, REPORT_JSON, REPORT_MD, compare

    doc = compare(run_dirs, out_dir, argv=["steerlab", *sys.argv[1:]])
    if as_json:
        return echo_json({k: doc[k] for k in ("runs", "columns", "cells")})
    for c in doc["cells"]:
        share = f"{c['steerable']}/{c['units']}" if c["finding"] else "no finding"
        click.echo(
            f"{c['model']:<20} {c['layer']:<15} {c['path']:<11} {c['family']:<11} {c['column']:<19} "
            f"{share:<10} [{c['status']}]"
        )
    click.echo(f"wrote {FIGURE}.png, {FIGURE}.svg, {REPORT_MD} and {REPORT_JSON} to {out_dir}")


COMMANDS = (partials, partials_compare)
