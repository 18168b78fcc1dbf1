"""``steerlab steerability``: which musical concepts can a model's layers steer? The battery,
with a positive control, the null and the oracle beside every verdict (docs/steerability.md)."""

from __future__ import annotations

from typing import Any

import click

from steerlab.cli.options import (
    CONTEXT,
    device_option,
    echo_json,
    executor_options,
    json_option,
    model_option,
    output_option,
    setup_compute,
    split_names,
    threads_option,
)

VARIANT = "variant"  # a table's stimulus variant, present where not synthetic


@click.command(context_settings=CONTEXT)
@model_option()
@click.option(
    "-C",
    "--concept",
    "concepts",
    multiple=True,
    help="Concept(s) to test (repeatable or comma-separated; `steerlab concepts` lists them).  [default: all]",
)
@click.option(
    "-l",
    "--layers",
    "layers",
    multiple=True,
    help="Layer(s) of the model to steer (repeatable or comma-separated).  [default: as steerlab partials]",
)
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A `steerlab partials` TOML file: its [grid] strengths/methods/paths, [stimuli] seeds, [controls] "
    "positive_models and [run] settings apply to every concept (docs/steerability.md).",
)
@click.option("--quick", is_flag=True, help="The small grid of `steerlab partials --quick`, short sounds.")
@click.option(
    "--stimuli",
    type=click.Choice(["synthetic", "instrument", "both"]),
    default="synthetic",
    show_default=True,
    help="The pairs' sounds: sums of sinusoids, General MIDI notes rendered from a SoundFont (the render "
    "extra; OUT/<concept>-instrument/), or both. partial keeps its [grid] families.",
)
@click.option(
    "-D",
    "--dictionary",
    "dictionaries",
    multiple=True,
    help="SAE feature dictionary for one swept layer (a `steerlab learn` folder or a shipped name); "
    "repeatable; enables the 'sae' method there (each positive control then learns its own "
    "dictionary on the synthetic corpus, cached in the run folder, to validate it).",
)
@output_option("Run folder: one subfolder per concept; rerun with the same arguments to resume.", dest="out_dir")
@executor_options()
@json_option("Print steerability.json (every verdict with its control, null, oracle and validation).")
@device_option()
@threads_option()
def steerability(
    model_name,
    concepts,
    layers,
    config_file,
    quick,
    stimuli,
    dictionaries,
    out_dir,
    executor,
    address,
    as_json,
    device,
    threads,
) -> None:
    """The steerability battery: for each concept (partial, note, chord-quality, brightness, onset,
    loudness, and those plugins add), learn directions of its change at each layer (difference of
    means, probe, SAE feature with a dictionary, the random null), steer held-out pairs both ways
    over strengths and decode paths, and judge each by the concept's rule, with the positive
    controls, the null and the ideal edit (oracle) beside every verdict. `partial` runs
    `steerlab partials` itself (the same rows). Killed runs resume when rerun. With
    `--executor ray` the work items run as Ray tasks (docs/distributed.md), with the same rows."""
    from steerlab.battery.run import run_battery
    from steerlab.cli.progress import progress
    from steerlab.executors import make_executor

    setup_compute(device, threads)
    runner = make_executor(executor, address)
    try:
        doc = run_battery(
            split_names(concepts),
            model_name,
            out_dir,
            quick,
            split_names(layers),
            bar=progress,
            notify=lambda m: click.echo(m, err=True),
            config_file=config_file,
            dictionaries=dictionaries,
            device=device,
            stimuli=stimuli,
            executor=runner,
        )
    finally:
        runner.close()
    if as_json:
        return echo_json(doc)
    for t in doc["concepts"]:
        for v in t["verdicts"]:
            if v.get("model_role") != "main":
                continue
            click.echo(
                f"{t['concept'] + (f' ({t[VARIANT]})' if VARIANT in t else ''):<14} {v['layer']:<24} {v['path']:<11} {v['method']:<10} {v['removal']:<9} "
                f"{v['label']:<16} pass {v['pass_share']:.2f}"
            )
    click.echo(f"wrote {out_dir}/steerability.json, summary.csv and report.html")
    return None


@click.command(context_settings=CONTEXT)
@json_option("Print the concepts as JSON.")
def concepts(as_json) -> None:
    """List the concepts of `steerlab steerability`: their changes, rules (thresholds and why) and
    the positive controls that can vouch for them, with the plugin that registered each."""
    from steerlab.battery.concept import no_control_reason
    from steerlab.battery.registry import concepts as registry

    reg = registry()
    rows: list[dict[str, Any]] = [
        {
            "name": c.name,
            "description": c.description,
            "changes": list(c.changes),
            "rule": c.rule.to_dict(),
            "controls": dict(c.controls),
            "no_control_reason": no_control_reason(c),
            "plugin": reg.owners.get(c.name),
        }
        for c in reg
    ]
    if as_json:
        return echo_json(rows)
    for r in rows:
        ctrl = ", ".join(r["controls"]) or "no control"
        click.echo(f"{r['name']:<14} {r['description']}  [controls: {ctrl}]")
    return None


COMMANDS = (steerability, concepts)
