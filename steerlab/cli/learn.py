"""``steerlab learn features|archetypes``: train a dictionary of one layer from a corpus.

A thin layer over :func:`steerlab.learning.learn_dictionary`: capture the layer over
``--data`` (folders, files, ``synth:N``, ``noise:N``, ``flat:N``, ``sines:N``), train a
sparse autoencoder and save it as a dictionary folder. Progress goes to stderr.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from steerlab.cli import SteerlabGroup
from steerlab.cli.options import (
    CONTEXT,
    checkpoint_option,
    clip_options,
    data_option,
    device_option,
    echo_json,
    executor_options,
    json_option,
    model_option,
    output_option,
    setup_compute,
    skip_bad_files_option,
    threads_option,
)
from steerlab.sae_names import ARCHITECTURES, K_ARCHITECTURES

#: the sparsity options and the architectures that use them (docs/sae.md); given explicitly with
#: none of those architectures, an option is refused (:func:`refuse_unused_options`), never ignored
ARCHITECTURE_OPTIONS: dict[str, tuple[str, ...]] = {"--k": K_ARCHITECTURES, "--l1": ("relu",), "--l0": ("jumprelu",)}
L0_HELP = "L0 coefficient lambda (jumprelu) [default: SAEConfig's, 0.1; docs/sae.md]."


def refuse_unused_options(architectures: tuple[str, ...], params: dict[str, str]) -> None:
    """Refuse in one line (:class:`steerlab.errors.ConfigError`) an option of
    :data:`ARCHITECTURE_OPTIONS` that the user gave (on the command line or the environment, not
    its default: click's parameter source) when none of ``architectures`` uses it. ``params``
    maps each flag to the command's parameter name."""
    from click.core import ParameterSource

    from steerlab.errors import ConfigError

    ctx = click.get_current_context()
    for flag, uses in ARCHITECTURE_OPTIONS.items():
        source = ctx.get_parameter_source(params[flag])
        if source in (None, ParameterSource.DEFAULT) or any(a in uses for a in architectures):
            continue
        raise ConfigError(
            f"{flag} does not apply to --architecture {','.join(architectures)}: only {', '.join(uses)} "
            f"use{'s' if len(uses) == 1 else ''} it (docs/sae.md); drop {flag}"
        )


def _options(fn: Callable) -> Callable:
    """The options both subcommands share, in the order ``--help`` lists them (click collects
    decorators bottom-up, so they are applied in reverse)."""
    options = [
        model_option(),
        checkpoint_option(),
        click.option("-l", "--layer", required=True, help="Layer name or alias (see `steerlab layers`)."),
        data_option("Audio folder or file, synth:N, noise:N, flat:N or sines:N (repeatable; or --store)."),
        click.option(
            "--store",
            type=click.Path(file_okay=False),
            default=None,
            help="Train from an activation store (`steerlab capture`) instead of running the model over --data.",
        ),
        output_option("Dictionary folder to write."),
        click.option("--overwrite", is_flag=True, help="Replace an existing dictionary folder."),
        skip_bad_files_option(
            "Skip unreadable, empty or NaN files under --data (counted in the manifest) instead of "
            "failing before any capture."
        ),
        click.option(
            "--size",
            type=int,
            multiple=True,
            default=(128,),
            help="Number of latents (repeatable with --store: one SAE per --size and --k, in one pass).",
        ),
        click.option(
            "--k",
            "k",
            type=int,
            multiple=True,
            default=(8,),
            help="Active latents per vector (topk, matryoshka; the average for batchtopk; repeatable with --store).",
        ),
        click.option(
            "--architecture",
            "--variant",
            "architecture",
            type=click.Choice(ARCHITECTURES),
            default="topk",
            help="SAE architecture, see docs/sae.md (--variant is a second name).",
        ),
        click.option("--l1", type=float, default=1.0, help="L1 coefficient (relu)."),
        click.option("--l0", type=float, default=None, help=L0_HELP),
        click.option(
            "--lr",
            type=float,
            default=None,
            help="Adam learning rate [default: 1e-3; jumprelu 3e-3, docs/sae.md].",
        ),
        click.option("--epochs", type=int, default=10, help="Passes over the data."),
        click.option("--batch-size", type=int, default=256, help="Vectors per training step."),
        click.option("--seed", type=int, default=0, help="Seed of the SAE, generated clips and subsampling."),
        click.option("--subsample", type=float, default=None, help="Keep this fraction of vectors (seeded)."),
        click.option("--no-center", is_flag=True, help="Do not subtract the data mean."),
        click.option("--no-normalize", is_flag=True, help="Do not rescale to mean squared norm = width."),
        clip_options,
        click.option(
            "--stream",
            type=click.Choice(["auto", "shards", "recompute"]),
            default="auto",
            help="shards: capture once to temporary shards; recompute: re-run the model every epoch.",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Folder for temporary shards [default: the system temp folder].",
        ),
        click.option("--cache-gb", type=float, default=2.0, help="Largest shard set --stream auto writes."),
        click.option(
            "--export",
            type=click.Choice(["saelens"]),
            default=None,
            help="Also write OUTPUT/saelens in SAELens' layout (cfg.json).",
        ),
        click.option(
            "--fidelity-clips",
            type=click.IntRange(min=0),
            default=2,
            show_default=True,
            help="Clips held out of training (seeded by --seed) to measure splice fidelity on; 0: none.",
        ),
        click.option(
            "--fidelity-seconds",
            type=click.FloatRange(min=0, min_open=True),
            default=2.0,
            show_default=True,
            help="Longest held-out clip, in seconds (bounds the fidelity measurement's cost).",
        ),
        json_option("Print the result as JSON."),
        device_option(),
        threads_option(),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _check_output(output: Path, overwrite: bool) -> None:
    """Fail before the (long) capture and training, not after."""
    import os

    from steerlab.errors import OutputError

    parent = output.resolve().parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {output}: {parent} is not an existing folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {output}: {parent} is not writable")
    if output.exists() and not overwrite:
        raise OutputError(f"{output} already exists; pass --overwrite to replace it")


def report_bad_files(corpus: Any, say: Callable[[str], None]) -> None:
    """Check every --data file before any capture (one Error line when one is bad, unless
    --skip-bad-files) and say on stderr what --skip-bad-files skips."""
    from steerlab.capture import bad_files_note

    bad = corpus.check_files()
    if bad:
        data = ", ".join(s.spec for s in corpus.sources if hasattr(s, "files"))
        say(bad_files_note(bad, "--data " + data, "--skip-bad-files"))


def _learn(
    target: str,
    model_name,
    checkpoint,
    layer,
    data,
    store,
    output,
    overwrite,
    skip_bad_files,
    size,
    k,
    architecture,
    l1,
    l0,
    lr,
    epochs,
    batch_size,
    seed,
    subsample,
    no_center,
    no_normalize,
    clip_seconds,
    chunk_seconds,
    stream,
    cache_dir,
    cache_gb,
    export,
    fidelity_clips,
    fidelity_seconds,
    as_json,
    device,
    threads,
) -> None:
    from steerlab import api, dictionary
    from steerlab.capture import Corpus
    from steerlab.learning import learn_dictionary

    out = Path(output)
    refuse_unused_options((architecture,), {"--k": "k", "--l1": "l1", "--l0": "l0"})
    if store is not None or len(size) > 1 or len(k) > 1:
        return _learn_from_store(
            target, model_name, checkpoint, layer, data, store, out, overwrite, size, k, architecture, l1, l0, lr,
            epochs, batch_size, seed, subsample, no_center, no_normalize, export, as_json, device, threads,
        )  # fmt: skip
    if not data:
        from steerlab.errors import SteerlabError

        raise SteerlabError("give --data (audio to capture) or --store (an activation store)")
    size, k = size[0], k[0]
    if not cache_gb >= 0 or cache_gb == float("inf"):
        from steerlab.errors import SteerlabError

        raise SteerlabError(f"--cache-gb must be a finite number >= 0, got {cache_gb}")
    _check_output(out, overwrite)
    setup_compute(device, threads)
    model = api.load_model(model_name, checkpoint, device=device)
    info = api.layers(model).get(layer)  # an unknown layer fails before the corpus is read
    corpus = Corpus.for_model(
        model, data, seed=seed, clip_seconds=clip_seconds, chunk_seconds=chunk_seconds, skip_bad_files=skip_bad_files
    )

    def say(message: str) -> None:
        click.echo(message, err=True)

    report_bad_files(corpus, say)

    def epoch_done(epoch: int, total: int, loss: float) -> None:
        say(f"epoch {epoch}/{total}: loss {loss:.4g}")

    config = _sae_config(
        info.channels, size, k, architecture, l1, l0, lr, epochs, batch_size, seed, no_center, no_normalize
    )
    d = learn_dictionary(
        model,
        layer,
        target,
        corpus,
        config,
        subsample=subsample,
        stream=stream,
        cache_dir=cache_dir,
        budget_bytes=int(cache_gb * 2**30),
        progress=say,
        epoch_progress=epoch_done,
        fidelity_clips=fidelity_clips,
        fidelity_seconds=fidelity_seconds,
    )
    dictionary.save(d, out, overwrite=overwrite)
    exported = None
    if export == "saelens":
        exported = dictionary.export_saelens(d, out / "saelens", overwrite=True)
    m = d.metrics
    summary: dict[str, Any] = {
        "output": str(out),
        "saelens": str(exported) if exported else None,
        "model": d.model,
        "layer": d.layer,
        "kind": d.target,
        "width": d.config.width,
        "size": d.config.size,
        "metrics": m,
        "data": d.data_manifest,
    }
    if as_json:
        from steerlab.artifacts import clean_json

        return echo_json(clean_json(summary))
    man = d.data_manifest or {}
    ev = m.get("explained_variance")
    click.echo(
        f"wrote {out}: {d.target} dictionary of {d.model} {d.layer}, {d.config.size} latents over "
        f"{m.get('n_vectors')} vectors from {man.get('clips')} clips ({man.get('seconds', 0):.1f} s, "
        f"{man.get('files_skipped', 0)} files skipped); explained variance "
        f"{'n/a' if ev is None else f'{ev:.3f}'}, L0 {m.get('l0', float('nan')):.2f}, "
        f"dead {m.get('dead_fraction', float('nan')):.1%}"
    )
    fid = m.get("fidelity") or {}
    if fid.get("recovered_vs_zero") is not None:
        click.echo(
            f"splice fidelity on {fid['held_out']['clips']} held-out clips ({fid['held_out']['seconds']:.1f} s): "
            f"recovered {fid['recovered_vs_zero']:.3f} vs zero ablation, {fid['recovered_vs_mean']:.3f} vs mean"
            if fid.get("recovered_vs_mean") is not None
            else f"splice fidelity: recovered {fid['recovered_vs_zero']:.3f} vs zero ablation"
        )
    elif fid:
        click.echo(f"splice fidelity: {fid['recovered_vs_zero_reason']}")
    if exported:
        click.echo(f"wrote {exported} (SAELens layout)")


def _sae_config(
    width, size, k, architecture, l1, l0, lr, epochs, batch_size, seed, no_center, no_normalize
) -> Any:  # fmt: skip
    """The :class:`steerlab.sae.SAEConfig` of `learn`'s options (``l0`` passed only when given, so
    the architecture's default stands otherwise)."""
    from steerlab.sae import SAEConfig

    return SAEConfig(
        width=width,
        size=size,
        k=k,
        architecture=architecture,
        l1=l1,
        **({} if l0 is None else {"l0": l0}),
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        center=not no_center,
        normalize=not no_normalize,
    )


def _learn_from_store(
    target, model_name, checkpoint, layer, data, store, out, overwrite, sizes, ks, architecture, l1, l0, lr, epochs,
    batch_size, seed, subsample, no_center, no_normalize, export, as_json, device, threads,
) -> None:  # fmt: skip
    """``--store``: train one SAE per (--size, --k) pair in one pass over an activation store
    (:func:`steerlab.activations.learn_from_store`); one dictionary folder, or with several
    configurations one subfolder of OUTPUT per configuration, named by
    :func:`steerlab.activations.config_label`."""
    from steerlab import api, dictionary
    from steerlab.activations import ActivationStore, config_label, learn_from_store
    from steerlab.errors import SteerlabError

    if store is None:
        raise SteerlabError("several --size or --k values are trained in one pass over a --store; give one")
    if data:
        raise SteerlabError("give --data or --store, not both: the store already holds its data")
    if subsample is not None:
        raise SteerlabError("--subsample does not apply to --store (the store keeps every frame)")
    st = ActivationStore(store)
    setup_compute(device, threads)
    model = api.load_model(model_name or st.model, checkpoint, device=device)
    info = api.layers(model).get(layer)
    configs = [
        _sae_config(info.channels, size, k, architecture, l1, l0, lr, epochs, batch_size, seed, no_center, no_normalize)
        for size in sizes
        for k in ks
    ]
    outs = [out] if len(configs) == 1 else [out / config_label(c) for c in configs]
    if len(configs) > 1:  # OUTPUT holds one folder per configuration
        _check_output(out, True)
        if out.exists() and not out.is_dir():
            raise SteerlabError(f"cannot write {out}: it is a file")
    for o in outs if out.is_dir() or len(configs) == 1 else ():
        _check_output(o, overwrite)

    def say(message: str) -> None:
        click.echo(message, err=True)

    def epoch_done(i: int, epoch: int, total: int, loss: float) -> None:
        say(f"{config_label(configs[i]) + ': ' if len(configs) > 1 else ''}epoch {epoch}/{total}: loss {loss:.4g}")

    learned = learn_from_store(model, info.name, target, st, configs, progress=say, epoch_progress=epoch_done)
    summaries = []
    for o, item in zip(outs, learned):
        o.parent.mkdir(parents=True, exist_ok=True)
        d = item.dictionary
        dictionary.save(d, o, overwrite=overwrite)
        exported = dictionary.export_saelens(d, o / "saelens", overwrite=True) if export == "saelens" else None
        m = d.metrics
        summaries.append(
            {
                "output": str(o),
                "config": item.label,
                "saelens": str(exported) if exported else None,
                "size": d.config.size,
                "k": d.config.k,
                "metrics": m,
            }
        )
        if not as_json:
            ev = m.get("explained_variance")
            click.echo(
                f"wrote {o}: {d.target} dictionary of {d.model} {d.layer}, {d.config.size} latents (k "
                f"{d.config.k}) over {m.get('n_vectors')} vectors from the store {st.folder}; explained variance "
                f"{'n/a' if ev is None else f'{ev:.3f}'}, L0 {m.get('l0', float('nan')):.2f}, "
                f"dead {m.get('dead_fraction', float('nan')):.1%}"
            )
    if as_json:
        from steerlab.artifacts import clean_json

        echo_json(clean_json({"store": str(st.folder), "model": st.model, "layer": st.layer, "kind": target,
                              "dictionaries": summaries}))  # fmt: skip


@click.group(cls=SteerlabGroup, context_settings=CONTEXT)
def learn() -> None:
    """Learn dictionaries of a layer: features (over r_t) or archetypes (over g_t = r_{t+1} - r_t).

    Archetypes are recurring motions of the activation trajectory; they are not the
    "archetypal SAE" of the SAE literature.
    """


@learn.command(context_settings=CONTEXT)
@_options
def features(**kwargs: Any) -> None:
    """Train an SAE over the response vectors r_t (frames) of a layer."""
    _learn("feature", **kwargs)


@learn.command(context_settings=CONTEXT)
@_options
def archetypes(**kwargs: Any) -> None:
    """Train an SAE over the generators g_t = r_{t+1} - r_t, taken within each clip only."""
    _learn("archetype", **kwargs)


def _budget(cache_gb: float) -> int:
    """--cache-gb in bytes."""
    if not cache_gb >= 0 or cache_gb == float("inf"):
        from steerlab.errors import SteerlabError

        raise SteerlabError(f"--cache-gb must be a finite number >= 0, got {cache_gb}")
    return int(cache_gb * 2**30)


def _many(values: tuple[str, ...], convert: type = str, name: str = "") -> tuple:
    """Repeatable and comma-separated values (``-l a,b -l c``), in order, duplicates kept for the grid to drop;
    ``name``: the click parameter, which a value that does not convert names."""
    from steerlab.errors import ConfigError

    out = []
    for v in values:
        for part in (p.strip() for p in str(v).split(",")):
            if part:
                try:
                    out.append(convert(part))
                except ValueError:
                    raise ConfigError(f"{name} {part!r} is not an integer".lstrip(), parameter=name or None) from None
    return tuple(out)


@learn.command(context_settings=CONTEXT)
@model_option()
@checkpoint_option()
@click.option("-l", "--layer", "layers", multiple=True, required=True, help="Layer(s) (repeatable or comma-separated).")
@data_option("Audio folder or file, synth:N, noise:N, flat:N or sines:N (repeatable).", required=True)
@output_option("Sweep folder: one dictionary folder per configuration, sweep.json, sweep.jsonl.")
@click.option(
    "--target",
    type=click.Choice(["feature", "archetype"]),
    default="feature",
    help="features (over r_t, as `learn features`) or archetypes (over g_t, as `learn archetypes`).",
)
@click.option(
    "--architecture",
    "architectures",
    multiple=True,
    default=("topk",),
    help=f"SAE architecture(s) (repeatable or comma-separated; {', '.join(ARCHITECTURES)}).",
)
@click.option(
    "--size", "sizes", multiple=True, default=("128",), help="Number(s) of latents (repeatable or comma-separated)."
)
@click.option(
    "--k", "ks", multiple=True, default=("8",), help="Active latents per vector (repeatable or comma-separated)."
)
@click.option(
    "--seed", "seeds", multiple=True, default=("0",), help="Seed(s) of the SAE, generated clips and subsampling."
)
@click.option("--l1", type=float, default=1.0, help="L1 coefficient (relu).")
@click.option("--l0", type=float, default=None, help=L0_HELP)
@click.option("--lr", type=float, default=None, help="Adam learning rate [default: 1e-3; jumprelu 3e-3, docs/sae.md].")
@click.option("--epochs", type=int, default=10, help="Passes over the data.")
@click.option("--batch-size", type=int, default=256, help="Vectors per training step.")
@click.option("--subsample", type=float, default=None, help="Keep this fraction of vectors (seeded).")
@click.option("--no-center", is_flag=True, help="Do not subtract the data mean.")
@click.option("--no-normalize", is_flag=True, help="Do not rescale to mean squared norm = width.")
@clip_options
@skip_bad_files_option("Skip unreadable, empty or NaN files under --data (counted in each manifest).")
@click.option(
    "--stream",
    type=click.Choice(["auto", "shards", "recompute"]),
    default="auto",
    help="shards: capture once to temporary shards; recompute: re-run the model every epoch.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for temporary shards, on each worker's node [default: the system temp folder].",
)
@click.option("--cache-gb", type=float, default=2.0, help="Largest shard set --stream auto writes (per configuration).")
@executor_options()
@json_option("Print the sweep's rows as JSON.")
@device_option()
@threads_option()
def sweep(
    model_name,
    checkpoint,
    layers,
    data,
    output,
    target,
    architectures,
    sizes,
    ks,
    seeds,
    l1,
    l0,
    lr,
    epochs,
    batch_size,
    subsample,
    no_center,
    no_normalize,
    clip_seconds,
    chunk_seconds,
    skip_bad_files,
    stream,
    cache_dir,
    cache_gb,
    executor,
    address,
    as_json,
    device,
    threads,
) -> None:
    """Train one dictionary per combination of layers, architectures, sizes, k and seeds.

    Each configuration is captured and trained as `learn features|archetypes` trains one; with
    --executor ray they run as Ray tasks (docs/distributed.md). Rerun the same command to resume.
    """
    from steerlab import api
    from steerlab.capture import Corpus
    from steerlab.executors import make_executor
    from steerlab.learn_sweep import SweepSpec, config_for, grid, run_sweep

    refuse_unused_options(_many(architectures), {"--k": "ks", "--l1": "l1", "--l0": "l0"})
    setup_compute(device, threads)
    model = api.load_model(model_name, checkpoint, device=device)
    # unknown layers fail here; keyed by the layer's own name, as the grid's items are (an alias is not)
    infos = {i.name: i for i in (api.layers(model).get(name) for name in _many(layers))}
    items = grid(
        [i.name for i in infos.values()],
        _many(architectures),
        _many(sizes, int, "sizes"),
        _many(ks, int, "ks"),
        _many(seeds, int, "seeds"),
    )
    spec = SweepSpec(
        model.name,
        checkpoint,
        model.weights_hash(),
        target,
        tuple(data),
        {
            "l1": l1,
            **({} if l0 is None else {"l0": l0}),  # absent when not given: earlier sweeps keep their spec
            "lr": lr,
            "epochs": epochs,
            "batch_size": batch_size,
            "center": not no_center,
            "normalize": not no_normalize,
        },
        {"clip_seconds": clip_seconds, "chunk_seconds": chunk_seconds, "skip_bad_files": skip_bad_files},
        {"subsample": subsample, "stream": stream, "cache_dir": cache_dir, "budget_bytes": _budget(cache_gb)},
        device,
    )
    for it in items:  # every configuration checked before any training
        config_for(spec, it, infos[it.layer].channels)
    corpus = Corpus.for_model(
        model, data, seed=0, clip_seconds=clip_seconds, chunk_seconds=chunk_seconds, skip_bad_files=skip_bad_files
    )
    report_bad_files(corpus, lambda m: click.echo(m, err=True))
    runner = make_executor(executor, address)
    try:
        rows = run_sweep(spec, items, output, runner, notify=lambda m: click.echo(m, err=True))
    finally:
        runner.close()
    if as_json:
        from steerlab.artifacts import clean_json

        return echo_json(clean_json(rows))
    click.echo(f"wrote {len(rows)} dictionaries to {output} (sweep.jsonl lists them with their metrics)")


COMMANDS = (learn,)
