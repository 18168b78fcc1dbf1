"""``steerlab survey``: where do the variables live? One row per (model, layer), every statistic
beside its chance reference (issue 15, section 2).

:func:`run_survey` loads each model and its random-weights twin (the same architecture
re-initialised through the model's own loader with ``random_init``, the torch seed recorded),
captures each chosen layer over the corpus (:func:`steerlab.analysis.data.capture`), learns
dictionaries on it (:mod:`steerlab.survey.measure`), probes every registered concept's pairs,
reads the battery's verdicts (:mod:`steerlab.survey.battery`) and the architecture's prediction
(:func:`steerlab.arch.predict` for the ``partial`` concept's quick target, 1200 Hz in a harmonic
mixture of density 4 on 220 Hz), and ranks prediction against measurement
(:func:`steerlab.arch.rank_agreement`). It returns the report document (plain JSON data) and
per-stage wall times; :mod:`steerlab.survey.report` writes it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from steerlab.survey import battery as battery_io
from steerlab.survey import measure
from steerlab.survey.config import SurveyConfig

REPORT_FORMAT, REPORT_VERSION = "steerlab-survey-report", 1
PARTIAL_TARGET_HZ, PARTIAL_DENSITY, PARTIAL_F0 = 1200.0, 4, 220.0
STATS = ("participation_ratio", "coverage", "explained_variance", "usage_top_share", "stability", "narrowband")


class _Timer:
    """Wall time per named stage, summed over models and layers."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


def _random_twin(name: str, seed: int, device: Any = "auto") -> tuple[Any, str | None]:
    """The random-weights model (or None) and, when None, why."""
    import torch

    from steerlab.errors import SteerlabError
    from steerlab.loading import load_model

    torch.manual_seed(seed)
    try:
        return load_model(name, random_init=True, device=device), None
    except SteerlabError as exc:
        return None, f"the model's loader gives no random-weights model: {exc}"


def _prediction(model: Any) -> tuple[dict[str, Any], str | None]:
    """Arch score of the partial concept's target per layer name, or the reason there is none."""
    from steerlab.arch import Mixture, predict
    from steerlab.errors import ArchError
    from steerlab.loading import layers

    try:
        rep = predict(
            list(layers(model)), (PARTIAL_TARGET_HZ,), (PARTIAL_DENSITY,), Mixture("harmonic", PARTIAL_F0), model.name
        )
    except ArchError as exc:
        return {}, f"no architecture prediction: {exc}"
    return {lp.layer.name: lp.predictions[0] for lp in rep.layers}, None


def _layer_json(info: Any) -> dict[str, Any]:
    out = info.to_json()
    if out.get("kernel_size") is None:
        out["kernel_size_reason"] = f"a {info.kind} layer has no single convolution kernel"
    return out


def _layers_for(model: Any, names: tuple[str, ...]) -> list[Any]:
    from steerlab.loading import layers

    if not names:
        return measure.default_layers(model)
    reg = layers(model)
    return measure.unique_tensors(reg, [reg.get(n) for n in names])


def _other_names(reg: Any, info: Any) -> dict[str, Any]:
    """The row's note of the other names of its tensor (registry aliases and layers declared the
    same tensor), empty when it has none."""
    others = [n for n in reg.names_of_tensor(info.name) if n != info.name]
    if not others:
        return {}
    return {
        "also_named": others,
        "also_named_why": "the same tensor (the model's layer table declares it): measured once, in this row",
    }


def _survey_model(name: str, cfg: SurveyConfig, concepts: list, battery: tuple[list, bool], timer: _Timer, say) -> dict:
    from steerlab.analysis.data import capture
    from steerlab.capture import Corpus
    from steerlab.loading import layers, load_model

    model = timer("load", lambda: load_model(name, device=cfg.device))
    twin_seed = cfg.seed
    twin, twin_why = timer("load", lambda: _random_twin(name, twin_seed, cfg.device))
    if twin is not None and twin.weights_hash() == model.weights_hash():
        twin, twin_why = None, "the random-weights model equals the model (it has no learned weights)"
    chosen = _layers_for(model, cfg.layers)
    reg = layers(model)
    corpus = Corpus.for_model(model, cfg.corpus_specs, seed=cfg.seed, clip_seconds=cfg.sizes.clip_seconds)
    pred, pred_why = _prediction(model)
    feats = timer("probes", lambda: measure.concept_features(model, chosen, concepts, cfg, say))
    rfeats = timer("probes", lambda: measure.concept_features(twin, chosen, concepts, cfg, say)) if twin else None
    rows = []
    user_data = bool(cfg.data)
    for info in chosen:
        say(f"{model.name} {info.name}: capturing, learning {len(cfg.sizes.dictionary_seeds)} dictionaries")
        n = cfg.sizes.max_vectors
        cap = timer("capture", capture, model, info, corpus, "feature", n, cfg.seed, user_data=user_data)
        rcap = timer("capture", capture, twin, info, corpus, "feature", n, cfg.seed, user_data=False) if twin else None
        dicts = timer("dictionaries", measure.dictionaries, cap.vectors, info.channels, cfg)
        ds = timer("dictionary statistics", measure.dictionary_stats, cap.vectors, dicts, cfg)
        nb = timer("narrowband", measure.narrowband, model, info, corpus, cap, ds, cfg)
        random_vectors = None if rcap is None else rcap.vectors.astype(np.float64)
        pr = measure.participation(cap.vectors, random_vectors, twin_why, cfg)
        dec = timer("probes", measure.decodability, feats, rfeats, info.name, cfg)
        row: dict[str, Any] = {
            "model": model.name,
            "layer": info.name,
            "layer_info": _layer_json(info),
            **_other_names(reg, info),
            "n_vectors": int(len(cap.vectors)),
            "data_sha256": cap.sha256,
            "participation_ratio": pr,
            **{k: ds.pop(k) for k in ("coverage", "explained_variance", "usage_top_share", "stability")},
            "narrowband": nb,
            "dictionary": {k: v for k, v in ds.items() if not k.startswith("_")},
            "decodability": dec,
            "battery": {
                c.name: battery_io.verdict(
                    battery[0], model.name, info.name, c.name, battery[1], reg.names_of_tensor(info.name)
                )
                for c in concepts
            },
        }
        p = pred.get(info.name)
        row["prediction"] = (
            {
                "partial_score": p.score,
                "survives": p.survives,
                "target_hz": PARTIAL_TARGET_HZ,
                "density": PARTIAL_DENSITY,
            }
            if p is not None
            else {"partial_score": None, "partial_score_reason": pred_why or f"no prediction for {info.name}"}
        )
        rows.append(row)
    return {
        "model": {
            "name": model.name,
            "weights_hash": model.weights_hash(),
            "sample_rate": model.sample_rate,
            "layers": [info.name for info in chosen],
            "random_weights": (
                {"torch_seed": twin_seed, "weights_hash": twin.weights_hash(), "how": "the loader's random_init"}
                if twin is not None
                else {"weights_hash": None, "reason": twin_why}
            ),
        },
        "rows": rows,
    }


def _agreement(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Spearman rank agreement of the arch prediction (partial score) with two measurements over
    every row: the partial concept's held-out probe accuracy and the battery's pass share."""
    from steerlab.arch import rank_agreement

    pred = [r["prediction"].get("partial_score") for r in rows]
    out: dict[str, Any] = {"prediction": "steerlab.arch partial score (1200 Hz, harmonic density 4 on 220 Hz)"}
    measured = {
        "partial_decodability": [r["decodability"].get("partial", {}).get("value") for r in rows],
        "partial_battery_pass_share": [r["battery"].get("partial", {}).get("pass_share") for r in rows],
    }
    for key, vals in measured.items():
        rho = rank_agreement(pred, vals)
        n = sum(1 for p, m in zip(pred, vals) if p is not None and m is not None)
        out[key] = {"spearman": rho, "n_rows": n}
        if rho is None:
            out[key]["spearman_reason"] = (
                f"undefined over {n} row(s) with both values: fewer than two, or one side constant"
            )
    return out


def run_survey(cfg: SurveyConfig, progress: Callable[[str], None] | None = None) -> tuple[dict[str, Any], dict]:
    """Measure every (model, layer) of ``cfg``; returns ``(report document, stage seconds)``.
    Raises steerlab's errors for unknown models, layers, concepts and unreadable data or
    battery folders before any model runs where it can."""
    from steerlab import devices, provenance
    from steerlab.artifacts import config_hash
    from steerlab.battery.registry import concepts as concept_registry
    from steerlab.capture import Corpus
    from steerlab.loading import default_model_name
    from steerlab.plugins import models

    started = time.time()
    say = progress or (lambda m: None)
    timer = _Timer()
    cfg = dataclasses.replace(cfg, models=tuple(m or default_model_name() for m in cfg.models))
    for m in cfg.models:
        models().get(str(m))  # unknown names fail now, with the nearest name
    reg = concept_registry()
    chosen = [reg.get(n) for n in cfg.concepts] if cfg.concepts else list(reg)
    bat = battery_io.read(cfg.battery)
    if cfg.data:
        Corpus(cfg.corpus_specs, 24_000, 1).check_files()  # missing or bad files: one line, before any model
    results = [_survey_model(str(m), cfg, chosen, (bat[0], bool(cfg.battery)), timer, say) for m in cfg.models]
    rows = [r for res in results for r in res["rows"]]
    conf = cfg.to_json()
    doc = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "config": conf,
        "config_hash": config_hash(conf),
        "statistics": list(STATS),
        "concepts": [c.name for c in chosen],
        "models": [res["model"] for res in results],
        "rows": rows,
        "rank_agreement": _agreement(rows),
        "stage_seconds": timer.seconds,
        "provenance": provenance.record(
            inputs=[*cfg.corpus_specs, *bat[1]],
            started=started,
            seeds={"run": cfg.seed, "dictionaries": list(cfg.sizes.dictionary_seeds), "random_weights_torch": cfg.seed},
            weights_hashes={res["model"]["name"]: res["model"]["weights_hash"] for res in results},
            data_hashes={f"{r['model']} {r['layer']}": r["data_sha256"] for r in rows},
            config_hash=config_hash(conf),
            device=devices.resolve(cfg.device),
        ),
    }
    return doc, timer.seconds
