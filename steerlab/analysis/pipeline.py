"""Run the analyses of a dictionary over a corpus: what ``steerlab analyze`` does.

:func:`analyze` checks that the dictionary fits the model (the one check of every
command, :func:`steerlab.learned.check_dictionary_fits`), captures the dictionary's
layer over the corpus once (:func:`steerlab.analysis.data.capture`), encodes it with
the dictionary's SAE, runs the selected analyses a-j and returns a report document
(plain JSON-able data) plus one PNG per analysis; :mod:`steerlab.analysis.report`
writes both. Retrained SAEs (stability, data and weights dependence) use the
dictionary's own SAE config with another seed (and ``epochs`` if given) and are
cached, so the run on the analysis data with the first seed serves e, f and g.

All vectors are measured relative to the SAE's decoder offset ``center + scale *
b_dec`` (the point its codes move away from; about the data mean for features,
about zero for archetypes), so cosines and projections use the dictionary's own
geometry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.analysis import dynamics, geometry, plots, spectra
from steerlab.analysis.data import Captured, activations, capture, fragments_for
from steerlab.analysis.options import ANALYSES, LETTERS, AnalysisOptions
from steerlab.analysis.reference import POST1, TITLES
from steerlab.artifacts import config_hash
from steerlab.learned import check_dictionary_fits

REPORT_FORMAT, REPORT_VERSION = "steerlab-analysis-report", 1

#: analyses that do not apply to a dictionary target (features or archetypes), and why (said in the report)
NOT_APPLICABLE = {
    "feature": {
        "locality": (
            "locality asks whether a motion g_t = r_(t+1) - r_t can be predicted from where it starts (r_t); "
            "a feature is a direction of r_t itself, so predicting it from r_t holds by construction (the "
            "SAE encoder is such a predictor) and would measure nothing. Run it on an archetype dictionary."
        ),
    },
    "archetype": {},
}


def _sha256_file(path: Path) -> str | None:
    from steerlab.artifacts import file_sha256

    return file_sha256(path) if path.is_file() else None


def encode(sae: Any, x: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """SAE codes ``[n, size]`` of raw vectors ``x [n, width]``."""
    import torch

    with torch.no_grad():
        return (
            np.concatenate(
                [
                    sae.encode(torch.from_numpy(np.ascontiguousarray(x[i : i + chunk]))).numpy()
                    for i in range(0, max(len(x), 1), chunk)
                ]
            )
            if len(x)
            else np.zeros((0, sae.config.size))
        )


def offset_of(sae: Any) -> np.ndarray:
    """The decoder's offset ``center + scale * b_dec`` (the reconstruction of an all-zero code)."""
    import torch

    with torch.no_grad():
        return sae.decode(torch.zeros(1, sae.config.size))[0].double().numpy()


class _Retrained:
    """An SAE retrained on some vectors, and what the analyses need from it."""

    def __init__(self, sae: Any, metrics: dict[str, Any], vectors: np.ndarray, active_rel: float):
        self.sae, self.metrics = sae, metrics
        self.directions = sae.directions.double().numpy()
        self.codes = encode(sae, vectors)
        self.order = geometry.usage_order(self.codes, active_rel)
        self.usage = geometry.usage(self.codes, active_rel)


class _Run:
    """State shared by the analyses of one report."""

    versions: dict[str, str]  # set by the caller before any analysis runs
    dict_config_sha: str | None  # likewise: the dictionary's config.json hash

    def __init__(
        self,
        d: Any,
        model: Any,
        info: Any,
        corpus: Any,
        opts: AnalysisOptions,
        cap: Captured,
        load: Callable[[], Any] | None,
        progress: Callable[[str], None],
    ):
        self.d, self.model, self.info, self.corpus, self.opts, self.cap = d, model, info, corpus, opts, cap
        self.load, self.say = load, progress
        self.target = d.target
        self.dirs = d.directions.double().numpy()
        self.offset = offset_of(d.sae)
        self.codes = encode(d.sae, cap.vectors)
        self.x = cap.vectors.astype(np.float64) - self.offset
        self.usage = geometry.usage(self.codes, opts.active_rel)
        self.order = geometry.usage_order(self.codes, opts.active_rel)
        self.top_n = min(opts.top_n, len(self.dirs))
        self.rng = np.random.default_rng(opts.seed)
        self._cache: dict[tuple, _Retrained] = {}
        self.captures: dict[str, Captured] = {"real": cap}

    def retrain(self, key: str, vectors: np.ndarray, seed: int) -> _Retrained:
        """An SAE with the dictionary's config and ``seed`` on ``vectors`` (cached by ``key``)."""
        import torch

        from steerlab import devices
        from steerlab.sae import train_sae

        if (key, seed) not in self._cache:
            cfg = dataclasses.replace(self.d.config, seed=seed, epochs=self.opts.epochs or self.d.config.epochs)
            self.say(f"training an SAE on {key} vectors ({len(vectors)}), seed {seed}, {cfg.epochs} epochs")
            # the analysis data was checked for variance; reference sets (flat:N) may have none by design
            sae, metrics = train_sae(
                torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)),
                cfg,
                allow_no_variance=True,
                device=devices.of(self.model),  # where the model runs
            )
            self._cache[(key, seed)] = _Retrained(sae, metrics, vectors, self.opts.active_rel)
        return self._cache[(key, seed)]

    def provenance(self, seeds: list[int] | None = None, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "seeds": seeds if seeds is not None else [self.opts.seed],
            "dictionary_config_sha256": self.dict_config_sha,
            "model_weights_hash": self.model.weights_hash(),
            "data": data or {"description": self.cap.description, "sha256": self.cap.sha256},
            "versions": self.versions,
        }


# ----------------------------------------------------------------------------------------------------------- a-j


def _coverage(run: _Run) -> dict[str, Any]:
    o = run.opts
    cov = geometry.coverage(run.x, run.dirs, o.coverage_threshold)
    rand = [
        geometry.coverage(
            run.x, geometry.random_directions(len(run.dirs), run.x.shape[1], run.rng), o.coverage_threshold
        )
        for _ in range(o.random_draws)
    ]
    rand_curve = {
        "thresholds": cov["curve"]["thresholds"],
        "share_covered": list(np.mean([r["curve"]["share_covered"] for r in rand], axis=0)),
    }
    keys = ("threshold", "share_covered", "mean_best_cosine", "mean_best_cosine_covered")
    summary = {k: cov[k] for k in (*keys, "mean_best_cosine_covered_reason", "directions_used") if k in cov}
    summary["random_share_covered"] = float(np.mean([r["share_covered"] for r in rand]))
    summary["random_mean_best_cosine"] = float(np.mean([r["mean_best_cosine"] for r in rand]))
    what = "response vectors" if run.target == "feature" else "generators"
    headline = (
        f"{summary['share_covered']:.1%} of {what} have a nearest direction at cosine >= "
        f"{o.coverage_threshold:g} (mean best cosine {summary['mean_best_cosine']:.2f}); "
        f"{len(run.dirs)} random directions: {summary['random_share_covered']:.1%}, "
        f"mean {summary['random_mean_best_cosine']:.2f}"
    )
    fig = plots.coverage(cov["best_cosines"], cov["curve"], rand_curve, o.coverage_threshold)
    return {
        "summary": summary,
        "table": {"curve": cov["curve"], "random_curve": rand_curve},
        "headline": headline,
        "figure": fig,
    }


def _dictionary_learning_atoms(run: _Run) -> np.ndarray:
    """Atoms of a classical (scikit-learn) dictionary of the same size and sparsity, most used first."""
    from sklearn.decomposition import MiniBatchDictionaryLearning

    o, cfg = run.opts, run.d.config
    n = min(o.dl_vectors, len(run.x))
    sample = run.x[np.sort(run.rng.choice(len(run.x), n, replace=False))]
    k = min(cfg.k, run.x.shape[1])
    dl = MiniBatchDictionaryLearning(
        n_components=cfg.size,
        alpha=0.1,
        batch_size=256,
        max_iter=20 if o.quick else 100,
        transform_algorithm="omp",
        transform_n_nonzero_coefs=k,
        random_state=o.seed,
    )
    dl.fit(sample)
    codes = np.abs(dl.transform(sample))
    order = geometry.usage_order(codes, o.active_rel)
    return geometry.unit_rows(dl.components_)[order]


def _m_to_reach(ms: Sequence[int], errors: Sequence[float], tols: Sequence[float] = (1e-1, 1e-2, 1e-6)) -> dict:
    """``{"error<=TOL": the first m of ``ms`` whose error is <= TOL}`` for each tolerance; a
    tolerance never reached is None with ``"error<=TOL_reason"`` saying so (the directions
    tried and the smallest error met)."""
    out: dict[str, Any] = {}
    for tol in tols:
        key = f"error<={tol:g}"
        out[key] = next((int(m) for m, y in zip(ms, errors) if y <= tol), None)
        if out[key] is None:
            out[f"{key}_reason"] = (
                f"not reached within the {ms[-1]} directions tried (the smallest error, "
                f"at m = {ms[int(np.argmin(errors))]}, is {min(errors):.3g})"
            )
    return out


def _reconstruction(run: _Run) -> dict[str, Any]:
    o = run.opts
    width, size = run.x.shape[1], len(run.dirs)
    ms = geometry.m_grid(size, width)
    curves: dict[str, list[float]] = {
        "dictionary (most used first)": geometry.error_curve(run.x, run.dirs[run.order], ms)
    }
    draws = [
        geometry.error_curve(run.x, geometry.random_directions(size, width, run.rng), ms) for _ in range(o.random_draws)
    ]
    curves["random directions"] = list(np.mean(draws, axis=0))
    curves["dictionary learning (scikit-learn)"] = geometry.error_curve(run.x, _dictionary_learning_atoms(run), ms)
    _, _, vt = np.linalg.svd(run.x, full_matrices=False)
    curves["PCA (best m-dim subspace)"] = geometry.error_curve(run.x, vt, ms)
    at = {m: ms.index(m) for m in sorted({max(1, width // 2), run.top_n, min(width, size), size}) if m in ms}
    summary = {name: {f"m={m}": ys[i] for m, i in at.items()} for name, ys in curves.items()}
    # with fewer channels than top_n every method is exact at m = top_n; the m needed to reach an error says more
    reach = {name: _m_to_reach(ms, ys) for name, ys in curves.items()}
    # one vector of median norm and its least-squares reconstruction from the 4 most used directions (Figure 7b)
    norms = np.linalg.norm(run.x, axis=1)
    row = run.x[int(np.argsort(norms)[len(norms) // 2])]
    basis = run.dirs[run.order[:4]]
    coef, *_ = np.linalg.lstsq(basis.T, row, rcond=None)
    example = {
        "m": int(len(basis)),
        "original": row.tolist(),
        "reconstruction": (basis.T @ coef).tolist(),
        "relative_error": float(((row - basis.T @ coef) ** 2).sum() / max((row**2).sum(), 1e-300)),
    }
    d, r, dl = (
        summary[n].get(f"m={run.top_n}")
        for n in ("dictionary (most used first)", "random directions", "dictionary learning (scikit-learn)")
    )
    full = summary["dictionary (most used first)"].get(f"m={size}")
    headline = (
        f"relative squared error with the {run.top_n} most used directions {d:.3g}; {run.top_n} random "
        f"directions {r:.3g}; {run.top_n} dictionary-learning atoms {dl:.3g}; all {size}: {full:.3g}"
        f" (the layer has {width} channels, so any {width} independent directions reconstruct exactly); "
        "directions needed for error <= 0.01: "
        + ", ".join(
            f"{n.split(' (')[0]} "
            + (str(r["error<=0.01"]) if r["error<=0.01"] is not None else f"not reached within {ms[-1]}")
            for n, r in reach.items()
        )
    )
    fig = plots.reconstruction(ms, curves, run.top_n, example)
    return {
        "summary": {
            "error_definition": "sum ||x - P_m x||^2 / sum ||x||^2, P_m the orthogonal projection onto "
            "the span of the first m directions, x relative to the decoder offset",
            "at": summary,
            "m_to_reach": reach,
            "example": example,
        },
        "table": {"m": ms, "curves": curves},
        "headline": headline,
        "figure": fig,
    }


def _usage(run: _Run) -> dict[str, Any]:
    o = run.opts
    s = geometry.usage_summary(run.usage, run.top_n, o.usage_floor)
    s["active_rel"] = o.active_rel
    s["definition"] = (
        f"direction j is strongly active in a vector when its code > 0 and >= {o.active_rel:g} x "
        "the vector's largest code"
    )
    s["share_with_no_active_direction"] = float((run.codes.max(axis=1) <= 0).mean())
    table = [{"rank": i + 1, "direction": int(j), "usage": float(run.usage[j])} for i, j in enumerate(run.order)]
    headline = (
        f"{s['n_used_above_floor']} of {len(run.dirs)} directions are strongly active in >= "
        f"{o.usage_floor:.0%} of vectors; the {s['top_n']} most used carry "
        f"{s['top_n_share_of_activations']:.1%} of strong activations; {s['n_for_90_percent']} carry 90%"
    )
    fig = plots.usage(
        {"dictionary": s["sorted_usage"]},
        run.top_n,
        "share of vectors in which each direction is strongly active (sorted)",
    )
    return {
        "summary": {k: v for k, v in s.items() if k != "sorted_usage"},
        "table": table,
        "headline": headline,
        "figure": fig,
    }


def _redundancy(run: _Run) -> dict[str, Any]:
    o = run.opts
    ids = [int(j) for j in run.order[: run.top_n]]
    red = geometry.redundancy(run.dirs[ids], o.redundancy_threshold)
    rand = [
        geometry.redundancy(geometry.random_directions(len(ids), run.dirs.shape[1], run.rng), o.redundancy_threshold)[
            "mean_abs_offdiagonal"
        ]
        for _ in range(o.random_draws)
    ]
    summary = {k: v for k, v in red.items() if k != "matrix"}
    summary["random_mean_abs_offdiagonal"] = float(np.mean(rand))
    headline = (
        f"top {len(ids)}: mean |cosine| off the diagonal {summary['mean_abs_offdiagonal']:.2f} (random "
        f"directions in {run.dirs.shape[1]} dims: {summary['random_mean_abs_offdiagonal']:.2f}), max "
        f"{summary['max_abs_offdiagonal']:.2f}, {summary['pairs_above_threshold']} pairs above "
        f"{o.redundancy_threshold:g}"
    )
    fig = plots.redundancy(red["matrix"], ids, {i: run.dirs[i] for i in ids[:2]})
    return {
        "summary": summary,
        "table": {"directions": ids, "cosine": red["matrix"].tolist()},
        "headline": headline,
        "figure": fig,
    }


def _stability(run: _Run) -> dict[str, Any]:
    o = run.opts
    runs = [run.retrain("analysis data", run.cap.vectors, s) for s in o.seeds]
    dicts = [run.dirs] + [r.directions for r in runs]
    orders = [run.order] + [r.order for r in runs]
    labels = [f"dictionary (seed {run.d.config.seed})"] + [f"seed {s}" for s in o.seeds]
    st = geometry.stability(dicts, orders, run.top_n, labels)
    retrained_only = geometry.stability(dicts[1:], orders[1:], run.top_n, labels[1:])
    width, size = run.dirs.shape[1], len(run.dirs)
    rand = geometry.stability(
        [geometry.random_directions(size, width, run.rng) for _ in range(3)], [np.arange(size)] * 3, run.top_n
    )
    summary = {
        "top_n": run.top_n,
        "seeds": list(o.seeds),
        "mean_top_vs_top": st["mean_top_vs_top"],
        "mean_top_vs_all": st["mean_top_vs_all"],
        "retrained_only_mean_top_vs_top": retrained_only["mean_top_vs_top"],
        "random_mean_top_vs_top": rand["mean_top_vs_top"],
        "retrain_epochs": o.epochs or run.d.config.epochs,
        "explained_variance": {lab: r.metrics.get("explained_variance") for lab, r in zip(labels[1:], runs)},
    }
    headline = (
        f"mean Hungarian-matched cosine of the top {run.top_n} over {len(st['pairs'])} pairs of seeds: "
        f"{st['mean_top_vs_top']:.2f} (top vs all: {st['mean_top_vs_all']:.2f}; random directions: "
        f"{rand['mean_top_vs_top']:.2f})"
    )
    return {
        "summary": summary,
        "table": st["pairs"],
        "headline": headline,
        "figure": plots.stability(st["pairs"], rand["mean_top_vs_top"]),
        "seeds": [run.d.config.seed, *o.seeds],
    }


def _reasons(row: dict[str, Any], keys: tuple[str, ...], reason: str | None) -> None:
    """``KEY_reason`` beside each of ``keys`` that is null in ``row``."""
    for key in keys:
        if row.get(key) is None and key in row:
            row[f"{key}_reason"] = reason or "not measurable on this data"


def _variant_summary(run: _Run, cap: Captured, rt: _Retrained) -> dict[str, Any]:
    o = run.opts
    s = geometry.usage_summary(rt.usage, run.top_n, o.usage_floor)
    x = cap.vectors.astype(np.float64)
    sv = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2
    dims90 = int(np.searchsorted(np.cumsum(sv) / sv.sum(), 0.9) + 1) if sv.sum() > 0 else 0
    starts = cap.starts.astype(np.float64)
    spread = float(np.sqrt(((starts - starts.mean(axis=0)) ** 2).sum(axis=1).mean()))
    out = {
        "n_vectors": int(len(x)),
        "data_sha256": cap.sha256,
        "retrained_n_used_above_floor": s["n_used_above_floor"],
        "retrained_top_n_share_of_activations": s["top_n_share_of_activations"],
        "retrained_n_for_90_percent": s["n_for_90_percent"],
        "retrained_explained_variance": rt.metrics.get("explained_variance"),
        "top1_alignment_with_baseline": geometry.top1_alignment(rt.directions, rt.order, run.dirs, run.top_n),
        "pca_dims_for_90_percent_variance": dims90,
        "mean_vector_norm": float(np.linalg.norm(x, axis=1).mean()),
        "response_spread": spread,
    }
    _reasons(out, ("retrained_top_n_share_of_activations", "retrained_n_for_90_percent"), s.get("reason"))
    _reasons(out, ("retrained_explained_variance",), "the vectors do not vary (total sum of squares 0)")
    if run.target == "archetype":
        out["motion_over_spread"] = out["mean_vector_norm"] / spread if spread > 0 else None
        if spread <= 0:
            out["motion_over_spread_reason"] = "the starting vectors do not spread (spread 0): no ratio"
    out["_curve"] = s["sorted_usage"]
    return out


def _data(run: _Run) -> dict[str, Any]:
    from steerlab.capture import Corpus

    o = run.opts
    table, curves, align = {}, {}, {}
    for name in ("real", "noise", "flat"):
        if name == "real":
            cap = run.cap
        else:
            corpus = Corpus(
                [f"{name}:{o.reference_clips}"],
                run.corpus.sample_rate,
                run.corpus.channels,
                seed=o.seed,
                clip_seconds=run.corpus.clip_seconds,
            )
            run.say(f"capturing {name}:{o.reference_clips}")
            cap = run.captures[name] = capture(
                run.model, run.info, corpus, run.target, o.max_vectors, o.seed, user_data=False
            )
        key = "analysis data" if name == "real" else name
        rt = run.retrain(key, cap.vectors, o.seeds[0])
        row = _variant_summary(run, cap, rt)
        base_codes = encode(run.d.sae, cap.vectors)
        bs = geometry.usage_summary(geometry.usage(base_codes, o.active_rel), run.top_n, o.usage_floor)
        row.update(
            description=cap.description,
            baseline_n_used_above_floor=bs["n_used_above_floor"],
            baseline_top_n_share_of_activations=bs["top_n_share_of_activations"],
            baseline_n_for_90_percent=bs["n_for_90_percent"],
            share_still=float(
                (
                    np.linalg.norm(cap.vectors, axis=1)
                    <= 1e-6 * max(float(np.linalg.norm(run.cap.vectors, axis=1).mean()), 1e-30)
                ).mean()
            ),
        )
        _reasons(row, ("baseline_top_n_share_of_activations", "baseline_n_for_90_percent"), bs.get("reason"))
        curves[f"{name} (dictionary)"] = bs["sorted_usage"]
        curves[f"{name} (retrained)"] = row.pop("_curve")
        align[name] = row["top1_alignment_with_baseline"]
        table[name] = row
    headline = (
        "top-1 cosine of each data set's retrained top directions with the dictionary: "
        + ", ".join(f"{n} {v:.2f}" for n, v in align.items())
        + "; directions used (dictionary, >= "
        f"{o.usage_floor:.0%}): " + ", ".join(f"{n} {t['baseline_n_used_above_floor']}" for n, t in table.items())
    )
    fig = plots.dependence(curves, align, run.top_n, "data dependence")
    return {
        "summary": {"top1_alignment": align, "retrain_seed": o.seeds[0]},
        "table": table,
        "headline": headline,
        "figure": fig,
        "seeds": [o.seeds[0], o.seed],
        "data": {n: {"description": run.captures[n].description, "sha256": run.captures[n].sha256} for n in table},
    }


def _weights(run: _Run) -> dict[str, Any]:
    from steerlab.analysis import weights

    o = run.opts
    table, curves, align, records = {}, {}, {}, {}
    for name in weights.VARIANTS:
        model, record = weights.variant(run.model, name, seed=o.seed, load=run.load)
        records[name] = record
        if name == "trained":
            cap = run.cap
        else:
            run.say(f"capturing the analysis data with {name} first-layer filters")
            cap = capture(model, run.info, run.corpus, run.target, o.max_vectors, o.seed)
        rt = run.retrain("analysis data" if name == "trained" else f"{name} weights", cap.vectors, o.seeds[0])
        row = _variant_summary(run, cap, rt)
        curves[f"{name} (retrained)"] = row.pop("_curve")
        align[name] = row["top1_alignment_with_baseline"]
        row["weights_hash"] = record["weights_hash"]
        table[name] = row
    headline = (
        "retrained on each first layer: directions used (>= "
        f"{o.usage_floor:.0%}): "
        + ", ".join(f"{n} {t['retrained_n_used_above_floor']}" for n, t in table.items())
        + "; 90% of strong activations in "
        + ", ".join(f"{n} {t['retrained_n_for_90_percent']}" for n, t in table.items())
        + "; data dims for 90% variance "
        + ", ".join(f"{n} {t['pca_dims_for_90_percent_variance']}" for n, t in table.items())
    )
    fig = plots.dependence(curves, align, run.top_n, "weights dependence")
    return {
        "summary": {"top1_alignment": align, "retrain_seed": o.seeds[0], "variants": records},
        "table": table,
        "headline": headline,
        "figure": fig,
        "seeds": [o.seeds[0], o.seed],
    }


def _locality(run: _Run) -> dict[str, Any]:
    o = run.opts
    loc = dynamics.locality(run.cap.starts, run.codes, run.top_n, o.test_share, o.seed, o.random_draws)
    table = loc.pop("dispersion")
    acc = loc.get("accuracy")
    headline = (
        f"held-out accuracy {acc:.1%} over {loc['n_classes']} archetypes (chance {loc['chance_uniform']:.1%}, "
        f"majority {loc['chance_majority']:.1%}); median radius / random radius "
        f"{loc.get('median_radius_ratio', float('nan')):.2f}"
        if acc is not None
        else f"not measurable: {loc.get('note')}"
    )
    fig = plots.locality(table, acc, loc.get("chance_uniform"), loc.get("chance_majority"))
    return {"summary": loc, "table": table, "headline": headline, "figure": fig}


def _fragments(run: _Run) -> dict[str, Any]:
    """Analysis i: the waveform fragments behind the most used directions and their spectra.

    Per direction, its top-activating captured vectors give the fragments, but only vectors
    whose frame is usable (:func:`steerlab.analysis.data.usable_rows`: the listening window
    and the receptive field with its warm-up lie inside the clip), so the spectra, the headline
    and the players hear real audio only, never zero padding; the random reference draws from
    the same usable vectors. A direction with fewer usable vectors than asked says so in its
    row (``n_reason``); one with none has null spectra with their reason."""
    from steerlab.analysis.data import USABLE_RULE, clip_lengths, usable_rows
    from steerlab.arch import main_lobe_hz

    o, info = run.opts, run.info
    span = info.receptive_field + (info.hop if run.target == "archetype" else 0)
    length = o.fragment_samples or max(256, 4 * span)
    sr = info.sample_rate
    band = o.band_hz or 3.0 * sr / length
    latents = [int(j) for j in run.order[: o.fragment_latents]]
    # the report plays longer windows than it analyses (their centres): both must hold real audio only
    listen = max(length, int(LISTEN_S * sr))
    samples = run.cap.clip_samples if run.cap.clip_samples is not None else clip_lengths(run.corpus)
    usable = usable_rows(run.cap.clip, run.cap.frame, samples, info, run.target, listen)
    where, cos, active = {}, {}, {}
    unit = geometry.unit_rows(run.x)
    for j in latents:
        pool = np.flatnonzero(usable & (run.codes[:, j] > 0))
        rows = pool[np.argsort(-run.codes[pool, j], kind="stable")[: o.fragments_per_latent]]
        where[f"direction {j}"] = (run.cap.clip[rows], run.cap.frame[rows])
        cos[j] = float((unit[rows] @ run.dirs[j]).mean()) if len(rows) else None
        active[j] = (int((run.codes[:, j] > 0).sum()), len(pool))
    pool = np.flatnonzero(usable)
    rand_rows = pool[run.rng.choice(len(pool), min(o.fragments_per_latent, len(pool)), replace=False)]
    where["random vectors"] = (run.cap.clip[rand_rows], run.cap.frame[rand_rows])
    heard = fragments_for(run.corpus, info, run.target, where, listen)
    frags = {name: f[:, listen // 2 - length // 2 :][:, :length] for name, f in heard.items()}
    lobe = main_lobe_hz(info)
    max_lag = max(1, min(max(info.receptive_field, info.hop), length // 4))
    table, panels = [], []
    for name, f in frags.items():
        row: dict[str, Any] = {"fragments_of": name, "n": int(len(f))}
        if name.startswith("direction"):
            j = int(name.split()[1])
            n_active, n_usable = active[j]
            why = (
                f"the direction is active in {n_active} captured vectors, {n_usable} of them usable "
                f"(summary usable_rule), {o.fragments_per_latent} asked"
            )
        else:
            why = f"{len(pool)} of {len(run.x)} captured vectors are usable (summary usable_rule)"
        if len(f) < o.fragments_per_latent:
            row["n_reason"] = f"fewer fragments than asked: {why}"
        if len(f):
            aligned, shifts = spectra.align(f, max_lag)
            rep = spectra.spectrum_report(aligned, sr, band)
            row.update(
                mean_spectrum=rep["mean_spectrum"],
                per_fragment_median=rep["per_fragment_median"],
                alignment_shifts=shifts.tolist(),
            )
            panels.append({"label": name, "fragments": aligned, "power": rep["_power"], "freqs": rep["_freqs"]})
        else:
            none = f"no fragment to measure: {why}"
            row.update(
                mean_spectrum=None,
                mean_spectrum_reason=none,
                per_fragment_median=None,
                per_fragment_median_reason=none,
                alignment_shifts=[],
            )
        if name.startswith("direction"):
            if cos[j] is None:
                row["mean_cosine_of_top_vectors_reason"] = f"no usable vector: {why}"
            row.update(
                direction=j,
                usage=float(run.usage[j]),
                mean_cosine_of_top_vectors=cos[j],
                mean_cosine_of_random_vectors=float((unit[rand_rows] @ run.dirs[j]).mean()) if len(rand_rows) else None,
            )
            if not len(rand_rows):
                row["mean_cosine_of_random_vectors_reason"] = why
        table.append(row)
    summary = {
        "fragment_samples": length,
        "fragment_ms": 1000 * length / sr,
        "band_hz": band,
        "layer_main_lobe_hz": lobe,
        "fragment_resolution_hz": sr / length,
        "max_alignment_lag": max_lag,
        "centring": "frame t at t*hop + hop/2; transition t -> t+1 at (t+1)*hop",
        "listen_samples": listen,
        "listen_ms": 1000 * listen / sr,
        "usable_rule": USABLE_RULE,
        "usable_vectors": int(len(pool)),
        "captured_vectors": int(len(run.x)),
    }
    heads = [
        f"{r['fragments_of']}: mean-spectrum peak {r['mean_spectrum']['peak_hz']:.0f} Hz, effective bandwidth "
        f"{r['mean_spectrum']['effective_bandwidth_hz']:.0f} Hz, {r['mean_spectrum']['peak_share']:.0%} of energy "
        f"within {band:.0f} Hz of the peak, {r['mean_spectrum']['low_share']:.0%} below 1 kHz"
        for r in table
        if r["mean_spectrum"] and r["mean_spectrum"]["peak_hz"] is not None
    ]
    unheard = [r["fragments_of"] for r in table if not r["n"]]
    if heads and unheard:
        heads.append(f"no usable fragment for {', '.join(unheard)} (see their rows)")
    if not heads:  # say why, never an empty line
        heads = [
            f"no spectrum to show: the {sum(r['n'] for r in table)} fragments cut "
            f"({', '.join(r['fragments_of'] for r in table) or 'none'}) hold no energy"
            if any(r["n"] for r in table)
            else f"no spectrum to show: no fragment is usable ({len(pool)} of {len(run.x)} captured vectors lie "
            "far enough from their clip's edges; summary usable_rule)"
        ]
    headline = "; ".join(heads) + f" (layer main lobe {lobe:.0f} Hz)"
    return {
        "summary": summary,
        "table": table,
        "headline": headline,
        "figure": plots.fragments(panels, sr, lobe),
        **_listening(heard, sr, "i_fragments"),
    }


#: each fragment is played in a window of max(LISTEN_S, the fragment length), centred on it; at most 8 per reel
LISTEN_S, LISTEN_FRAGMENTS = 0.3, 8


def _listening(heard: dict[str, np.ndarray], sr: float, key: str) -> dict[str, Any]:
    """Listening reels for the report: per name, its first fragments (strongest first) played one
    after another (:func:`steerlab.reporting.listening_reel`), as 16-bit WAV files ``audio`` and
    their description ``listen`` (kept in report.json)."""
    from steerlab import reporting

    audio, listen = {}, []
    for name, f in heard.items():
        if not len(f) or not np.abs(f).max() > 0:
            continue
        file = f"audio/{key}_{name.replace(' ', '_')}.wav"
        reel = reporting.listening_reel(f[:LISTEN_FRAGMENTS], sr)
        audio[file] = reporting.wav_bytes(reel, sr)
        listen.append(
            {
                "label": name,
                "file": file,
                "fragments": int(min(len(f), LISTEN_FRAGMENTS)),
                "fragment_ms": 1000 * f.shape[1] / sr,
                "seconds": len(reel) / sr,
            }
        )
    return {"audio": audio, "listen": listen}


def _trajectories(run: _Run) -> dict[str, Any]:
    from steerlab.synth import ClipSpec, synthesize

    o, info = run.opts, run.info
    sr = info.sample_rate
    warm = math.ceil(info.receptive_field / info.hop) + 1  # frames that still see the zero padding
    n = trajectory_samples(o, info)
    t = np.arange(n) / sr
    rng = np.random.default_rng(o.seed)
    if o.trajectory_clip:
        music_name, music = f"music ({Path(o.trajectory_clip).name})", trajectory_music(o.trajectory_clip, info, n)
    else:
        music_name, music = "music-like (synth chord)", synthesize(ClipSpec("chord", o.seed, sr, n / sr))[:n]
    waves = {
        f"sine {o.sine_hz:g} Hz": 0.5 * np.sin(2 * np.pi * o.sine_hz * t),
        music_name: music,
        "white noise (RMS 0.1)": 0.1 * rng.standard_normal(n),
    }
    acts = activations(run.model, info, waves.values())
    trajs = {name: a[warm : warm + o.trajectory_frames] for name, a in zip(waves, acts)}
    proj, ratios = dynamics.project_trajectories(list(trajs.values()))
    table = {
        name: {
            "frames": int(len(tr)),
            "smoothness": dynamics.smoothness(tr),
            "step_over_spread": dynamics.step_over_spread(tr),
        }
        for name, tr in trajs.items()
    }
    headline = "smoothness (mean cosine of successive steps): " + ", ".join(
        f"{n} {v['smoothness']:.2f}" for n, v in table.items()
    )
    fig = plots.trajectories(dict(zip(trajs, proj)), list(ratios))
    return {
        "summary": {"pca_explained_variance": [float(r) for r in ratios], "warmup_frames_skipped": warm},
        "table": table,
        "headline": headline,
        "figure": fig,
        "data": {
            "description": f"generated: {', '.join(waves)}; {o.trajectory_frames} frames each, seed {o.seed}"
            + (f"; the music is the loudest stretch of {o.trajectory_clip}" if o.trajectory_clip else ""),
            "sha256": hashlib.sha256(b"".join(np.asarray(w, "<f4").tobytes() for w in waves.values())).hexdigest(),
        },
    }


def trajectory_samples(opts: AnalysisOptions, info: Any) -> int:
    """Input samples one trajectory needs: its frames, the warm-up frames skipped, one more."""
    return (opts.trajectory_frames + math.ceil(info.receptive_field / info.hop) + 2) * info.hop


def trajectory_music(path: str | Path, info: Any, n: int) -> np.ndarray:
    """The ``n`` samples (mono, at the layer's sample rate) of the user's clip ``path`` with the
    most energy: the loudest stretch, so a quiet intro or trailing silence is never the music
    measured. The file gets the checks every ``--data`` file gets: one decode pass first
    (:func:`steerlab.audio.scan`: unreadable, empty or non-finite files raise, a possibly truncated
    one warns :class:`~steerlab.errors.PossiblyTruncatedWarning`), and a stretch that is one
    constant (silence, DC) is refused as ``--data`` silence is (:func:`steerlab.capture.refuse_constant`:
    :class:`steerlab.errors.NoVarianceError`), since a trajectory of the padding's transient is no music.
    Raises :class:`steerlab.errors.AudioError` for an unreadable file and
    :class:`steerlab.errors.ConfigError` (``trajectory_clip``) for one shorter than ``n`` samples."""
    from steerlab.audio import load_audio, scan
    from steerlab.capture import Manifest, refuse_constant
    from steerlab.errors import ConfigError

    scan(path)
    wave = load_audio(path, int(info.sample_rate), 1)[0][0].astype(np.float64)
    if len(wave) < n:
        raise ConfigError(
            f"trajectory clip {str(path)!r} holds {len(wave)} samples ({len(wave) / info.sample_rate:.3g} s) at "
            f"{info.sample_rate:g} Hz; the trajectories need {n} ({n / info.sample_rate:.3g} s): give a longer "
            "clip or fewer trajectory_frames",
            parameter=("trajectory_clip", "trajectory_frames"),
        )
    energy = np.concatenate([[0.0], np.cumsum(wave**2)])
    start = int(np.argmax(energy[n:] - energy[:-n]))
    stretch = wave[start : start + n]
    seen = Manifest(clips=1)
    seen.saw(stretch)
    refuse_constant(
        seen, f"layer {getattr(info, 'name', '?')}", f"the trajectory clip {str(path)!r} (its loudest {n} samples)"
    )
    return stretch


RUNNERS = {
    "coverage": _coverage,
    "reconstruction": _reconstruction,
    "usage": _usage,
    "redundancy": _redundancy,
    "stability": _stability,
    "data": _data,
    "weights": _weights,
    "locality": _locality,
    "fragments": _fragments,
    "trajectories": _trajectories,
}


def analyze(
    d: Any,
    model: Any,
    corpus: Any,
    options: AnalysisOptions = AnalysisOptions(),
    dictionary_path: str | Path | None = None,
    load: Callable[[], Any] | None = None,
    allow_weights_mismatch: bool = False,
    progress: Callable[[str], None] | None = None,
    store: Any = None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Run the selected analyses; return the report document and the PNGs (``{file name: bytes}``).

    ``load`` re-loads the model (needed for the weights analysis when the model cannot be
    deep-copied); ``dictionary_path`` is recorded and its ``config.json`` hashed. ``store``: an
    :class:`steerlab.activations.ActivationStore` of the dictionary's layer and kind captured
    over ``corpus`` (:meth:`~steerlab.activations.ActivationStore.corpus`): the analysis data is
    read from it (the same vectors as a capture, :func:`~steerlab.analysis.data.capture_from_store`)
    instead of running the model over the corpus; refused (``StoreError``) when it was captured
    from another model, weights, layer or kind.
    """
    from steerlab import provenance
    from steerlab.artifacts import versions

    started = time.time()
    say = progress or (lambda message: None)
    info = check_dictionary_fits(
        d,
        model,
        allow_weights_mismatch=allow_weights_mismatch,
        label=str(dictionary_path) if dictionary_path is not None else "",
    )
    o = options
    if o.trajectory_clip and "trajectories" in o.only:  # a bad clip fails now, not after the other analyses
        trajectory_music(o.trajectory_clip, info, trajectory_samples(o, info))
    if store is not None:
        from steerlab.analysis.data import MODES, capture_from_store

        store.check_matches(model, info.name, MODES[d.target])
        say(f"reading {d.target} vectors from the store {store.folder} (at most {o.max_vectors})")
        cap = capture_from_store(store, d.target, o.max_vectors, o.seed)
    else:
        say(
            f"capturing {d.target} vectors of {model.name} {info.name} from {corpus.describe()} "
            f"(at most {o.max_vectors})"
        )
        cap = capture(model, info, corpus, d.target, o.max_vectors, o.seed)
    from steerlab.sae import require_variance  # degenerate data: one line now, not a failure mid-report

    require_variance(
        cap.vectors,
        info.channels,
        f"{model.name} {info.name}",
        "response vectors" if d.target == "feature" else "generators",
        corpus.describe(),
    )
    run = _Run(d, model, info, corpus, o, cap, load, say)
    run.versions = versions()
    run.dict_config_sha = (
        _sha256_file(Path(dictionary_path) / "config.json")
        if dictionary_path is not None
        else config_hash(d.to_json(), None, compact=False)
    )
    from steerlab.analysis import splice

    fidelity = splice.report(d, model, corpus, say)
    analyses: dict[str, Any] = {}
    figures: dict[str, bytes] = {}
    for name in ANALYSES:
        key = f"{LETTERS[name]}_{name}"
        entry: dict[str, Any] = {"letter": LETTERS[name], "title": TITLES[name], "source": POST1[name]}
        reason = NOT_APPLICABLE[d.target].get(name)
        if name not in o.only:
            entry.update(status="skipped", reason="not selected (--only / --skip)")
        elif reason:
            entry.update(status="skipped", reason=reason)
        else:
            say(f"{LETTERS[name]}. {name}")
            t0 = time.perf_counter()
            out = RUNNERS[name](run)
            fig_name = f"figures/{key}.png"
            figures[fig_name] = out.pop("figure")
            figures.update(out.pop("audio", {}))  # the report's listening reels (audio/*.wav)
            seeds = out.pop("seeds", None)
            data = out.pop("data", None)
            prov_data = (
                data
                if data and "sha256" in data
                else (
                    {
                        "description": "; ".join(f"{n}: {v['description']}" for n, v in data.items()),
                        "sha256": {n: v["sha256"] for n, v in data.items()},
                    }
                    if data
                    else None
                )
            )
            entry.update(
                status="ran",
                **out,
                figure=fig_name,
                seconds=time.perf_counter() - t0,
                provenance=run.provenance(seeds, prov_data),
            )
        analyses[key] = entry
    doc = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        # report.json keeps its keys: "kind" holds the dictionary's target, "sae" its stored config block
        "dictionary": {
            "path": str(dictionary_path) if dictionary_path is not None else None,
            "kind": d.target,
            "model": d.model,
            "layer": d.layer,
            "width": d.config.width,
            "size": d.config.size,
            "k": d.config.k,
            "seed": d.config.seed,
            "config_sha256": run.dict_config_sha,
            "weights_hash_recorded": d.weights_hash,
            "data_description": d.data_description,
            "data_sha256": d.data_hash,
            "sae": d.config.to_dict(),
        },
        "model": {"name": model.name, "weights_hash": model.weights_hash(), "layer": info.to_json()},
        "data": {
            **cap.to_json(),
            "specs": [s.spec for s in corpus.sources],
            **({"store": str(store.folder), "store_config_hash": store.doc["config_hash"]} if store else {}),
        },
        "options": o.to_json(),
        "versions": run.versions,
        "decoder_offset_norm": float(np.linalg.norm(run.offset)),
        "analyses": analyses,
        "fidelity": fidelity,
        "provenance": provenance.record(
            inputs=[s.spec for s in corpus.sources]
            + ([Path(dictionary_path) / "config.json"] if dictionary_path is not None else []),
            started=started,
            device=model,
        ),
    }
    _explain_nulls(doc, d)
    return doc, figures


def _explain_nulls(doc: dict[str, Any], d: Any) -> None:
    """Give every structural null of the report its reason (``KEY_reason`` beside it)."""
    dic, sae, layer = doc["dictionary"], doc["dictionary"]["sae"], doc["model"]["layer"]
    reasons = (
        (dic, "path", "the dictionary was passed as an object, not read from a folder"),
        (dic, "config_sha256", "the dictionary folder has no config.json to hash"),
        (dic, "weights_hash_recorded", "the dictionary does not record the weights it was learned on"),
        (dic, "data_sha256", "the dictionary does not record a hash of its training data"),
        (
            sae,
            "aux_k",
            f"not set: the TopK auxiliary loss used the default min(width // 2, size) = {d.config.effective_aux_k}",
        ),
        (
            layer,
            "kernel_size",
            f"a {layer.get('kind')} layer has no single convolution kernel; its receptive "
            "field is receptive_field_samples",
        ),
    )
    for where, key, reason in reasons:
        if key in where and where[key] is None:
            where[f"{key}_reason"] = reason
