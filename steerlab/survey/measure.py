"""The measurements of one (model, layer) row of the survey, each beside its chance reference.

Reuses the analysis code (:mod:`steerlab.analysis.data` capture and fragments,
:mod:`steerlab.analysis.geometry` coverage, usage, projection error and Hungarian stability,
:mod:`steerlab.analysis.spectra` narrowband measure, :func:`steerlab.analysis.pipeline.encode`)
and the SAE trainer (:func:`steerlab.sae.train_sae`); adds only the survey's statistics
(:mod:`steerlab.survey.stats`). Vectors are response vectors ``r_t`` (features) measured, as in
``analyze``, relative to the first dictionary's decoder offset.

Chance references (``chance`` beside each value, with its 95% interval):

- coverage (mean best cosine of a vector with the dictionary's *active* directions), explained
  variance of the ``m`` most used directions, usage concentration and seed stability: the same
  statistic of random unit directions of the same number and dimension (on a 12-channel layer 48
  random directions already reach a mean best cosine of about 0.67);
- participation ratio: the same layer of the random-weights model (bootstrap over its vectors);
- narrowband (effective bandwidth of the mean spectrum of the top features' fragments): random
  sets of as many fragments, cut at random frames;
- decodability: shuffled training labels (:func:`steerlab.survey.stats.decodability`), with the
  random-weights model's probe accuracy beside it.

A dictionary with no active direction prints no alignment: the coverage is null with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from steerlab.analysis import geometry, spectra
from steerlab.survey import stats
from steerlab.survey.config import SurveyConfig

RANDOM_DIRECTIONS = "random unit directions of the same number and dimension"
LISTEN_S, LISTEN_FRAGMENTS = 0.3, 8  # fragments the report plays: 300 ms of context each, at most 8 per reel


def default_layers(model: Any) -> list[Any]:
    """First conv, last conv, latent and quantized codes, where the model has them (the aliases
    ``first_conv``/``last_conv`` and the layers of kind ``latent``/``quantized``); a model with
    none of them falls back to :func:`steerlab.partials.plan.default_layers`. One tensor is one
    layer: of names the layer table declares the same tensor (encodec's ``latent`` is its last
    conv's output) only the first in forward order is kept (:func:`unique_tensors`)."""
    from steerlab.loading import layers
    from steerlab.partials.plan import default_layers as partials_default

    reg = layers(model)
    chosen = [reg.get(a) for a in ("first_conv", "last_conv") if a in reg.aliases]
    chosen += [info for info in reg if info.kind in ("latent", "quantized")]
    if not chosen:
        return partials_default(list(reg))
    order = [info.name for info in reg]
    return unique_tensors(reg, sorted(chosen, key=lambda info: order.index(info.name)))


def unique_tensors(reg: Any, chosen: Sequence[Any]) -> list[Any]:
    """``chosen`` layers (``LayerInfo``) without repeats of one tensor (the registry's
    ``tensor_of``): the first of each is kept, in the given order."""
    kept: dict[str, Any] = {}
    for info in chosen:
        kept.setdefault(reg.tensor_of(info.name), info)
    return list(kept.values())


def _random_codes(x: np.ndarray, directions: np.ndarray, k: int) -> np.ndarray:
    """Codes of a random dictionary as a TopK SAE would give them: the ``k`` largest positive
    projections of each vector, the rest zero."""
    proj = np.maximum(x @ directions.T, 0)
    if k < proj.shape[1]:
        cut = np.partition(proj, -k, axis=1)[:, -k][:, None]
        proj = np.where(proj >= cut, proj, 0.0)
    return proj


def dictionaries(vectors: np.ndarray, width: int, cfg: SurveyConfig) -> list[dict[str, Any]]:
    """One TopK SAE per seed of ``cfg.sizes.dictionary_seeds`` on ``vectors [n, width]``:
    ``{"seed", "sae", "metrics", "config"}`` each."""
    import torch

    from steerlab.sae import SAEConfig, train_sae

    s = cfg.sizes
    size = min(s.size_per_channel * width, s.max_size)
    k = max(1, min(16, width // 4, size))
    data = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    out = []
    for seed in s.dictionary_seeds:
        conf = SAEConfig(width=width, size=size, k=k, epochs=s.epochs, seed=int(seed))
        sae, metrics = train_sae(data, conf, device=cfg.device)
        out.append({"seed": int(seed), "sae": sae, "metrics": metrics, "config": conf.to_dict()})
    return out


def dictionary_stats(vectors: np.ndarray, dicts: Sequence[dict[str, Any]], cfg: SurveyConfig) -> dict[str, Any]:
    """Coverage, explained variance, usage and seed stability of the first dictionary (and its
    seeds), each beside its random-direction reference."""
    from steerlab.analysis.pipeline import encode, offset_of

    s, rng = cfg.sizes, np.random.default_rng([cfg.seed, 11])
    first = dicts[0]["sae"]
    x = vectors.astype(np.float64) - offset_of(first)
    width = x.shape[1]
    runs = []
    for d in dicts:
        codes = encode(d["sae"], vectors)
        runs.append(
            {
                "dirs": d["sae"].directions.double().numpy(),
                "codes": codes,
                "order": geometry.usage_order(codes, s.active_rel),
                "usage": geometry.usage(codes, s.active_rel),
            }
        )
    r0 = runs[0]
    size, k = len(r0["dirs"]), int(dicts[0]["config"]["k"])
    active = np.flatnonzero(r0["usage"] > 0)
    top_n = max(1, min(s.top_features, len(active) or 1))
    m = max(1, min(top_n, width - 1))
    out: dict[str, Any] = {
        "size": size,
        "k": k,
        "n_active_directions": int(len(active)),
        "top_n": top_n,
        "seeds": [d["seed"] for d in dicts],
    }
    for d in dicts:  # the SAEs' own training metric, beside the statistics (not a survey statistic)
        key = f"training_explained_variance_seed_{d['seed']}"
        out[key] = d["metrics"].get("explained_variance")
        if out[key] is None:
            out[f"{key}_reason"] = "the trainer did not measure it (vectors without variance)"
    if stats.is_constant(vectors) or not len(active):
        why = (
            f"the layer is constant over its {len(vectors)} vectors: {stats.CONSTANT}; no alignment, variance "
            "share or usage to measure"
            if stats.is_constant(vectors)
            else "the dictionary has no active direction on these vectors: no alignment to print"
        )
        out["_why"] = why
        out["coverage"] = stats.versus_chance(None, [], RANDOM_DIRECTIONS, reason=why)
        out["explained_variance"] = stats.versus_chance(None, [], RANDOM_DIRECTIONS, reason=why)
        out["usage_top_share"] = stats.versus_chance(None, [], RANDOM_DIRECTIONS, reason=why)
        out["stability"] = stats.versus_chance(None, [], RANDOM_DIRECTIONS, reason=why)
        return out
    cov = geometry.coverage(x, r0["dirs"][active], s.coverage_threshold)
    draws = [
        geometry.coverage(x, geometry.random_directions(len(active), width, rng), s.coverage_threshold)[
            "mean_best_cosine"
        ]
        for _ in range(s.draws)
    ]
    out["coverage"] = {
        **stats.versus_chance(cov["mean_best_cosine"], draws, RANDOM_DIRECTIONS),
        "what": "mean over vectors of the best cosine with an active direction",
        "share_covered": cov["share_covered"],
        "threshold": s.coverage_threshold,
    }
    ev = 1 - geometry.projection_error(x, r0["dirs"][r0["order"][:m]])
    ev_draws = [1 - geometry.projection_error(x, geometry.random_directions(m, width, rng)) for _ in range(s.draws)]
    out["explained_variance"] = {
        **stats.versus_chance(ev, ev_draws, RANDOM_DIRECTIONS),
        "what": f"1 - relative squared error of the projection onto the {m} most used directions",
        "m": m,
    }
    summary = geometry.usage_summary(r0["usage"], top_n, 0.01)
    share = summary["top_n_share_of_activations"]
    u_draws = []
    for _ in range(s.draws):
        rand = geometry.random_directions(size, width, rng)
        u = geometry.usage(_random_codes(x, rand, k), s.active_rel)
        u_draws.append(geometry.usage_summary(u, top_n, 0.01)["top_n_share_of_activations"])
    out["usage_top_share"] = {
        **stats.versus_chance(
            share, u_draws, RANDOM_DIRECTIONS + f", coded TopK (k = {k})", reason=summary.get("reason")
        ),
        "what": f"share of strong activations carried by the {top_n} most used directions",
    }
    if len(runs) < 2:
        why = "one dictionary seed: no pair to match (give two or more dictionary seeds)"
        out["stability"] = stats.versus_chance(None, [], RANDOM_DIRECTIONS, reason=why)
    else:
        st = geometry.stability([r["dirs"] for r in runs], [r["order"] for r in runs], top_n)
        st_draws = [
            geometry.stability(
                [geometry.random_directions(size, width, rng) for _ in range(2)], [np.arange(size)] * 2, top_n
            )["mean_top_vs_top"]
            for _ in range(s.draws)
        ]
        out["stability"] = {
            **stats.versus_chance(st["mean_top_vs_top"], st_draws, RANDOM_DIRECTIONS),
            "what": f"mean Hungarian-matched cosine of the top {top_n} directions over pairs of seeds",
        }
    out["_order"], out["_codes"] = r0["order"], r0["codes"]
    return out


def narrowband(model: Any, info: Any, corpus: Any, cap: Any, ds: dict[str, Any], cfg: SurveyConfig) -> dict[str, Any]:
    """Effective bandwidth of the mean spectrum of each top feature's fragments (the waveform
    around its most active frames) beside random sets of as many fragments; the layer's value is
    the median over the top features. Fragments are not aligned (a power spectrum barely depends
    on a fragment's shift; alignment serves the waveform pictures of ``analyze``)."""
    from steerlab.analysis.data import fragments_for

    s, rng = cfg.sizes, np.random.default_rng([cfg.seed, 13])
    what = "effective bandwidth (Hz) of the mean spectrum of the top features' fragments, median over features"
    ref = f"random sets of {s.fragments} fragments at random frames ({s.draws} sets)"
    if "_codes" not in ds:
        why = ds.get("_why", "the dictionary has no active direction")
        return stats.versus_chance(None, [], ref, higher=False, reason=why, chance_reason=why)
    length = min(max(256, 4 * info.receptive_field), s.fragment_samples)
    band = 3.0 * info.sample_rate / length
    codes, order = ds["_codes"], ds["_order"]
    where: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for j in [int(j) for j in order[: ds["top_n"]]]:
        rows = np.argsort(-codes[:, j], kind="stable")[: s.fragments]
        rows = rows[codes[rows, j] > 0]
        if len(rows):
            where[f"feature {j}"] = (cap.clip[rows], cap.frame[rows])
    for i in range(s.draws):
        rows = rng.choice(len(cap.clip), min(s.fragments, len(cap.clip)), replace=False)
        where[f"random {i}"] = (cap.clip[rows], cap.frame[rows])
    # one pass cuts the longer windows the report plays (as analyze); the measured fragments are
    # their centres, the very samples a cut of ``length`` gives
    listen = max(length, int(LISTEN_S * info.sample_rate))
    heard = fragments_for(corpus, info, "feature", where, listen)
    frags = {name: f[:, listen // 2 - length // 2 :][:, :length] for name, f in heard.items()}
    widths = {
        name: spectra.spectrum_report(f, info.sample_rate, band)["mean_spectrum"]["effective_bandwidth_hz"]
        for name, f in frags.items()
        if len(f)
    }
    feats = {n: w for n, w in widths.items() if n.startswith("feature") and w is not None}
    draws = [w for n, w in widths.items() if n.startswith("random") and w is not None]
    value = float(np.median(list(feats.values()))) if feats else None
    out = stats.versus_chance(value, draws, ref, higher=False, reason="no top feature's fragments hold energy")
    played = {n: f[:LISTEN_FRAGMENTS] for n, f in heard.items() if n.startswith("feature") or n == "random 0"}
    return {
        **out,
        "what": what,
        "per_feature_hz": feats,
        "fragment_samples": length,
        "band_hz": band,
        "_listen": {"sample_rate": info.sample_rate, "fragments": played},  # for the report's players only
    }


def participation(vectors: np.ndarray, random_vectors: np.ndarray | None, why: str | None, cfg: SurveyConfig) -> dict:
    """The layer's participation ratio beside the random-weights model's (bootstrap over its
    vectors). A constant layer (of either model) has none: null with the reason, never 0."""
    rng = np.random.default_rng([cfg.seed, 17])
    value = stats.participation_ratio(vectors)
    value_why = f"the layer is constant over its {len(vectors)} vectors: {stats.CONSTANT}" if value is None else None
    ref = "the same layer of the random-weights model (bootstrap over its vectors)"
    if random_vectors is None:
        out = stats.versus_chance(value, [], ref, reason=value_why, chance_reason=why or "no random-weights model")
    else:
        n = len(random_vectors)
        chance_why = (
            f"the random-weights model's layer is constant over its {n} vectors: {stats.CONSTANT}"
            if stats.is_constant(random_vectors)
            else f"no bootstrap draw of the random-weights model's {n} vectors varies: {stats.CONSTANT}"
        )
        draws = [stats.participation_ratio(random_vectors[rng.integers(0, n, n)]) for _ in range(cfg.sizes.draws)]
        out = stats.versus_chance(value, draws, ref, reason=value_why, chance_reason=chance_why)
    return {**out, "channels": int(vectors.shape[1]), "what": "(sum l)^2 / sum l^2 of the channel covariance"}


def concept_features(
    model: Any, layers: Sequence[Any], concepts: Sequence[Any], cfg: SurveyConfig, say: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Time-pooled activations of every concept's pairs at ``layers``: ``{concept: {"x": {layer:
    [2 n, 2 channels]} (mean and RMS, :func:`steerlab.survey.stats.pooled`), "y": [2 n] (0 without, 1
    with), "groups": [2 n] pair seeds}}``, pooled over
    the frames of the sound (its silent margins left out). One traced pass per batch reads every
    layer."""
    import torch

    from steerlab import tracing
    from steerlab.loading import layers as layer_table

    order = [info.name for info in layer_table(model)]
    margin = 0.05
    out: dict[str, dict[str, Any]] = {}
    for concept in concepts:
        say(f"{model.name}: probing {concept.name} ({cfg.sizes.pairs} pairs)")
        specs = concept.pairs(model.sample_rate, range(cfg.sizes.pairs), margin, True)
        waves, ys, groups, spans = [], [], [], []
        for spec in specs:
            for label, w in enumerate(concept.render(spec)):
                waves.append(
                    torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))[None].repeat(model.channels, 1)
                )
                ys.append(label)
                groups.append(spec.seed)
                spans.append(spec.span_samples())
        acts = tracing.capture(model, waves, list(layers), order=order)
        x = {}
        for info in layers:
            rows = []
            for act, (a, b) in zip(acts, spans):
                r = act[info.name].T.numpy()  # [frames, channels]
                lo, hi = a // info.hop, max(a // info.hop + 1, -(-b // info.hop))
                rows.append(stats.pooled(r[lo:hi] if hi <= len(r) else r[lo:]))
            x[info.name] = np.stack(rows)
        out[concept.name] = {"x": x, "y": np.array(ys), "groups": np.array(groups)}
    return out


def decodability(feats: dict[str, Any], random_feats: dict[str, Any] | None, layer: str, cfg: SurveyConfig) -> dict:
    """Per concept: held-out probe accuracy beside shuffled labels, and the random-weights
    model's accuracy (same split, same probe)."""
    s = cfg.sizes
    seeds = sorted(set(int(g) for f in feats.values() for g in f["groups"]))
    n_test = max(1, int(round(s.test_share * len(seeds))))
    test = seeds[-n_test:]
    out = {}
    for name, f in feats.items():
        d = stats.decodability(f["x"][layer], f["y"], f["groups"], test, s.draws, cfg.seed)
        if random_feats is not None:
            rf = random_feats[name]
            rd = stats.decodability(rf["x"][layer], rf["y"], rf["groups"], test, 2, cfg.seed)
            d["random_weights_accuracy"] = rd["value"]
            if rd["value"] is None:
                d["random_weights_accuracy_reason"] = f"the random-weights model: {rd['value_reason']}"
        else:
            d["random_weights_accuracy"] = None
            d["random_weights_accuracy_reason"] = "no random-weights model for this model"
        d["test_seeds"] = test
        out[name] = d
    return out
