"""``steerlab steerability``: every chosen concept into its own subfolder, and one summary.

``OUT/<concept>/`` is each concept's run folder (:func:`steerlab.battery.runner.run_concept`;
for ``partial`` the folder ``steerlab partials`` writes, through the concept's ``delegate``),
``OUT/steerability.json`` the verdicts of every concept with their controls, null, oracle and
validation, ``OUT/summary.csv`` one line per verdict, ``OUT/report.html`` the page to read and
listen to (:mod:`steerlab.battery.report`; each concept's example audio in its
``examples/``). Concepts are independent: each resumes on
its own, and a rerun with the same arguments skips what is done.

``stimuli`` (``--stimuli``) chooses the pairs' variant: ``synthetic`` (sums of sinusoids, the
default), ``instrument`` (General MIDI notes rendered from a SoundFont,
:mod:`steerlab.builtins.concepts._rendered`) or ``both``. A variant is its own run, learning its
own directions: ``OUT/<concept>/`` the synthetic one, ``OUT/<concept>-instrument/`` the rendered
one (its table's ``folder``). ``partial`` keeps its own choice (``steerlab partials``' ``[grid]
families``) and runs once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from steerlab.battery.runner import BarFactory, _NullBar

SUMMARY_JSON, SUMMARY_CSV = "steerability.json", "summary.csv"
STIMULI = ("synthetic", "instrument", "both")
CSV_KEYS = (
    "concept",
    "model",
    "model_role",
    "layer",
    "variant",
    "method",
    "path",
    "removal",
    "label",
    "steerable",
    "pass_share",
    "validation",
    "null_steerable",
    "oracle_pass_share",
    "best_add_strength",
    "best_remove",
    "target_add_median",
    "target_add_ci_lo",
    "target_add_ci_hi",
    "damage_add_median",
    "target_remove_median",
    "damage_remove_median",
)


def _partial_table(summary: dict[str, Any]) -> dict[str, Any]:
    """partials' own verdicts (``steerlab partials``' report: its rows, controls and validation)
    in the battery's shape: each verdict's fields as partials names them, and beside them the
    battery's names (``variant`` the stimulus family, ``target_add`` the gain, ``target_remove``
    minus the loss, ``damage_*`` the off-band distance), its label, validation and null."""
    from steerlab.partials.verdicts import label, validation

    vs = summary.get("verdicts", [])
    val = validation(vs)
    nulls = {
        (v.model, v.layer, v.family, v.target_hz, v.density, v.path, v.removal): v for v in vs if v.method == "random"
    }
    rows = []
    for v in vs:
        f = v.flat()
        null = nulls.get((v.model, v.layer, v.family, v.target_hz, v.density, v.path, v.removal))
        rows.append(
            {
                **f,
                "concept": "partial",
                "variant": v.family,
                "label": label(v, val),
                "validation": val.get((v.method, v.removal), {}).get("status"),
                "null_steerable": None if null is None else null.steerable,
                "target_add_median": f["gain_db_median"],
                "target_add_ci_lo": f["gain_db_ci_lo"],
                "target_add_ci_hi": f["gain_db_ci_hi"],
                "damage_add_median": f["offband_add_db_median"],
                "target_remove_median": -f["loss_db_median"],
                "damage_remove_median": f["offband_remove_db_median"],
            }
        )
    return {
        "concept": "partial",
        "delegated_to": "steerlab partials (its report.html, summary.csv and oracle are in this folder)",
        "controls": summary.get("controls"),
        "verdicts": rows,
    }


def variants_of(stimuli: str) -> tuple[str, ...]:
    """The variants a ``--stimuli`` choice runs, in order."""
    return ("synthetic", "instrument") if stimuli == "both" else (stimuli,)


def variant_folder(concept: str, variant: str) -> str:
    """The run folder's name of ``concept``'s ``variant`` inside the battery's folder."""
    return concept if variant == "synthetic" else f"{concept}-{variant}"


def run_battery(
    names: Sequence[str],
    model: str | None,
    out_dir: str | Path,
    quick: bool = False,
    layers: Sequence[str] = (),
    bar: BarFactory = _NullBar,
    notify: Callable[[str], None] = lambda s: None,
    config_file: str | Path | None = None,
    dictionaries: Sequence[str | Path] = (),
    device: Any = "auto",
    stimuli: str = "synthetic",
    executor: Any = None,
) -> dict[str, Any]:
    """Run (or resume) each concept of ``names`` (all registered ones when empty) on ``model``
    into ``out_dir``; returns what ``steerability.json`` holds. ``config_file``: a ``steerlab
    partials`` TOML file whose ``[grid]`` (strengths, methods, paths, n_q), ``[stimuli]`` (seeds),
    ``[controls]`` (``positive_models``) and ``[run]`` sections the battery shares (the partial
    concept gets the file too). Unknown concept names raise the registry's error (with the nearest
    name) before anything is written. ``dictionaries``: feature dictionaries of the model's swept
    layers for the ``sae`` method (as ``steerlab partials --dictionary``; the partial concept gets
    them too). ``device``: where the models run (:func:`steerlab.devices.resolve`). ``executor``:
    where each concept's work items run (a :class:`steerlab.executors.Executor`, as ``steerlab
    partials --executor``; None: in this process): the rows, the resume and the one writer (this
    process) are the same either way (docs/distributed.md); a distributed one needs ``device``
    to be the CPU (:class:`~steerlab.errors.ConfigError` before anything is written). A
    delegating concept gets it when its ``delegate`` takes an ``executor`` argument, else runs
    in this process. ``stimuli``: one of :data:`STIMULI` (module docstring); with ``instrument`` a
    concept that does not render it is refused before anything is written, with ``both`` it runs
    its synthetic pairs only."""
    from steerlab.battery.runner import check_executor_device
    from steerlab.executors import matching_threads

    check_executor_device(executor, device)
    with matching_threads(executor):  # the directions, verdicts' decodes and examples too (executors)
        return _run_battery(
            names, model, out_dir, quick, layers, bar, notify, config_file, dictionaries, device, stimuli, executor
        )


def _accepts_executor(delegate: Callable[..., Any]) -> bool:
    import inspect

    params = inspect.signature(delegate).parameters.values()
    return any(p.name == "executor" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _run_battery(
    names: Sequence[str],
    model: str | None,
    out_dir: str | Path,
    quick: bool,
    layers: Sequence[str],
    bar: BarFactory,
    notify: Callable[[str], None],
    config_file: str | Path | None,
    dictionaries: Sequence[str | Path],
    device: Any,
    stimuli: str,
    executor: Any,
) -> dict[str, Any]:
    from steerlab import validation as check
    from steerlab.artifacts import atomic_write_json, clean_json
    from steerlab.battery.plan import check_variant, renders
    from steerlab.battery.registry import concepts
    from steerlab.battery.report import write_report
    from steerlab.battery.runner import run_concept, save_examples
    from steerlab.battery.verdicts import table, verdicts
    from steerlab.partials import build

    reg = concepts()
    chosen = [reg.get(n) for n in dict.fromkeys(names)] if names else list(reg)
    variants = variants_of(check.choice("stimuli", stimuli, STIMULI))
    own: dict[str, tuple[str, ...]] = {}  # each concept's variants: ``both`` runs those it renders
    for concept in chosen:
        if stimuli == "both":
            own[concept.name] = tuple(v for v in variants if renders(concept, v))
        else:
            if concept.delegate is None:
                check_variant(concept, stimuli)
            own[concept.name] = variants
    if "instrument" in variants:
        from steerlab.stimuli import check_renderer

        check_renderer()
    cfg = build(config_file, quick, {"run": {"model": model}} if model else None)
    if any(c.delegate is None for c in chosen):  # checked before any concept writes its folder
        from steerlab import api
        from steerlab.errors import ConfigError

        measured = api.load_model(cfg.run.model, device=device)
        if not measured.has_decoder:
            raise ConfigError(
                f"the battery's concepts score decoded audio, and {measured.name} has no decoder; choose a model "
                "that decodes audio, or run only -C partial (steerlab partials scores its output)"
            )
    folder = Path(out_dir)
    tables = []
    examples: dict[str, dict[str, Any]] = {}
    for concept in chosen:
        mine = own[concept.name]
        sub = folder / variant_folder(concept.name, mine[0] if concept.delegate is None else "synthetic")
        notify(f"concept {concept.name} -> {sub}")
        if concept.delegate is not None:
            if stimuli != "synthetic":
                notify(
                    f"concept {concept.name} chooses its own stimuli (its [grid] families), not the {stimuli} ones asked for"
                )
            extra: dict[str, Any] = {}
            if executor is not None and _accepts_executor(concept.delegate):
                extra["executor"] = executor
            elif executor is not None and executor.name != "local":
                notify(f"concept {concept.name} runs in this process (its delegate takes no executor)")
            done, summary = concept.delegate(
                model,
                sub,
                quick,
                bar=bar,
                notify=notify,
                config_file=config_file,
                dictionaries=dictionaries,
                device=device,
                **extra,
            )
            tables.append(_partial_table(summary))
            examples[concept.name] = {"partials": list(getattr(done, "examples", []))}
            continue
        for variant in mine:
            sub = folder / variant_folder(concept.name, variant)
            if variant != mine[0]:
                notify(f"concept {concept.name} ({variant}) -> {sub}")
            outcome = run_concept(
                concept,
                cfg,
                sub,
                cfg.run.model,
                quick,
                layers,
                dictionaries,
                bar=bar,
                notify=notify,
                device=device,
                variant=variant,
                executor=executor,
                control_cache=folder,  # one dictionary per control model and layer for every concept
            )
            vs = verdicts(concept, outcome.rows, cfg.run.bootstrap, cfg.run.seed)
            t = table(concept, vs, outcome.plans)
            if variant != "synthetic":  # only then: a synthetic table keeps its keys
                t = {**t, "variant": variant, "folder": sub.name}
            atomic_write_json(clean_json(t), sub / "verdicts.json")
            examples[sub.name] = save_examples(outcome, t, cfg.run.max_batch)
            tables.append(t)
    from steerlab.loading import default_model_name

    doc = {"model": cfg.run.model or default_model_name(), "quick": quick, "concepts": tables}
    if stimuli != "synthetic":
        doc["stimuli"] = stimuli
    atomic_write_json(clean_json(doc), folder / SUMMARY_JSON)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_KEYS, extrasaction="ignore")
    w.writeheader()
    for t in tables:
        for row in t["verdicts"]:
            w.writerow({k: row.get(k) for k in CSV_KEYS})
    from steerlab.artifacts import atomic_path

    with atomic_path(folder / SUMMARY_CSV) as tmp:
        Path(tmp).write_text(buf.getvalue())
    write_report(folder, clean_json(doc), examples)
    return doc
