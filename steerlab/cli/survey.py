"""``steerlab survey``: where do the variables live? One row per model and layer, every statistic
beside its chance reference (docs/survey.md)."""

from __future__ import annotations

import dataclasses

import click

from steerlab.cli.options import (
    CONTEXT,
    device_option,
    echo_json,
    json_option,
    models_option,
    output_option,
    setup_compute,
    split_names,
    threads_option,
)


@click.command(context_settings=CONTEXT)
@models_option()
@click.option(
    "--data",
    "data",
    multiple=True,
    help="Audio folder, file or generated set (synth:N) the dictionaries are learned on (repeatable).  "
    "[default: synth:<clips>]",
)
@click.option(
    "-l",
    "--layers",
    "layers",
    multiple=True,
    help="Layers or aliases (repeatable or comma-separated).  "
    "[default: first conv, last conv, latent and quantized codes]",
)
@click.option(
    "--battery",
    "battery",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="A `steerlab steerability -o` run folder whose verdicts fill the battery column (repeatable).",
)
@click.option("-C", "--concept", "concepts", multiple=True, help="Concepts to probe (repeatable).  [default: all]")
@click.option(
    "--quick",
    is_flag=True,
    help="Small settings: 6 clips, 3000 vectors, 2 dictionary seeds, 24 pairs per concept, 30 draws.",
)
@click.option("--seed", type=int, default=0, help="Seed of every draw (recorded).")
@click.option("--clips", type=int, default=None, help="Override: generated clips when no --data.")
@click.option("--max-vectors", type=int, default=None, help="Override: vectors captured per layer.")
@click.option("--epochs", type=int, default=None, help="Override: SAE training epochs.")
@click.option("--pairs", type=int, default=None, help="Override: pairs per concept for the probes.")
@click.option("--draws", type=int, default=None, help="Override: draws of every chance reference.")
@output_option("Report folder (report.json, survey.csv, figures/, index.html); replaced if steerlab wrote it.")
@json_option("Print report.json.")
@device_option()
@threads_option()
def survey(
    model_names,
    data,
    layers,
    battery,
    concepts,
    quick,
    seed,
    clips,
    max_vectors,
    epochs,
    pairs,
    draws,
    output,
    as_json,
    device,
    threads,
) -> None:
    """Where do the variables live? For each model and layer (first conv, last conv, latent and
    quantized codes by default): dictionary coverage, usage, explained variance and seed stability,
    the participation ratio, the narrowband measure of the top features, each concept's linear
    decodability, the battery's verdicts and the architecture's prediction with its rank agreement,
    every statistic beside its chance reference (random directions, shuffled labels, a
    random-weights model) and flagged when it is at chance."""
    from steerlab.survey import FULL, QUICK, SurveyConfig, run_survey, write_report

    setup_compute(device, threads)
    base = QUICK if quick else FULL
    over = {
        k: v
        for k, v in (
            ("clips", clips),
            ("max_vectors", max_vectors),
            ("epochs", epochs),
            ("pairs", pairs),
            ("draws", draws),
        )
        if v is not None
    }
    cfg = SurveyConfig(
        models=tuple(model_names) or (None,),
        data=tuple(data),
        layers=split_names(layers),
        battery=tuple(battery),
        concepts=split_names(concepts),
        quick=quick,
        seed=seed,
        settings=dataclasses.replace(base, **over),
        device=device,
    )
    doc, seconds = run_survey(cfg, progress=lambda m: click.echo(m, err=True))
    write_report(doc, output)
    if as_json:
        from steerlab.artifacts import clean_json

        return echo_json(clean_json(doc, drop_private=True))  # as report.json holds it
    for r in doc["rows"]:
        flags = [k for k in doc["statistics"] if r[k].get("at_chance") is not False]
        pr = r["participation_ratio"]["value"]
        click.echo(
            f"{r['model']:<20} {r['layer']:<16} PR {'null' if pr is None else f'{pr:.2f}'}/{r['layer_info']['channels']} "
            f"coverage {r['coverage']['value'] if r['coverage']['value'] is None else round(r['coverage']['value'], 2)} "
            f"flagged at chance: {', '.join(flags) or 'none'}"
        )
    click.echo(f"wrote {output}/report.json, survey.csv, index.html and figures/ in {sum(seconds.values()):.0f} s")
    return None


COMMANDS = (survey,)
