"""``steerlab capture``: run a model once over a corpus and keep one layer's activations on disk.

A thin layer over :func:`steerlab.activations.build_store`; ``learn ... --store`` and
``analyze ... --store`` read the store instead of running the model again. Progress goes to
stderr; an interrupted capture is resumed by running the same command again.
"""

from __future__ import annotations

from pathlib import Path

import click

from steerlab.cli.options import (
    CONTEXT,
    checkpoint_option,
    clip_options,
    data_option,
    device_option,
    echo_json,
    json_option,
    model_option,
    output_option,
    setup_compute,
    skip_bad_files_option,
    threads_option,
)


@click.command(context_settings=CONTEXT)
@model_option()
@checkpoint_option()
@click.option("-l", "--layer", required=True, help="Layer name or alias (see `steerlab layers`).")
@data_option("Audio folder or file, synth:N, noise:N, flat:N or sines:N (repeatable).", required=True)
@output_option("Store folder to write (resumed if a capture with the same settings was interrupted).")
@click.option(
    "--kind",
    "mode",
    type=click.Choice(["features", "archetypes"]),
    default="features",
    help="features: response vectors r_t; archetypes: generators r_(t+1) - r_t (for learn archetypes).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing store folder.")
@skip_bad_files_option("Skip unreadable, empty or NaN files under --data (listed in the manifest).")
@click.option("--frames-per-shard", type=int, default=None, help="Rows per shard [64 MiB of float32].")
@click.option("--seed", type=int, default=0, help="Seed of generated clips (synth:N, ...).")
@clip_options
@json_option("Print the store's summary as JSON.")
@device_option()
@threads_option()
def capture(
    model_name: str | None,
    checkpoint: str | None,
    layer: str,
    data: tuple[str, ...],
    output: str,
    mode: str,
    overwrite: bool,
    skip_bad_files: bool,
    frames_per_shard: int | None,
    seed: int,
    clip_seconds: float,
    chunk_seconds: float,
    as_json: bool,
    device: str,
    threads: int | None,
) -> None:
    """Capture one layer over a corpus into an activation store (safetensors shards + manifest.json).

    The store records the model, its weights hash, the layer, the kind and the sha256 of every
    input file; `learn --store` and `analyze --store` refuse a store of another model or layer.
    See docs/store.md.
    """
    from steerlab import api
    from steerlab.activations import build_store
    from steerlab.capture import Corpus
    from steerlab.cli.learn import report_bad_files

    setup_compute(device, threads)
    model = api.load_model(model_name, checkpoint, device=device)
    info = api.layers(model).get(layer)
    corpus = Corpus.for_model(
        model, data, seed=seed, clip_seconds=clip_seconds, chunk_seconds=chunk_seconds, skip_bad_files=skip_bad_files
    )

    def say(message: str) -> None:
        click.echo(message, err=True)

    report_bad_files(corpus, say)
    store = build_store(
        model, info, corpus, Path(output), mode, frames_per_shard=frames_per_shard, overwrite=overwrite, progress=say
    )
    summary = {
        "output": str(store.folder),
        "model": store.model,
        "layer": store.layer,
        "kind": store.kind,
        "width": store.width,
        "n_vectors": store.n_vectors,
        "shards": len(store.shards),
        "config_hash": store.doc["config_hash"],
        "seconds": store.doc["corpus"]["manifest"]["seconds"],
    }
    if as_json:
        return echo_json(summary)
    click.echo(
        f"wrote {store.folder}: {store.n_vectors} {store.kind} vectors of {store.model} {store.layer} "
        f"({store.width} channels) from {summary['seconds']:.1f} s of audio in {len(store.shards)} shards"
    )


COMMANDS = (capture,)
