"""``steerlab steerability``: every chosen concept into its own subfolder, and one summary.

``OUT/<concept>/`` is each concept's run folder (:func:`steerlab.battery.runner.run_concept`;
for ``partial`` the folder ``steerlab partials`` writes, through the concept's ``delegate``),
``OUT/steerability.json`` the verdicts of every concept with their controls, null, oracle and
validation, ``OUT/summary.csv`` one line per verdict, ``OUT/report.html`` the page to read and
listen to (:mod:`steerlab.battery.report`; each concept's example audio in its
``examples/``), ``OUT/battery.json`` the settings the folder was started with
(:func:`check_folder`: a rerun with other settings is refused before anything is written).
Concepts are independent: each resumes on its own, and a rerun with the same arguments skips
what is done.

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
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from steerlab.battery.runner import BarFactory, _NullBar

SUMMARY_JSON, SUMMARY_CSV, BATTERY_FILE = "steerability.json", "summary.csv", "battery.json"
BATTERY_FORMAT, BATTERY_FORMAT_VERSION = "steerlab.battery", 1
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
    "best_add_strength_unit",  # last: a column added after the others (issue 15)
)


def _partial_table(concept: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """partials' own verdicts (``steerlab partials``' report: its rows, controls and validation)
    in the battery's shape (:func:`steerlab.battery.verdicts.table`): ``controls`` the models
    that vouched (model -> why, from the concept), ``no_control_reason``, ``validation`` as every
    concept's, and partials' own control counts as ``control_summary``; each verdict's fields as
    partials names them, and beside them the battery's names (``variant`` the stimulus family,
    ``target_add`` the gain, ``target_remove`` minus the loss, ``damage_*`` the off-band
    distance), its label, validation with its reason, and null."""
    from steerlab.battery.concept import no_control_reason
    from steerlab.partials.verdicts import label, validation

    vs = summary.get("verdicts", [])
    val = validation(vs)
    nulls = {
        (v.model, v.layer, v.family, v.target_hz, v.density, v.path, v.removal): v for v in vs if v.method == "random"
    }
    ran = (summary.get("controls") or {}).get("positive_models", [])
    rows = []
    for v in vs:
        f = v.flat()
        per = val.get((v.method, v.removal), {}).get("by_control", {})
        null = nulls.get((v.model, v.layer, v.family, v.target_hz, v.density, v.path, v.removal))
        rows.append(
            {
                **f,
                "concept": "partial",
                "variant": v.family,
                "label": label(v, val),
                "best_add_strength_unit": "rms",  # partials' add: strength x the RMS norm (docs/partials.md)
                "validation": val.get((v.method, v.removal), {}).get("status"),
                "validation_reason": val.get((v.method, v.removal), {}).get("reason"),
                "control": {  # as every concept's: steerable on every cell of the same method and removal
                    c: None if not per.get(c, {}).get("total") else per[c]["steerable"] == per[c]["total"] for c in ran
                },
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
        "controls": {m: why for m, why in dict(concept.controls).items() if m in ran},
        "no_control_reason": no_control_reason(concept),
        "validation": {f"{m}/{r}": st for (m, r), st in val.items()},
        "control_summary": summary.get("controls"),
        "verdicts": rows,
    }


def _settings(
    names: Sequence[str],
    model: str,
    quick: bool,
    layers: Sequence[str],
    dictionaries: Sequence[str | Path],
    stimuli: str,
    cfg: Any,
) -> dict[str, Any]:
    """What ``battery.json`` records: the arguments that decide what the battery's folder holds
    (not the device or the executor: the rows do not depend on them), as JSON reads them back."""
    from steerlab.artifacts import clean_json

    record = {
        "format": BATTERY_FORMAT,
        "format_version": BATTERY_FORMAT_VERSION,
        "concepts": list(names),
        "stimuli": stimuli,
        "model": model,
        "quick": quick,
        "layers": list(layers),
        "dictionaries": [str(d) for d in dictionaries],
        "config": cfg.to_dict(),
    }
    return cast(dict[str, Any], json.loads(json.dumps(clean_json(record))))


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The settings that differ, each as ``name held (this run: value)``; the concepts as sets
    (their order only orders the tables), the configuration per ``[section] key``."""
    out = []
    for key in ("concepts", "stimuli", "model", "quick", "layers", "dictionaries"):
        a, b = old.get(key), new.get(key)
        if key == "concepts" and a is not None and sorted(a) == sorted(b or []):
            continue
        if key in old and a != b:
            show = (lambda v: ",".join(v) or "-") if isinstance(b, list) else str
            out.append(f"{key} {show(a)} (this run: {show(b)})")
    if "config" in old:
        from steerlab.partials.runner import config_differences

        out += config_differences(old["config"], new.get("config", {}))
    return out


def check_folder(folder: Path, settings: dict[str, Any]) -> None:
    """Refuse ``folder`` when it holds a battery run of other settings (:func:`_settings`), in
    one line naming the folder and what differs, before anything is written
    (:class:`~steerlab.errors.PlanError`). Read from ``battery.json``; a folder written before
    that file existed is judged by its ``steerability.json`` (concepts, model, quick, stimuli);
    one holding a ``run.json`` (a ``steerlab partials`` run, a concept's folder) is refused.
    The same settings resume; each concept's folder is checked again by its own hash."""
    from steerlab.errors import OutputError, PlanError

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output {folder} exists and is not a folder; choose a new folder name")
    record, summary = folder / BATTERY_FILE, folder / SUMMARY_JSON
    try:
        if record.is_file():
            held = json.loads(record.read_text())
        elif summary.is_file():
            doc = json.loads(summary.read_text())
            held = {
                "concepts": list(dict.fromkeys(t["concept"] for t in doc["concepts"])),
                "stimuli": doc.get("stimuli", "synthetic"),
                "model": doc.get("model") or settings["model"],
                "quick": doc.get("quick"),
            }
        elif (folder / "run.json").is_file():  # a `steerlab partials` folder, or one concept's
            raise PlanError(
                f"{folder} holds another kind of run (its run.json: a steerlab partials or a single concept's "
                "folder), not a steerability battery; use a new output folder"
            )
        else:
            return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PlanError(f"{folder} holds an unreadable steerability run ({exc}); use a new output folder") from None
    diffs = _differences(held, settings)
    if diffs:
        from steerlab.partials.runner import other_settings

        raise other_settings(folder, "steerability", diffs)


def variants_of(stimuli: str) -> tuple[str, ...]:
    """The variants a ``--stimuli`` choice runs, in order."""
    return ("synthetic", "instrument") if stimuli == "both" else (stimuli,)


def variants_run(concept: Any, stimuli: str) -> tuple[str, ...]:
    """The variants the battery runs ``concept`` on under ``stimuli`` (one of :data:`STIMULI`):
    with ``both`` those it renders; a variant named alone, that one (ConfigError for a concept
    that does not render it, before anything is written); a concept with a ``delegate``
    (``partial``) keeps its own stimuli whatever is asked (:func:`steerlab.battery.plan.own_stimuli`
    says so) and is run, and checked, on its synthetic pairs."""
    from steerlab.battery.plan import check_variant, renders

    if concept.delegate is not None:
        return ("synthetic",)
    if stimuli == "both":
        return tuple(v for v in variants_of(stimuli) if renders(concept, v))
    check_variant(concept, stimuli)
    return (stimuli,)


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


def _write_settings(folder: Path, settings: dict[str, Any]) -> None:
    from steerlab.artifacts import atomic_write_json, clean_json
    from steerlab.errors import OutputError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}; choose a writable folder") from None
    atomic_write_json(clean_json(settings), folder / BATTERY_FILE)


def _prepare_all(
    chosen: Sequence[Any],
    own: dict[str, tuple[str, ...]],
    cfg: Any,
    quick: bool,
    layers: Sequence[str],
    dictionaries: Sequence[str | Path],
    device: Any,
    folder: Path,
) -> dict[str, Any]:
    """Plan every concept's variant (its layers, dictionaries and pairs), keyed by its folder's
    name, before ``battery.json`` or any concept's folder is written, and before any folder is
    read: a mistyped layer or dictionary or a layer a concept cannot use raises here, as what it
    is, even when ``-o`` names a run of other settings (:func:`_check_folders` then checks the
    folders). The dictionaries are resolved against the measured model for a delegating concept
    too (it plans its own layers when it runs)."""
    from steerlab.battery.runner import prepare

    out: dict[str, Any] = {}
    for concept in chosen:
        if concept.delegate is not None:
            continue
        for variant in own[concept.name]:
            sub = folder / variant_folder(concept.name, variant)
            out[sub.name] = prepare(concept, cfg, cfg.run.model, quick, layers, dictionaries, device, variant)
    if dictionaries and any(c.delegate is not None for c in chosen):
        from steerlab import api
        from steerlab.errors import DictionaryError, PlanError

        model = api.load_model(cfg.run.model, device=device)
        for spec in dictionaries:
            try:
                api.resolve_dictionary(spec, model)
            except DictionaryError as exc:
                raise PlanError(str(exc)) from None
    return out


def _check_folders(folder: Path, settings: dict[str, Any], prepared: dict[str, Any]) -> None:
    """The battery's folder (:func:`check_folder`), then each planned concept folder by its own hash:
    a concept folder of another configuration raises here, so a corrected rerun starts clean."""
    from steerlab.battery.runner import _check_folder

    check_folder(folder, settings)
    for name, plan in prepared.items():
        _check_folder(folder / name, plan[1])


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
    from steerlab.battery.plan import own_stimuli
    from steerlab.battery.registry import concepts
    from steerlab.battery.report import write_report
    from steerlab.battery.runner import run_concept, save_examples
    from steerlab.battery.verdicts import table, verdicts
    from steerlab.partials import build

    reg = concepts()
    chosen = [reg.get(n) for n in dict.fromkeys(names)] if names else list(reg)
    variants = variants_of(check.choice("stimuli", stimuli, STIMULI))
    own = {concept.name: variants_run(concept, stimuli) for concept in chosen}  # refused ones raise here
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
    from steerlab.loading import default_model_name

    folder = Path(out_dir)
    settings = _settings(
        [c.name for c in chosen], cfg.run.model or default_model_name(), quick, layers, dictionaries, stimuli, cfg
    )
    prepared = _prepare_all(chosen, own, cfg, quick, layers, dictionaries, device, folder)  # arguments first
    _check_folders(folder, settings, prepared)
    if not (folder / BATTERY_FILE).is_file():
        _write_settings(folder, settings)
    else:  # a rerun: what a killed atomic write left in the battery's folders (its concepts' too)
        from steerlab.artifacts import remove_stale_temporaries

        remove_stale_temporaries(folder)
    tables = []
    examples: dict[str, dict[str, Any]] = {}
    for concept in chosen:
        mine = own[concept.name]
        sub = folder / variant_folder(concept.name, mine[0])
        notify(f"concept {concept.name} -> {sub}")
        if concept.delegate is not None:
            if (note := own_stimuli(concept, stimuli)) is not None:
                notify(note)
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
            tables.append(_partial_table(concept, summary))
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
                prepared=prepared[sub.name],
            )
            vs = verdicts(concept, outcome.rows, cfg.run.bootstrap, cfg.run.seed)
            t = table(concept, vs, outcome.plans)
            if variant != "synthetic":  # only then: a synthetic table keeps its keys
                t = {**t, "variant": variant, "folder": sub.name}
            atomic_write_json(clean_json(t), sub / "verdicts.json")
            examples[sub.name] = save_examples(outcome, t, cfg.run.max_batch)
            tables.append(t)
    doc = {"model": settings["model"], "quick": quick, "stimuli": stimuli, "concepts": tables}
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
