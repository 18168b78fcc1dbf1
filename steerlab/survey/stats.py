"""The survey's own statistics and the chance references every one of them is printed beside.

numpy (and scikit-learn for the probes) on plain arrays, so each measure can be tested on data
with a planted answer:

- :func:`participation_ratio`: the effective dimensionality of a layer, ``(sum l)^2 / sum l^2``
  over the eigenvalues ``l`` of its channel covariance (Gao et al. 2017, "A theory of
  multineuronal dimensionality"; ``d`` for an isotropic ``d``-channel layer, 1 for rank one);
- :func:`decodability`: held-out accuracy of a logistic-regression probe (scikit-learn) on
  time-pooled activations, train and test split by the pair's seed, as in SynTheory (Wei et al.
  2024), with the shuffled-label reference (the same probe on permuted training labels);
- :func:`versus_chance`: a statistic against draws of its chance reference (random directions of
  the same dimension, shuffled labels, a random-weights model): the reference's mean and 95%
  interval (2.5th and 97.5th percentiles of the draws), and whether the statistic is *beyond*
  chance, *at* chance (inside the interval: flagged) or on the wrong side of it (flagged too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from steerlab import validation as check

BEYOND, AT, SHORT = "beyond chance", "at chance", "short of chance"


CONSTANT = "the vectors do not vary at all (every channel's std is 0): no covariance spectrum to measure"


def participation_ratio(vectors: np.ndarray) -> float | None:
    """``(sum l)^2 / sum l^2`` of the eigenvalues ``l`` of the covariance of ``vectors [n, d]``
    (rows are observations); in ``[1, d]``; None when the vectors do not vary at all (a zero
    covariance has no dimensionality: :data:`CONSTANT` says why)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise check.fail("vectors", "an array [n >= 2, channels]", f"shape {list(x.shape)}")
    x = x - x.mean(axis=0)
    lam = np.linalg.svd(x, compute_uv=False) ** 2  # covariance eigenvalues times (n - 1)
    total = float(lam.sum())
    return float(total**2 / float((lam**2).sum())) if total > 0 else None


def covariance_pr(cov: np.ndarray) -> float | None:
    """:func:`participation_ratio` of a covariance matrix ``[d, d]`` given directly (None for a
    zero covariance)."""
    lam = np.clip(np.linalg.eigvalsh(np.asarray(cov, dtype=np.float64)), 0, None)
    total = float(lam.sum())
    return float(total**2 / float((lam**2).sum())) if total > 0 else None


def is_constant(vectors: np.ndarray) -> bool:
    """Whether the rows of ``vectors [n, d]`` are all the same (every channel's std is 0)."""
    x = np.asarray(vectors, dtype=np.float64)
    return bool(len(x) == 0 or np.all(x == x[0]))


def interval(draws: Sequence[float | None], reason: str | None = None) -> dict[str, Any]:
    """Mean and 95% interval (2.5th, 97.5th percentiles) of a chance reference's draws (None
    and non-finite draws left out); with no draw left, nulls with ``reason`` (or a generic one)."""
    d = np.asarray([v for v in draws if v is not None and np.isfinite(v)], dtype=np.float64)
    if not len(d):
        return {"mean": None, "ci95": None, "n": 0, "reason": reason or "no finite draw of the reference"}
    return {
        "mean": float(d.mean()),
        "ci95": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))],
        "n": int(len(d)),
    }


def versus_chance(
    value: float | None,
    draws: Sequence[float | None],
    reference: str,
    higher: bool = True,
    reason: str | None = None,
    chance_reason: str | None = None,
) -> dict[str, Any]:
    """``{"value", "chance": {"reference", "mean", "ci95", "n"}, "status", "at_chance"}``.

    ``higher``: which side of the reference means structure (True: larger than chance, e.g. an
    alignment; False: smaller, e.g. a bandwidth). ``status`` is :data:`BEYOND` when ``value`` is
    outside the interval on that side, :data:`AT` inside it, :data:`SHORT` outside on the other
    side; ``at_chance`` (the flag) is True unless beyond. A None ``value`` needs ``reason``;
    ``chance_reason`` says why the reference is null when no draw is defined."""
    ref = {"reference": reference, **interval(draws, chance_reason)}
    if value is None or not np.isfinite(value):
        return {
            "value": None,
            "value_reason": reason or "not measurable",
            "chance": ref,
            "status": None,
            "status_reason": "no value to compare",
            "at_chance": None,
            "at_chance_reason": "no value to compare",
        }
    out: dict[str, Any] = {"value": float(value), "chance": ref}
    if ref["ci95"] is None:
        out.update(status=None, status_reason=ref["reason"], at_chance=None, at_chance_reason=ref["reason"])
        return out
    lo, hi = ref["ci95"]
    if lo <= value <= hi:
        status = AT
    elif (value > hi) == higher:
        status = BEYOND
    else:
        status = SHORT
    out.update(status=status, at_chance=status != BEYOND)
    return out


def pooled(act: np.ndarray) -> np.ndarray:
    """Time pooling of one clip's activations ``[frames, channels]``: the mean and the RMS over
    frames, ``[2 channels]``. The mean alone would blind every probe at a linear first conv: the
    time mean of a linear filter's output is its input's mean (about 0 for audio) times the
    filter's sum, whatever the sound; the RMS keeps each channel's energy."""
    r = np.asarray(act, dtype=np.float64)
    return np.concatenate([r.mean(axis=0), np.sqrt((r * r).mean(axis=0))])


def _probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2:
        return 0.5  # a probe trained on one class (a shuffle can draw that) guesses; half right on balanced tests
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    probe.fit(x_train, y_train)
    return float((probe.predict(x_test) == y_test).mean())


def decodability(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, test_groups: Sequence[int], shuffles: int, seed: int
) -> dict[str, Any]:
    """Held-out accuracy of a logistic-regression probe (standardised inputs, C = 1, scikit-learn)
    of ``labels`` (0: without, 1: with) from ``features [n, channels]``, trained on the rows whose
    ``groups`` (pair seeds) are not in ``test_groups`` and tested on those that are, beside the
    shuffled-label reference: the same probe, training labels permuted (``shuffles`` draws,
    ``seed``); test accuracy against the true test labels."""
    x, y, g = np.asarray(features, np.float64), np.asarray(labels), np.asarray(groups)
    test = np.isin(g, list(test_groups))
    if test.all() or not test.any():
        raise check.fail("test_groups", "a split that leaves rows on both sides", list(test_groups))
    ref = f"shuffled training labels ({shuffles} permutations, seed {seed})"
    sizes = {"n_train": int((~test).sum()), "n_test": int(test.sum())}
    if is_constant(x):  # every clip gives the same features: the probe's accuracy would be a guess
        why = "the pooled activations are the same for every clip (std 0): there is nothing to decode"
        return {**sizes, **versus_chance(None, [], ref, reason=why, chance_reason=why)}
    acc = _probe_accuracy(x[~test], y[~test], x[test], y[test])
    rng = np.random.default_rng(seed)
    draws = [_probe_accuracy(x[~test], rng.permutation(y[~test]), x[test], y[test]) for _ in range(shuffles)]
    return {**sizes, **versus_chance(acc, draws, ref)}
