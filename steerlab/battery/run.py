"""``steerlab steerability``: every chosen concept into its own subfolder, and one summary.

``OUT/<concept>/`` is each concept's run folder (:func:`steerlab.battery.runner.run_concept`;
for ``partial`` the folder ``steerlab partials`` writes, through the concept's ``delegate``),
``OUT/steerability.json`` the verdicts of every concept with their controls, null, oracle and
validation, ``OUT/summary.csv`` one line per verdict, ``OUT/report.html`` the page to read and
listen to (:mod:`steerlab.battery.report`; each concept's example audio in its
``examples/``). Concepts are independent: each resumes on
its own, and a rerun with the same arguments skips what is done.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from steerlab.battery.runner import BarFactory, _NullBar

SUMMARY_JSON, SUMMARY_CSV = "steerability.json", "summary.csv"
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
    in this process."""
    from steerlab.battery.runner import check_executor_device
    from steerlab.executors import matching_threads

    check_executor_device(executor, device)
    with matching_threads(executor):  # the directions, verdicts' decodes and examples too (executors)
        return _run_battery(
            names, model, out_dir, quick, layers, bar, notify, config_file, dictionaries, device, executor
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
    executor: Any,
) -> dict[str, Any]:
    from steerlab.artifacts import atomic_write_json, clean_json
    from steerlab.battery.registry import concepts
    from steerlab.battery.report import write_report
    from steerlab.battery.runner import run_concept, save_examples
    from steerlab.battery.verdicts import table, verdicts
    from steerlab.partials import build

    reg = concepts()
    chosen = [reg.get(n) for n in dict.fromkeys(names)] if names else list(reg)
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
        sub = folder / concept.name
        notify(f"concept {concept.name} -> {sub}")
        if concept.delegate is not None:
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
            executor=executor,
        )
        vs = verdicts(concept, outcome.rows, cfg.run.bootstrap, cfg.run.seed)
        t = table(concept, vs, outcome.plans)
        atomic_write_json(clean_json(t), sub / "verdicts.json")
        examples[concept.name] = save_examples(outcome, t, cfg.run.max_batch)
        tables.append(t)
    doc = {"model": cfg.run.model, "quick": quick, "concepts": tables}
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
