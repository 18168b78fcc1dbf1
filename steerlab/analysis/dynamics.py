"""Where motions happen and how trajectories look (analyses h and j).

- locality (h): can the archetype a transition follows be predicted from where it
  starts? A logistic regression maps the starting vector ``r_t`` to the top archetype
  of ``g_t`` (its largest code), restricted to the ``top_n`` most frequent top
  archetypes; its held-out accuracy is compared with chance (``1 / classes`` and the
  majority class share). The dispersion radius of an archetype is the mean Euclidean
  distance of its starting points from their centroid; the random baseline is the
  same radius for random subsets of the same size drawn from all starting points.
- trajectories (j): a shared 2-D PCA projection of several activation trajectories,
  and two numbers per trajectory: ``smoothness`` = mean cosine between successive
  generators (1: a smooth curve; near 0: a random walk) and ``step_over_spread`` =
  mean step length over the RMS distance of the points from their mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from steerlab.analysis.geometry import unit_rows


def top_labels(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The index of each row's largest code, and whether the row has any positive code."""
    codes = np.asarray(codes)
    return codes.argmax(axis=1), codes.max(axis=1) > 0


def dispersion_radius(points: np.ndarray) -> float:
    """Mean Euclidean distance of ``points`` from their centroid."""
    p = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(p - p.mean(axis=0), axis=1).mean())


def locality(
    starts: np.ndarray,
    codes: np.ndarray,
    top_n: int = 20,
    test_share: float = 0.25,
    seed: int = 0,
    random_draws: int = 5,
    max_vectors: int = 20_000,
) -> dict[str, Any]:
    """Predict each transition's top archetype from its starting vector (see the module docstring).

    ``starts [n, width]``: ``r_t``; ``codes [n, size]``: the codes of ``g_t``. Returns
    accuracy, both chances, the classes used and a per-archetype dispersion table.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    labels, moving = top_labels(codes)
    starts = np.asarray(starts, dtype=np.float64)
    pool = np.flatnonzero(moving)
    if len(pool) > max_vectors:  # subsample before choosing classes, so every class keeps its transitions
        pool = np.sort(rng.choice(pool, max_vectors, replace=False))
    counts = np.bincount(labels[pool], minlength=np.shape(codes)[1])
    classes = [int(c) for c in np.argsort(-counts, kind="stable")[:top_n] if counts[c] > 0]
    keep = pool[np.isin(labels[pool], classes)]
    x, y = starts[keep], labels[keep]
    out: dict[str, Any] = {
        "classes": classes,
        "n_classes": len(classes),
        "n_vectors": int(len(keep)),
        "test_share": test_share,
        "chance_uniform": 1.0 / len(classes) if classes else None,
    }
    if not classes:
        out["chance_uniform_reason"] = "no archetype is the strongest of any transition"
    if len(classes) < 2 or len(keep) < 10:
        out.update(accuracy=None, chance_majority=None, note="fewer than two archetypes or ten transitions")
    else:
        counts_y = np.bincount(y)
        stratify = y if counts_y[counts_y > 0].min() >= 2 else None
        xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_share, random_state=seed, stratify=stratify)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        clf.fit(xtr, ytr)
        majority = np.bincount(ytr).argmax()
        out.update(
            accuracy=float((clf.predict(xte) == yte).mean()),
            chance_majority=float((yte == majority).mean()),
            n_test=int(len(yte)),
        )
    table = []
    for c in classes:
        pts = x[y == c]
        rand = [dispersion_radius(x[rng.choice(len(x), len(pts), replace=False)]) for _ in range(random_draws)]
        table.append(
            {
                "archetype": c,
                "n": int(len(pts)),
                "radius": dispersion_radius(pts),
                "random_radius": float(np.mean(rand)),
            }
        )
    out["dispersion"] = table
    if table:
        ratios = [t["radius"] / t["random_radius"] for t in table if t["random_radius"] > 0]
        out["median_radius_ratio"] = float(np.median(ratios)) if ratios else None
        if not ratios:
            out["median_radius_ratio_reason"] = "every random radius is 0: the starting vectors do not spread"
        out["share_tighter_than_random"] = float(np.mean([t["radius"] < t["random_radius"] for t in table]))
    return out


def smoothness(trajectory: np.ndarray) -> float:
    """Mean cosine between successive steps of ``trajectory [frames, width]``."""
    g = np.diff(np.asarray(trajectory, dtype=np.float64), axis=0)
    u = unit_rows(g)
    moving = np.linalg.norm(g, axis=1) > 0
    both = moving[:-1] & moving[1:]
    if not both.any():
        return float("nan")
    return float((u[:-1] * u[1:]).sum(axis=1)[both].mean())


def step_over_spread(trajectory: np.ndarray) -> float:
    """Mean step length over the RMS distance of the points from their mean."""
    t = np.asarray(trajectory, dtype=np.float64)
    spread = float(np.sqrt(((t - t.mean(axis=0)) ** 2).sum(axis=1).mean()))
    steps = float(np.linalg.norm(np.diff(t, axis=0), axis=1).mean())
    return steps / spread if spread > 0 else float("nan")


def project_trajectories(trajectories: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """One PCA (fitted on all trajectories together, each row one frame) projecting every
    trajectory to 2-D; returns the projections and the explained-variance ratios."""
    from sklearn.decomposition import PCA

    stacked = np.concatenate([np.asarray(t, dtype=np.float64) for t in trajectories])
    pca = PCA(n_components=min(2, stacked.shape[1], len(stacked))).fit(stacked)
    return [pca.transform(np.asarray(t, dtype=np.float64)) for t in trajectories], pca.explained_variance_ratio_
