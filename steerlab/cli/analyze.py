"""``steerlab analyze DICT --data ... -o REPORT``: post 1's measurements on a dictionary.

A thin layer over :func:`steerlab.analysis.analyze` and
:func:`steerlab.analysis.write_report`. Progress goes to stderr; the report folder
holds ``report.json``, a self-contained ``report.html`` and ``figures/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from steerlab.cli.options import (
    CONTEXT,
    allow_weights_mismatch_option,
    checkpoint_option,
    clip_options,
    compute_options,
    data_option,
    echo_json,
    json_option,
    model_option,
    output_option,
    setup_compute,
    skip_bad_files_option,
)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


@click.command(context_settings=CONTEXT)
@click.argument("dictionary_path", metavar="DICT")
@data_option(
    "Audio folder (e.g. FMA small: a folder of MP3s) or file, synth:N, noise:N, flat:N, sines:N "
    "(repeatable; or --store)."
)
@click.option(
    "--store",
    type=click.Path(file_okay=False),
    default=None,
    help="Read the analysis data from an activation store (`steerlab capture`) of the dictionary's layer; "
    "its corpus (recorded in the store) is the data.",
)
@output_option("Report folder to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing report folder.")
@skip_bad_files_option("Skip unreadable, empty or NaN files under --data (counted in the report) instead of failing.")
@model_option("Model (default: the dictionary's).")
@checkpoint_option()
@allow_weights_mismatch_option(
    "Analyse even if the model's weights differ from those the dictionary was learned on, or are not known "
    "(a dictionary imported from SAELens records none)."
)
@click.option("--quick", is_flag=True, help="Small, fast run (fewer vectors, epochs, clips, draws).")
@click.option("--only", default=None, help="Comma-separated analyses to run (names or letters a-j).")
@click.option("--skip", default=None, help="Comma-separated analyses to leave out.")
@click.option("--max-vectors", type=int, default=None, help="Vectors kept per capture [100000; quick 6000].")
@click.option("--threshold", "coverage_threshold", type=float, default=0.7, help="Coverage cosine threshold (a).")
@click.option(
    "--active-rel", type=float, default=0.5, help="Strongly active: code >= this x the vector's largest code (c-g, i)."
)
@click.option("--usage-floor", type=float, default=0.01, help="Usage share above which a direction counts as used.")
@click.option("--top-n", type=int, default=20, help="Most used directions compared (b, d, e, f, h).")
@click.option("--seeds", default="1,2,3", help="SAE seeds retrained for stability (e); the first also for f, g.")
@click.option("--epochs", type=int, default=None, help="Epochs of retrained SAEs [the dictionary's; quick 2].")
@click.option("--reference-clips", type=int, default=None, help="Clips of noise:N and flat:N (f) [8; quick 2].")
@click.option("--random-draws", type=int, default=None, help="Draws per random baseline [5; quick 2].")
@click.option("--fragments", "fragments_per_latent", type=int, default=None, help="Fragments per direction (i).")
@click.option("--fragment-samples", type=int, default=None, help="Fragment length in samples (i) [auto].")
@click.option("--band-hz", type=float, default=None, help="Half-width of the 'near the peak' band (i) [3 fs/length].")
@click.option("--trajectory-frames", type=int, default=None, help="Frames per trajectory (j) [200; quick 120].")
@click.option(
    "--trajectory-clip",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="FILE",
    help="An audio file of yours whose loudest stretch is the music trajectory (j) [a synthetic chord].",
)
@click.option("--seed", type=int, default=0, help="Seed of subsampling, baselines, splits and generated clips.")
@clip_options
@json_option("Print a JSON summary.")
@compute_options
def analyze(
    dictionary_path: str,
    data: tuple[str, ...],
    store: str | None,
    output: str,
    overwrite: bool,
    skip_bad_files: bool,
    model_name: str | None,
    checkpoint: str | None,
    allow_weights_mismatch: bool,
    quick: bool,
    only: str | None,
    skip: str | None,
    seeds: str,
    seed: int,
    clip_seconds: float,
    chunk_seconds: float,
    as_json: bool,
    device: str,
    threads: int | None,
    **numbers: Any,
) -> None:
    """Measure a features or archetypes dictionary as post 1 does (analyses a-j) and write a report.

    DICT: a dictionary folder written by `steerlab learn`, or the name of one shipped with
    the model (`steerlab dictionaries`), as in `intervene --feature DICT:ID`.

    Archetypes are SAE directions over generators g_t = r_{t+1} - r_t, not the
    "archetypal SAE" of the SAE literature.
    """
    from steerlab import api, dictionary
    from steerlab.analysis import ANALYSES, AnalysisOptions, write_report
    from steerlab.analysis import analyze as run_analysis
    from steerlab.analysis.options import resolve_names
    from steerlab.capture import Corpus
    from steerlab.cli.learn import _check_output, report_bad_files
    from steerlab.errors import SteerlabError
    from steerlab.learned import check_model_name

    out = Path(output)
    _check_output(out, overwrite)
    if bool(data) == bool(store):
        raise SteerlabError("give --data (audio to capture) or --store (an activation store), exactly one")
    setup_compute(device, threads)
    shipped_model = None
    if not Path(dictionary_path).expanduser().is_dir():  # a name: one shipped with -m (default: embedded)
        shipped_model = api.load_model(model_name, checkpoint, device=device)
        dictionary_path = str(
            dictionary.locate(dictionary_path, shipped_model.shipped_dictionaries(), shipped_model.name)
        )
    d = dictionary.load(dictionary_path)
    kwargs: dict[str, Any] = {k: v for k, v in numbers.items() if v is not None}
    try:
        selected = resolve_names(only.split(",")) if only else ANALYSES
        if skip:
            dropped = set(resolve_names(skip.split(",")))
            selected = tuple(a for a in selected if a not in dropped)
        kwargs.update(seeds=_ints(seeds), seed=seed, only=selected)
        options = AnalysisOptions.quick_preset(**kwargs) if quick else AnalysisOptions(**kwargs)
    except ValueError as exc:  # ConfigError keeps its parameters: the message names their flags
        raise SteerlabError(f"invalid analysis options: {exc}", parameter=getattr(exc, "parameters", None)) from None
    name = model_name or d.model
    check_model_name(d, name, dictionary_path)  # before loading: a wrong model fails fast, whatever its loader needs

    def load():
        return api.load_model(name, checkpoint, device=device)

    model = shipped_model if shipped_model is not None and shipped_model.name == name else load()
    activation_store = None
    if store:
        from steerlab.activations import ActivationStore

        activation_store = ActivationStore(store)
        corpus = activation_store.corpus()  # the store's own clips: fragments (i) are cut from them
    else:
        corpus = Corpus.for_model(
            model,
            data,
            seed=seed,
            clip_seconds=clip_seconds,
            chunk_seconds=chunk_seconds,
            skip_bad_files=skip_bad_files,
        )

    def say(message: str) -> None:
        click.echo(message, err=True)

    report_bad_files(corpus, say)

    doc, figures = run_analysis(
        d,
        model,
        corpus,
        options,
        dictionary_path=dictionary_path,
        load=load,
        allow_weights_mismatch=allow_weights_mismatch,
        progress=say,
        store=activation_store,
    )
    write_report(doc, figures, out, overwrite=overwrite)
    ran = {k: a["headline"] for k, a in doc["analyses"].items() if a["status"] == "ran"}
    if as_json:
        from steerlab.artifacts import clean_json

        return echo_json(
            clean_json(
                {
                    "output": str(out),
                    "analyses": ran,
                    "fidelity": doc.get("fidelity"),
                    "skipped": {k: a["reason"] for k, a in doc["analyses"].items() if a["status"] != "ran"},
                },
                drop_private=True,
            )
        )
    for key, a in doc["analyses"].items():  # every analysis, run or not, so none is silently missing
        click.echo(f"{key}: {a['headline'] if a['status'] == 'ran' else 'skipped: ' + a['reason']}")
    if doc.get("fidelity"):
        click.echo(doc["fidelity"]["headline"])
    click.echo(f"wrote {out / 'report.html'} and {out / 'report.json'}")


COMMANDS = (analyze,)
