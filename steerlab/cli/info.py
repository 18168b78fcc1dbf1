"""Commands that describe what is installed: models, layers, intervention types, plugins and shipped dictionaries."""

from __future__ import annotations

import click

from steerlab.cli.options import CONTEXT, checkpoint_option, echo_json, json_option, model_option


@click.command(context_settings=CONTEXT)
@json_option()
def models(as_json: bool) -> None:
    """List the registered models (the default is marked)."""
    from steerlab import plugins

    reg = plugins.models()
    rows = [
        {"name": s.name, "default": s.default, "plugin": reg.owners[s.name], "description": s.description} for s in reg
    ]
    if as_json:
        return echo_json(rows)
    for r in rows:
        click.echo(f"{r['name']}{' (default)' if r['default'] else ''}  [{r['plugin']}]  {r['description']}")


@click.command(context_settings=CONTEXT)
@model_option()
@checkpoint_option()
@click.option("--random-init", is_flag=True, help="Architecture only, random weights (no weights file needed).")
@json_option()
def layers(model_name: str | None, checkpoint: str | None, random_init: bool, as_json: bool) -> None:
    """Print every layer of a model: kind, channels, stride, hop, frame rate, receptive field, Nyquist."""
    from steerlab import api

    model = api.load_model(model_name, checkpoint, random_init=random_init)
    reg = api.layers(model)
    rows = [layer.to_json() for layer in reg]
    if as_json:
        return echo_json({"model": model.name, "layers": rows, "aliases": reg.aliases, "same_tensor": reg.same_tensor})
    aliases = ", ".join(f"{a} -> {t}" for a, t in reg.aliases.items())
    same = ", ".join(f"{a} = {t}" for a, t in reg.same_tensor.items())
    click.echo(
        f"model {model.name} ({model.sample_rate} Hz, {model.channels} ch)"
        + (f"; aliases: {aliases}" if aliases else "")
        + (f"; same tensor: {same}" if same else "")
    )
    from steerlab.cli.table import format_table

    headers = ("name", "kind", "ch", "stride", "hop", "rate Hz", "RF smp", "RF ms", "Nyq Hz")
    cells = [
        (
            r["name"],
            r["kind"],
            str(r["channels"]),
            str(r["stride"]),
            str(r["hop_samples"]),
            f"{r['frame_rate_hz']:.1f}",
            str(r["receptive_field_samples"]),
            f"{r['receptive_field_ms']:.2f}" + ("+" if r["recurrent"] else " "),
            f"{r['nyquist_hz']:.1f}",
        )
        for r in rows
    ]
    for line in format_table(headers, cells, left=2):
        click.echo(line)
    for note in dict.fromkeys(layer.context_note for layer in reg if layer.recurrent):
        click.echo(f"+ {note}")


@click.command(context_settings=CONTEXT)
@json_option()
def interventions(as_json: bool) -> None:
    """List the intervention types with their formulas, value scales and options (docs/interventions.md)."""
    from steerlab import plugins
    from steerlab.interventions import is_chunkable, needs_direction, options_help

    reg = plugins.interventions()
    rows: list[dict]  # (mixed values: mypy would infer dict[str, object])
    rows = [
        {
            "name": t.name,
            "formula": t.formula,
            "value": t.value_scale,
            "description": t.description,
            "needs_direction": needs_direction(t),
            "options": options_help(t),
            "chunkable": is_chunkable(t),
            "prepare": callable(getattr(t, "prepare", None)),
            "plugin": reg.owners[t.name],
        }
        for t in reg
    ]
    if as_json:
        return echo_json(rows)
    for r in rows:
        direction = "" if r["needs_direction"] else "; direction optional"
        click.echo(f"{r['name']}  (value: {r['value']}{direction})  [{r['plugin']}]")
        click.echo(f"    {r['formula']}")
        click.echo(f"    {r['description']}")
        for key, text in r["options"].items():
            click.echo(f"    option {key}: {text}")


@click.command(name="plugins", context_settings=CONTEXT)
@json_option()
def plugins_cmd(as_json: bool) -> None:
    """List plugins, what each registered, and plugins that failed (with their error)."""
    from steerlab import plugins

    rows = plugins.summary()
    if as_json:
        return echo_json(rows)
    for r in rows:
        if r["error"]:
            click.echo(f"{r['name']}: FAILED {r['error']}")
            continue
        if r["blocked"]:
            click.echo(f"{r['name']}: blocked by STEERLAB_BLOCK_PLUGINS")
            continue
        parts = [f"{k}: {', '.join(r[k])}" for k in ("models", "interventions", "scorers", "concepts") if r.get(k)]
        click.echo(
            f"{r['name']}{' (built-in)' if r['builtin'] else ''}: {'; '.join(parts) or 'hooks ' + ', '.join(r['hooks'])}"
        )


@click.command(context_settings=CONTEXT)
@model_option()
@json_option()
def dictionaries(model_name: str | None, as_json: bool) -> None:
    """List the dictionaries shipped with a model's weights (usable by name in --feature/--archetype)."""
    from steerlab import api, dictionary

    model = api.load_model(model_name)
    rows = []
    for name, folder in model.shipped_dictionaries().items():
        cfg = dictionary.read_config(folder)  # schema-checked: a damaged one is a one-line error
        metrics = cfg.get("metrics") or {}
        rows.append(
            {
                "name": name,
                "path": str(folder),
                "layer": cfg["layer"],
                "kind": cfg["kind"],
                "size": cfg["size"],
                "k": cfg["k"],
                "width": cfg["width"],
                "explained_variance": metrics.get("explained_variance"),
                "dead_fraction": metrics.get("dead_fraction"),
                "data": cfg["data"]["description"],
            }
        )
    if as_json:
        return echo_json(rows)
    if not rows:
        click.echo(f"{model.name} ships no dictionaries; learn one with `steerlab learn`")
    for r in rows:
        ev = r["explained_variance"]
        ev_text = f"{ev:.3f}" if isinstance(ev, (int, float)) else "n/a"
        click.echo(
            f"{r['name']}: {r['kind']} dictionary of {r['size']} latents (k {r['k']}) at {r['layer']} "
            f"(width {r['width']}), explained variance {ev_text}, learned on {r['data']}"
        )


COMMANDS = (models, layers, interventions, plugins_cmd, dictionaries)
