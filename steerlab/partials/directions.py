"""Candidate directions for one unit (model, layer, family, target, density), learned on
the training seeds only (SCIENCE.md step 2).

Activations are the layer's unpatched outputs ``[channels, frames]`` of both signals of
each training pair (:func:`steerlab.tracing.capture`), seen as frame vectors ``r_t``.

- ``diffmeans``: mean over with-target clips of their time-mean ``r_t``, minus the
  same over without-target clips (the standard steering vector; pairs are matched,
  so it is also the mean of the per-pair differences).
- ``probe``: a linear probe fitted to the matched pairs as what they are: *conditional*
  logistic regression, the standard model for 1:1 matched case-control data (Breslow & Day
  1980, IARC Sci. Publ. 32, ch. 7; Hosmer & Lemeshow, Applied Logistic Regression, ch. 7),
  which for pairs is a logistic regression without intercept on the within-pair differences
  ``r_t(with) - r_t(without)`` of the same frame (labelled 1, their negatives 0). Scikit-learn,
  L2, with C chosen by cross-validation (below), on at most ``probe_frames`` random frames per
  pair from the sound's span (the
  margins are silent in both signals), in the layer's own activation space divided by one
  global scale (the differences' RMS per channel: an isotropic change of units that leaves the
  geometry and the direction as they are, and gives the L2 penalty the same meaning on every
  layer). The steering direction is the probe's **activation pattern** ``Cov(d) w / Var(w . d)``
  over its training differences ``d`` (Haufe et al. 2014, NeuroImage 87:96-110: a linear
  classifier's weights ``w`` are a *backward* model, a filter that extracts the label and
  cancels whatever correlates with it; the pattern is the *forward* model, how the activations
  change with the probe's score), pointing towards "with". Steering needs the forward model: the
  logistic weights approach ``Sigma^-1 (mu1 - mu0)`` and their direction is less causal than the
  mass-mean shift (Marks & Tegmark 2023, arXiv:2310.06824: mass-mean probe directions are
  more causally implicated than logistic ones; Li et al. 2023, arXiv:2306.03341: steering along
  the probe's weight direction does worse than along the mass-mean shift);
  for a Gaussian class model the pattern of ``Sigma^-1 (mu1 - mu0)`` is ``mu1 - mu0`` itself.
  Measured (issue 11, ``--quick``, filterbank_24khz at 1223 Hz): the weights put 0.37-0.39 of
  their norm on the two neighbouring bands, which differ between the signals near the target's
  own 10 ms fades (mean difference 0.0105 there against 0.050 on the target band; under 1e-4 in
  the middle half of the sound): the classifier leans on the hardest frames, where the partial
  is fading. The pattern puts 0.009 there (cosine 1.000 with the difference of means).
  Conditioning on the pair removes what the two signals share (the context partials) from the
  fit, as the difference of means does; an unpaired probe on the pooled frames (measured, issue
  11) puts weight on context channels by sampling noise and as suppressors, 1.5-8.5 dB off-band
  on the positive control whether its weights or its activation pattern (over the pooled
  frames' covariance, which holds the context's variance) is used. Standardising each channel first and mapping back with ``coef / std`` (the method
  before issue 11) is not a direction of the layer at all: it amplifies the channels with
  the least variance, on the positive control noise-floor bands with std 1e-11 to 1e-9,
  giving norms of 1e7 to 5e9 and a cosine of 0.000 with the difference of means.

  **Regularisation.** C (the inverse L2 strength) is chosen from :data:`PROBE_CS` by the
  held-out log-loss over leave-one-pair-out folds of the training pairs (every frame of a pair,
  and its negative, in the same fold: frames of one pair are not independent, so splitting them
  would measure memorisation), with the *one-standard-error rule*: the smallest C whose mean
  held-out log-loss is within one standard error (over folds) of the minimum (Hastie, Tibshirani
  & Friedman, The Elements of Statistical Learning, 2nd ed., sec. 7.10; Breiman et al. 1984;
  glmnet's ``lambda.1se``). Differences below that error are not resolved by the training
  data, and where the held-out pairs are separable (the positive controls) the plain minimum
  sits wherever the solver's tolerance puts the last digits of a log-loss near 0 (measured:
  C = 3162 or 10000 at 304 Hz on filterbank_24khz as the tolerance went from 1e-8 to 1e-6).
  The rule looks at the training pairs only, never at a verdict. With one training pair there is nothing to
  hold out and C = 1 is used (recorded). The provenance records the chosen C, whether it lies
  at an end of the grid and the whole cross-validation curve. (Before this rule C was fixed at
  1; on the positive control that probe put up to 0.30 of its norm on the bands next to the
  target's.)
- ``sae``: the feature of a given dictionary whose mean code differs most between with and
  without frames (the contrast in code space of Soo et al. 2025, arXiv:2501.09929, FGAA, top
  1), steered along its **decoder** direction (its column of the reconstruction, in the layer's
  raw space; not the encoder row, which is a filter), signed so it points towards "with". The
  decoder rows have unit norm and the dictionary's scale is one scalar, so the mean code
  difference ranks features by the norm of their share of the reconstructed with-minus-without
  change. Before issue 11 the difference was divided by
  the codes' pooled standard deviation, a measure of how *detectable* a feature is rather than
  how much of the change it carries: on the controls' quick cells it chose the feature best
  aligned with the difference of means on 1 of 8 cells, this rule on 6 of 8. The provenance
  records the dictionary's best-aligned feature and its cosine: whether the dictionary holds a
  feature for the partial at all (on the controls' dictionaries, learned on synthetic music: no;
  cosine 0.28-0.72; learned on ``ceil(K ln K)`` of the run's stimuli, ``--sae-data stimuli``:
  0.87-0.96 on the filterbank, chosen on every cell, 0.23-0.25 on the STFT; docs/partials.md).
  Planted truth: ``tests/test_partials_sae_planted.py``.
- ``random``: the null: a Gaussian direction with the norm of ``diffmeans`` (seeded
  by the run seed and the unit). Interventions use unit directions scaled by the
  layer's norm, so every method adds the same amount; matching the norm keeps the
  recorded vectors comparable too.

A direction that comes out zero or non-finite is not used; its reason is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from steerlab import validation as check
from steerlab.artifacts import config_hash
from steerlab.partials.config import METHODS

_EPS = 1e-12
# the probe's candidate C (inverse L2 strength, in the globally rescaled space): half decades, 1e-4 to 1e4
PROBE_CS: tuple[float, ...] = tuple(float(10.0 ** (e / 2)) for e in range(-8, 9))


@dataclass(frozen=True)
class Learned:
    """A direction ``vector`` [channels] (float64, as learned, not normalised) and its provenance."""

    vector: np.ndarray
    provenance: dict


def capture_pairs(
    model: Any, layer: Any, specs: Sequence[Any], path: str, max_batch: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frame vectors ``[frames, channels]`` of the without and with signals of each spec."""
    import torch

    from steerlab import tracing
    from steerlab.stimuli import render

    waves = []
    for spec in specs:
        without, with_ = render(spec)
        waves += [
            torch.from_numpy(without)[None].repeat(model.channels, 1),
            torch.from_numpy(with_)[None].repeat(model.channels, 1),
        ]
    acts = tracing.capture(model, waves, [layer], max_batch=max_batch, path=path)
    frames = [a[layer.name].double().numpy().T for a in acts]
    return frames[0::2], frames[1::2]


def _rms_norm(frames: Sequence[np.ndarray]) -> float:
    allf = np.concatenate(frames, 0)
    return float(np.sqrt(np.mean(np.sum(allf**2, axis=1)))) if len(allf) else 0.0


def diff_of_means(without: Sequence[np.ndarray], with_: Sequence[np.ndarray]) -> np.ndarray:
    mean_with = np.mean([f.mean(0) for f in with_], axis=0)
    mean_without = np.mean([f.mean(0) for f in without], axis=0)
    return mean_with - mean_without


def _sample(frames: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for f in frames:
        idx = np.sort(rng.choice(len(f), size=min(n, len(f)), replace=False))
        out.append(f[idx])
    return np.concatenate(out, 0)


def _span_frames(frames: Sequence[np.ndarray], span: tuple[int, int] | None) -> list[np.ndarray]:
    if span is None:
        return list(frames)
    out = [f[span[0] : span[1]] for f in frames]
    return out if all(len(f) for f in out) else list(frames)


def _fit_probe(x: np.ndarray, y: np.ndarray, c: float, clf: Any = None) -> Any:
    """L2 logistic regression without intercept at ``C = c``; ``clf``: a previous fit on the
    same data to start from (warm start along the C path, as ``LogisticRegressionCV`` does)."""
    from sklearn.linear_model import LogisticRegression

    if clf is None:
        clf = LogisticRegression(C=c, fit_intercept=False, max_iter=10000, tol=1e-6, warm_start=True)
    clf.set_params(C=c)
    return clf.fit(x, y)


def choose_c(diffs: Sequence[np.ndarray], cs: Sequence[float] = PROBE_CS) -> tuple[float, dict]:
    """The probe's C by leave-one-pair-out cross-validated log-loss (module docstring).

    ``diffs``: per training pair its frame differences ``[frames, channels]`` (already in the
    probe's rescaled units). Returns ``(C, info)``: info holds ``cv_log_loss`` (mean held-out
    log-loss per candidate, in ``cs`` order), ``cv_folds`` and ``c_at_grid_edge``. With fewer
    than two pairs: ``(1.0, {"cv_folds": 0, ...})``."""
    from sklearn.metrics import log_loss

    cs = sorted(float(c) for c in cs)
    if len(diffs) < 2:
        return 1.0, {
            "cv_folds": 0,
            "cv_log_loss": None,
            "c_at_grid_edge": None,
            "c_rule": "one training pair: nothing to hold out, C = 1",
        }
    losses = np.zeros((len(diffs), len(cs)))  # held-out log-loss per fold and candidate
    for k in range(len(diffs)):
        train = np.concatenate([d for i, d in enumerate(diffs) if i != k], 0)
        test = diffs[k]
        xt, yt = np.concatenate([train, -train], 0), np.r_[np.ones(len(train)), np.zeros(len(train))]
        xv, yv = np.concatenate([test, -test], 0), np.r_[np.ones(len(test)), np.zeros(len(test))]
        clf = None
        for j, c in enumerate(cs):  # ascending: each fit starts from the previous, more regularised one
            clf = _fit_probe(xt, yt, c, clf)
            p = clf.predict_proba(xv)[:, 1]
            losses[k, j] = log_loss(yv, p, labels=[0, 1])
    mean = losses.mean(0)
    best = int(np.argmin(mean))
    se = float(losses[:, best].std(ddof=1) / np.sqrt(len(diffs)))
    j = int(np.flatnonzero(mean <= mean[best] + se)[0])  # the most regularised C within one SE
    return cs[j], {
        "cv_folds": len(diffs),
        "cv_log_loss": [float(v) for v in mean],
        "cv_cs": cs,
        "cv_min_c": cs[best],
        "cv_min_se": se,
        "c_at_grid_edge": j in (0, len(cs) - 1),
        "c_rule": "one-standard-error rule on leave-one-pair-out log-loss (ESL sec. 7.10)",
    }


def probe(
    without: Sequence[np.ndarray],
    with_: Sequence[np.ndarray],
    n_frames: int,
    seed: int,
    span: tuple[int, int] | None = None,
    cs: Sequence[float] = PROBE_CS,
) -> tuple[np.ndarray, dict]:
    """The conditional (paired) logistic probe's activation pattern ``[channels]`` in the layer's
    activation space, its steering direction (see the module docstring). Arguments as
    :func:`probe_weights`. Provenance: that of :func:`probe_weights`, the weights' norm and their
    cosine with the pattern. A zero vector when the pairs do not differ at all (the caller records
    it as not learned)."""
    w, d, info = probe_weights(without, with_, n_frames, seed, span, cs)
    pattern = activation_pattern(d, w)
    return pattern, {
        **info,
        "steering_vector": "activation pattern Cov(d) w / Var(w.d) (Haufe et al. 2014)",
        "weights_norm": float(np.linalg.norm(w)),
        "weights_cosine_to_pattern": _cosine(w, pattern),
    }


def probe_weights(
    without: Sequence[np.ndarray],
    with_: Sequence[np.ndarray],
    n_frames: int,
    seed: int,
    span: tuple[int, int] | None = None,
    cs: Sequence[float] = PROBE_CS,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The conditional logistic probe itself: its weight vector ``w`` [channels] in raw units, the
    frame differences ``d`` [frames, channels] it was fitted on, and its provenance.
    ``without``/``with_``: per clip ``[frames, channels]``, pair ``i`` = the two signals of
    stimulus ``i``; ``span``: frames ``[first, last)`` of the sound (None: all frames); ``cs``:
    candidate C values (:func:`choose_c`). Provenance: ``train_accuracy`` (share of training
    pairs' frames where the with-target frame scores above its without-target twin), frames, the
    chosen C and its cross-validation curve, scale. ``w`` is zero when the pairs do not differ."""
    rng = np.random.default_rng(seed)
    diffs = []
    for f0, f1 in zip(_span_frames(without, span), _span_frames(with_, span)):
        n = min(len(f0), len(f1))
        idx = np.sort(rng.choice(n, size=min(n_frames, n), replace=False))
        diffs.append(f1[idx] - f0[idx])
    d = np.concatenate(diffs, 0)
    scale = float(np.sqrt(np.mean(d**2)))  # RMS per channel of the differences: one number for all
    info = {"frames": int(len(d)), "model": "conditional logistic regression on matched pairs", "scale": scale}
    if not scale > _EPS:
        return np.zeros(d.shape[1]), d, {**info, "C": None, "train_accuracy": None}
    c, cv = choose_c([x / scale for x in diffs], cs)
    x = np.concatenate([d, -d], 0) / scale
    y = np.r_[np.ones(len(d)), np.zeros(len(d))]
    w = _fit_probe(x, y, c).coef_[0] / scale  # the same direction as coef_: the change of units is isotropic
    return w, d, {**info, "C": c, **cv, "train_accuracy": float(np.mean(d @ w > 0))}


def activation_pattern(d: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The probe's activation pattern (forward model) ``Cov(d) w / Var(w . d)`` [channels]
    (Haufe et al. 2014, NeuroImage 87:96-110) over the probe's training frames ``d``
    [frames, channels] (within-pair differences; with their negatives they have mean zero, so
    the covariance is ``d.T d / n``): the change of the activations that goes with one unit of
    the probe's score, in the layer's raw units. Zero when the score does not vary."""
    s = d @ w
    var = float(np.mean(s**2))
    return d.T @ s / len(d) / var if var > 0 else np.zeros(d.shape[1])


def _cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > _EPS and nb > _EPS else None


def template(
    vec: np.ndarray, without: Sequence[np.ndarray], with_: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The partial's measured time course along a direction: per frame ``t``, the mean over
    training clips of ``r_t . u`` with the target minus without it (``template`` [frames]), and
    the without-target level (``level`` [frames]); ``u = vec / |vec|``. Clips of a unit share
    their length (same duration and margins); the shortest is used if not."""
    u = vec / np.linalg.norm(vec)
    n = min(len(f) for f in [*without, *with_])
    p0 = np.mean([f[:n] @ u for f in without], axis=0)
    p1 = np.mean([f[:n] @ u for f in with_], axis=0)
    return p1 - p0, p0


def projections(vec: np.ndarray, frames: Sequence[np.ndarray], span: tuple[int, int] | None) -> float:
    """Mean over clips of the mean over the sound's span of ``r_t . u``, ``u = vec / |vec|``."""
    u = vec / np.linalg.norm(vec)
    return float(np.mean([f.mean(0) @ u for f in _span_frames(frames, span)]))


def sae_feature(without: Sequence[np.ndarray], with_: Sequence[np.ndarray], dictionary: Any) -> tuple[np.ndarray, dict]:
    """The feature of ``dictionary`` whose mean code rises (or falls) most from without- to
    with-target frames, and its decoder direction (unit, in the layer's raw space), signed
    towards "with" (module docstring). ``without``/``with_``: per training clip ``[frames,
    channels]``. Provenance: the feature, its mean code difference and codes, its standardised
    mean difference (the rule before issue 11, recorded), its share of active frames, and the
    dictionary's best-aligned feature with the difference of means (whether the dictionary holds
    a feature for the partial at all)."""
    import torch

    sae = dictionary.sae
    with torch.no_grad():
        c0 = sae.encode(torch.from_numpy(np.concatenate(without, 0)).float()).double().numpy()
        c1 = sae.encode(torch.from_numpy(np.concatenate(with_, 0)).float()).double().numpy()
    diff = c1.mean(0) - c0.mean(0)  # the contrast in the SAE's code space (Soo et al. 2025)
    j = int(np.argmax(np.abs(diff)))
    sign = 1.0 if diff[j] >= 0 else -1.0
    directions = dictionary.directions.double().numpy()
    vec = sign * directions[j]
    pooled = float(np.sqrt(0.5 * (c0[:, j].var() + c1[:, j].var())))
    dm = diff_of_means(without, with_)
    dm_norm = float(np.linalg.norm(dm))
    aligned = directions @ dm / dm_norm if dm_norm > _EPS else np.zeros(len(directions))
    best = int(np.argmax(np.abs(aligned)))
    return vec, {
        "feature": j,
        "selection": "largest mean code difference, with minus without (Soo et al. 2025)",
        "mean_code_difference": float(diff[j]),
        "mean_code_without": float(c0[:, j].mean()),
        "mean_code_with": float(c1[:, j].mean()),
        "active_share_without": float(np.mean(c0[:, j] > 0)),
        "active_share_with": float(np.mean(c1[:, j] > 0)),
        "effect_size": float(diff[j] / pooled) if pooled > _EPS else None,
        "best_aligned_feature": best,
        "best_aligned_cosine": float(abs(aligned[best])),
        "size": int(c0.shape[1]),
        "dictionary_layer": dictionary.layer,
        "dictionary_data_hash": dictionary.data_hash,
    }


def learn(
    unit_id: dict,
    without: Sequence[np.ndarray],
    with_: Sequence[np.ndarray],
    methods: Sequence[str],
    seed: int,
    probe_frames: int,
    dictionary: Any | None,
    train_keys: Sequence[str],
    span: tuple[int, int] | None = None,
) -> dict[str, Learned | str]:
    """Every method's direction for one unit, or the reason it was not learned (with each
    direction's subtraction template and level in ``Learned.provenance["_template"]``,
    ``["_level"]``, popped by the caller and stored as arrays).

    ``without``/``with_``: per training clip ``[frames, channels]``; ``span``: the sound's
    frames ``[first, last)`` in those clips (None: all). Each direction's provenance records
    the mean projection of the unit direction on the sound's span of the training clips,
    without and with the target (``projection_without_train``, ``projection_with_train``):
    the without-target level that calibrated subtraction measures an item's excess from."""
    base: dict[str, Any] = {"train_stimuli": list(train_keys), "layer_rms_norm_train": _rms_norm([*without, *with_])}
    out: dict[str, Learned | str] = {}
    dm = diff_of_means(without, with_)
    unit_seed = int(config_hash(unit_id, 8), 16)
    for method in methods:
        extra: dict = {}
        if method == "diffmeans":
            vec = dm
        elif method == "probe":
            vec, extra = probe(without, with_, probe_frames, seed + unit_seed, span)
        elif method == "sae":
            if dictionary is None:
                out[method] = "no dictionary for this layer (pass --dictionary)"
                continue
            vec, extra = sae_feature(without, with_, dictionary)
        elif method == "random":
            g = np.random.default_rng([seed, unit_seed]).standard_normal(dm.shape[0])
            target_norm = float(np.linalg.norm(dm))
            if not target_norm > _EPS:
                target_norm = base["layer_rms_norm_train"]
            vec = g / np.linalg.norm(g) * target_norm
            extra = {"norm_matched_to": "diffmeans", "seed": [seed, unit_seed]}
        else:
            raise check.unknown("methods", method, METHODS, what="method")
        norm = float(np.linalg.norm(vec))
        if not (np.all(np.isfinite(vec)) and norm > _EPS):
            out[method] = f"{method} direction is zero or not finite"
            continue
        rms = base["layer_rms_norm_train"]
        tpl, lvl = template(vec, without, with_)
        out[method] = Learned(
            np.asarray(vec, dtype=np.float64),
            {
                "source": method,
                "norm": norm,
                "natural_strength": norm / rms if rms > _EPS else None,
                "cosine_to_diffmeans": float(vec @ dm / (norm * max(float(np.linalg.norm(dm)), _EPS))),
                "projection_without_train": projections(vec, without, span),
                "projection_with_train": projections(vec, with_, span),
                "template_peak": float(np.max(np.abs(tpl))) if len(tpl) else 0.0,
                **extra,
                **base,
                "_template": tpl,
                "_level": lvl,
            },
        )
    return out


def vector_hash(vec: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(vec, dtype="<f8").tobytes()).hexdigest()[:16]


def control_dictionary(model: Any, layer: Any, controls: Any, seed: int, max_batch: int) -> Any:
    """An SAE feature dictionary learned on a positive-control model for the ``sae`` method there,
    the way the measured model's dictionaries are learned: :func:`steerlab.learning.learn_dictionary`
    (``steerlab learn``) on steerlab's synthetic music corpus (``synth:N``, ``N =
    controls.dictionary_clips`` clips of 1 s, seed ``seed``), never on the run's stimuli.

    TopK, ``controls.dictionary_size`` latents, ``dictionary_k`` active, ``steerlab learn``'s other
    defaults (lr 1e-3, batch 256, centred and normalised), seed ``seed``; the layer's frames are
    subsampled (seeded) to about ``dictionary_vectors`` vectors and trained for
    ``ceil(dictionary_steps * 256 / vectors)`` epochs (about ``dictionary_steps`` steps), so the
    budget is the same at 23 and at 24,000 frames per second. Returns the
    :class:`steerlab.dictionary.Dictionary`; its ``data_manifest`` records the recipe."""
    import math

    from steerlab.capture import Corpus
    from steerlab.learning import learn_dictionary
    from steerlab.sae import SAEConfig

    frames = controls.dictionary_clips * layer.frame_rate
    subsample = min(1.0, controls.dictionary_vectors / frames)
    vectors = max(1.0, frames * subsample)
    epochs = max(1, math.ceil(controls.dictionary_steps * 256 / vectors))
    corpus = Corpus([f"synth:{controls.dictionary_clips}"], model.sample_rate, model.channels, seed=seed)
    config = SAEConfig(
        width=layer.channels, size=controls.dictionary_size, k=controls.dictionary_k, epochs=epochs, seed=seed
    )
    d = learn_dictionary(
        model,
        layer.name,
        "feature",
        corpus,
        config,
        subsample=subsample if subsample < 1.0 else None,
        max_batch=max_batch,
    )
    d.data_manifest = {
        **(d.data_manifest or {}),
        "control_recipe": {
            "clips": controls.dictionary_clips,
            "vectors": controls.dictionary_vectors,
            "steps": controls.dictionary_steps,
            "size": controls.dictionary_size,
            "k": controls.dictionary_k,
            "seed": seed,
        },
    }
    return d
