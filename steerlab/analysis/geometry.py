"""Measurements on a set of directions and the vectors they should explain (analyses a-e).

Everything here is numpy on plain arrays, so each measure can be tested on data with
a planted answer. Vectors are rows ``[n, width]``; directions are unit rows
``[size, width]``; ``codes [n, size]`` are an SAE's non-negative codes of the vectors.

- coverage (a): the share of vectors whose nearest direction (by cosine) passes a
  threshold, and the mean of that best cosine;
- usage (c): the share of vectors in which each direction is *strongly active*: its
  code is at least ``active_rel`` times the vector's largest code (and positive);
- reconstruction (b): relative squared error of the orthogonal projection of the
  vectors onto the span of the first ``m`` directions of an ordering;
- redundancy (d): the cosine matrix of the most used directions;
- stability (e): Hungarian matching (``scipy.optimize.linear_sum_assignment``) of
  the most used directions of two dictionaries, mean matched cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def random_directions(n: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` directions uniform on the unit sphere of ``width`` dimensions."""
    return unit_rows(rng.standard_normal((n, width)))


def best_cosines(vectors: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each vector, the cosine with its nearest direction and that direction's index.

    Signed cosine: an SAE direction has a sign (codes are non-negative), so a vector
    pointing against a direction is not explained by it. Zero vectors get cosine 0.
    """
    cos = unit_rows(vectors) @ unit_rows(directions).T
    idx = cos.argmax(axis=1)
    return cos[np.arange(len(cos)), idx], idx


def coverage(
    vectors: np.ndarray,
    directions: np.ndarray,
    threshold: float,
    curve: Sequence[float] = tuple(np.round(np.linspace(0.0, 1.0, 21), 2)),
) -> dict[str, Any]:
    """Share of vectors whose nearest direction has cosine >= ``threshold``, the mean best
    cosine (over all vectors, and over the covered ones), and the share covered at each
    threshold of ``curve``."""
    best, idx = best_cosines(vectors, directions)
    covered = best >= threshold
    return {
        "threshold": float(threshold),
        "share_covered": float(covered.mean()),
        "mean_best_cosine": float(best.mean()),
        "mean_best_cosine_covered": float(best[covered].mean()) if covered.any() else None,
        **(
            {}
            if covered.any()
            else {
                "mean_best_cosine_covered_reason": f"no vector is covered at threshold {threshold:g}: "
                f"the best cosine of any vector with its nearest direction is {float(best.max()):.3g}"
            }
        ),
        "directions_used": int(len(np.unique(idx))),
        "curve": {"thresholds": [float(t) for t in curve], "share_covered": [float((best >= t).mean()) for t in curve]},
        "best_cosines": best,
    }


def strongly_active(codes: np.ndarray, active_rel: float) -> np.ndarray:
    """``[n, size]`` booleans: code > 0 and code >= ``active_rel`` x the row's largest code."""
    codes = np.asarray(codes)
    top = codes.max(axis=1, keepdims=True)
    return (codes > 0) & (codes >= active_rel * top)


def usage(codes: np.ndarray, active_rel: float) -> np.ndarray:
    """Share of vectors in which each direction is strongly active ``[size]``."""
    return strongly_active(codes, active_rel).mean(axis=0)


def usage_order(codes: np.ndarray, active_rel: float) -> np.ndarray:
    """Direction indices from most to least used (ties broken by mean code, then index)."""
    u = usage(codes, active_rel)
    mean_code = np.asarray(codes).mean(axis=0)
    return np.lexsort((np.arange(len(u)), -mean_code, -u))


def usage_summary(u: np.ndarray, top_n: int, floor: float) -> dict[str, Any]:
    """How concentrated a usage vector is: sorted curve, directions used above ``floor``,
    share of all strong activations carried by the ``top_n`` most used, and the fewest
    directions that carry 90% of them."""
    s = np.sort(np.asarray(u, dtype=np.float64))[::-1]
    total = s.sum()
    cum = np.cumsum(s) / total if total > 0 else np.zeros_like(s)
    return {
        "sorted_usage": [float(v) for v in s],
        "n_used_above_floor": int((s >= floor).sum()),
        "usage_floor": float(floor),
        "top_n": int(min(top_n, len(s))),
        "top_n_share_of_activations": float(cum[min(top_n, len(s)) - 1]) if total > 0 else None,
        "n_for_90_percent": int(np.searchsorted(cum, 0.9) + 1) if total > 0 else None,
        **({} if total > 0 else {"reason": "no direction is strongly active in any vector: no shares to take"}),
    }


def span_basis(directions: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """An orthonormal basis ``[rank, width]`` of the span of ``directions``."""
    if len(directions) == 0:
        return np.zeros((0, np.shape(directions)[1]))
    _, s, vt = np.linalg.svd(np.asarray(directions, dtype=np.float64), full_matrices=False)
    rank = int((s > rtol * s[0]).sum()) if s[0] > 0 else 0
    return vt[:rank]


def projection_error(vectors: np.ndarray, directions: np.ndarray) -> float:
    """``sum ||x - P x||^2 / sum ||x||^2`` with ``P`` the projection onto span(directions)."""
    x = np.asarray(vectors, dtype=np.float64)
    total = float((x * x).sum())
    if total == 0:
        return 0.0
    q = span_basis(directions)
    resid = x - (x @ q.T) @ q
    return float((resid * resid).sum() / total)


def error_curve(vectors: np.ndarray, ordered: np.ndarray, ms: Sequence[int]) -> list[float]:
    """:func:`projection_error` with the first ``m`` rows of ``ordered``, for each ``m``."""
    return [projection_error(vectors, ordered[:m]) for m in ms]


def m_grid(size: int, width: int) -> list[int]:
    """Numbers of directions to try: every m up to 2 x width (where the curve moves), then
    a geometric sweep to ``size``."""
    dense = list(range(1, min(size, 2 * width) + 1))
    sparse = np.unique(np.geomspace(max(dense[-1], 1), size, 12).round().astype(int)).tolist()
    return sorted(set(dense) | set(sparse) | {size})


def cosine_matrix(directions: np.ndarray) -> np.ndarray:
    d = unit_rows(directions)
    return d @ d.T


def redundancy(directions: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Off-diagonal statistics of the cosine matrix of ``directions``."""
    c = cosine_matrix(directions)
    off = np.abs(c[~np.eye(len(c), dtype=bool)])
    return {
        "n": int(len(c)),
        "mean_abs_offdiagonal": float(off.mean()) if off.size else None,
        "max_abs_offdiagonal": float(off.max()) if off.size else None,
        **({} if off.size else {"reason": "fewer than two directions: no pair to compare"}),
        "pairs_above_threshold": int((np.triu(np.abs(c), 1) > threshold).sum()),
        "threshold": float(threshold),
        "matrix": c,
    }


def matched_cosines(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of the rows of ``a`` to rows of ``b`` maximising the total
    (signed) cosine; returns the matched cosines ``[min(len(a), len(b))]`` and, for each
    matched row of ``a``, the index of its partner in ``b``."""
    from scipy.optimize import linear_sum_assignment

    c = unit_rows(a) @ unit_rows(b).T
    rows, cols = linear_sum_assignment(c, maximize=True)
    return c[rows, cols], cols


def stability(
    dicts: Sequence[np.ndarray], orders: Sequence[np.ndarray], top_n: int, labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """Pairwise Hungarian stability of several dictionaries of the same layer.

    ``dicts``: directions ``[size, width]`` each; ``orders``: their usage orders. For each
    pair, the ``top_n`` most used of one are matched to the ``top_n`` most used of the
    other (``top_vs_top``, the headline) and to all of the other's directions
    (``top_vs_all``, which forgives a rank change in the tail).
    """
    labels = list(labels) if labels is not None else [str(i) for i in range(len(dicts))]
    pairs = []
    for i, j in combinations(range(len(dicts)), 2):
        ti, tj = dicts[i][orders[i][:top_n]], dicts[j][orders[j][:top_n]]
        tt, _ = matched_cosines(ti, tj)
        ta, _ = matched_cosines(ti, dicts[j])
        pairs.append({"a": labels[i], "b": labels[j], "top_vs_top": float(tt.mean()), "top_vs_all": float(ta.mean())})
    return {
        "top_n": int(top_n),
        "pairs": pairs,
        "mean_top_vs_top": float(np.mean([p["top_vs_top"] for p in pairs])) if pairs else None,
        "mean_top_vs_all": float(np.mean([p["top_vs_all"] for p in pairs])) if pairs else None,
        **({} if pairs else {"reason": "fewer than two dictionaries: no pair to match"}),
    }


def top1_alignment(directions: np.ndarray, order: np.ndarray, baseline: np.ndarray, top_n: int) -> float:
    """Mean over the ``top_n`` most used ``directions`` of the best (signed) cosine with
    any ``baseline`` direction: how well a retrained dictionary's main directions are
    found in the baseline one."""
    best, _ = best_cosines(directions[order[:top_n]], baseline)
    return float(best.mean())
