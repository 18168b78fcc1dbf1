"""How a patch changed a classifier's output: class probabilities before and after.

A model without a decoder and without scorers of its own output space returns class
logits ``[classes]``; :func:`classification_scores` compares the two distributions and
:func:`class_names` labels them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from steerlab.errors import SteerlabError
from steerlab.model import AudioModel


def class_names(model: AudioModel, n_classes: int) -> list[str]:
    """The model's ``class_names`` when it has a list of the right length, else ``class0``, ``class1``, ..."""
    names = getattr(model, "class_names", None)
    if isinstance(names, (list, tuple)) and len(names) == n_classes:
        return [str(n) for n in names]
    return [f"class{i}" for i in range(n_classes)]


def classification_scores(
    baseline: np.ndarray, patched: np.ndarray, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """How a patch changed a classifier's output: logits ``[classes]`` before and after.

    Per class: baseline and patched probability (softmax) and logit, and their deltas;
    the top class before and after; ``kl_divergence`` = KL(p_baseline || p_patched) in nats;
    ``total_variation`` = half the L1 distance between the two distributions. Raises
    :class:`SteerlabError` for logits that are not two vectors of one length.
    """
    b = np.asarray(baseline, dtype=np.float64).reshape(-1)
    p = np.asarray(patched, dtype=np.float64).reshape(-1)
    if b.shape != p.shape or b.size == 0:
        raise SteerlabError(f"logits must be two vectors of one length; got {b.shape} and {p.shape}")
    names = list(names) if names is not None else [f"class{i}" for i in range(b.size)]

    def log_softmax(x: np.ndarray) -> np.ndarray:
        z = x - x.max()
        return z - np.log(np.exp(z).sum())

    lb, lp = log_softmax(b), log_softmax(p)
    pb, pp = np.exp(lb), np.exp(lp)
    classes = [
        {
            "class": names[i],
            "index": i,
            "baseline_prob": float(pb[i]),
            "patched_prob": float(pp[i]),
            "delta_prob": float(pp[i] - pb[i]),
            "baseline_logit": float(b[i]),
            "patched_logit": float(p[i]),
            "delta_logit": float(p[i] - b[i]),
        }
        for i in range(b.size)
    ]
    tb, tp = int(np.argmax(b)), int(np.argmax(p))
    return {
        "classes": classes,
        "top_before": {"class": names[tb], "index": tb, "prob": float(pb[tb])},
        "top_after": {"class": names[tp], "index": tp, "prob": float(pp[tp])},
        "top_changed": tb != tp,
        "kl_divergence": float(np.sum(pb * (lb - lp))),
        "kl_definition": "KL(p_baseline || p_patched) = sum_c p_b(c) (log p_b(c) - log p_p(c)), nats",
        "total_variation": float(0.5 * np.abs(pp - pb).sum()),
    }
