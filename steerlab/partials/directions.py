"""Candidate directions for one unit (model, layer, family, target, density), learned on
the training seeds only (SCIENCE.md step 2).

Activations are the layer's unpatched outputs ``[channels, frames]`` of both signals of
each training pair (:func:`steerlab.tracing.capture`), seen as frame vectors ``r_t``.

- ``diffmeans``: mean over with-target clips of their time-mean ``r_t``, minus the
  same over without-target clips (the standard steering vector; pairs are matched,
  so it is also the mean of the per-pair differences).
- ``probe``: a logistic regression (scikit-learn, L2, C = 1) separating with-target
  from without-target frames, fitted on standardised channels on at most
  ``probe_frames`` random frames per clip; the direction is the raw-space gradient
  of its logit, ``coef / std``, pointing towards "with".
- ``sae``: the feature of a given dictionary whose mean code differs most between
  with and without frames in units of the pooled standard deviation; its decoder
  direction, signed so it points towards "with".
- ``random``: the null: a Gaussian direction with the norm of ``diffmeans`` (seeded
  by the run seed and the unit). Interventions use unit directions scaled by the
  layer's norm, so every method adds the same amount; matching the norm keeps the
  recorded vectors comparable too.

A direction that comes out zero or non-finite is not used; its reason is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from steerlab.partials.config import digest

_EPS = 1e-12


@dataclass(frozen=True)
class Learned:
    """A direction ``vector`` [channels] (float64, as learned, not normalised) and its provenance."""

    vector: np.ndarray
    provenance: dict


def capture_pairs(model: Any, layer: Any, specs: Sequence[Any], path: str, max_batch: int
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frame vectors ``[frames, channels]`` of the without and with signals of each spec."""
    import torch

    from steerlab import tracing
    from steerlab.stimuli import render

    waves = []
    for spec in specs:
        without, with_ = render(spec)
        waves += [torch.from_numpy(without)[None].repeat(model.channels, 1),
                  torch.from_numpy(with_)[None].repeat(model.channels, 1)]
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


def probe(without: Sequence[np.ndarray], with_: Sequence[np.ndarray], n_frames: int, seed: int
          ) -> tuple[np.ndarray, dict]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x0, x1 = _sample(without, n_frames, rng), _sample(with_, n_frames, rng)
    x = np.concatenate([x0, x1], 0)
    y = np.r_[np.zeros(len(x0)), np.ones(len(x1))]
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > _EPS, std, 1.0)  # a dead channel gets weight 0 either way
    clf = LogisticRegression(C=1.0, max_iter=2000)
    clf.fit((x - mean) / std, y)
    w = clf.coef_[0] / std
    return w, {"train_accuracy": float(clf.score((x - mean) / std, y)), "frames": int(len(x)), "C": 1.0}


def sae_feature(without: Sequence[np.ndarray], with_: Sequence[np.ndarray], dictionary: Any
                ) -> tuple[np.ndarray, dict]:
    import torch

    sae = dictionary.sae
    with torch.no_grad():
        c0 = sae.encode(torch.from_numpy(np.concatenate(without, 0)).float()).double().numpy()
        c1 = sae.encode(torch.from_numpy(np.concatenate(with_, 0)).float()).double().numpy()
    pooled = np.sqrt(0.5 * (c0.var(0) + c1.var(0)))
    effect = (c1.mean(0) - c0.mean(0)) / np.maximum(pooled, _EPS)
    j = int(np.argmax(np.abs(effect)))
    sign = 1.0 if effect[j] >= 0 else -1.0
    vec = sign * dictionary.directions[j].double().numpy()
    return vec, {"feature": j, "effect_size": float(effect[j]), "size": int(c0.shape[1]),
                 "dictionary_layer": dictionary.layer, "dictionary_data_hash": dictionary.data_hash}


def learn(unit_id: dict, without: Sequence[np.ndarray], with_: Sequence[np.ndarray], methods: Sequence[str],
          seed: int, probe_frames: int, dictionary: Optional[Any], train_keys: Sequence[str]
          ) -> dict[str, Learned | str]:
    """Every method's direction for one unit, or the reason it was not learned."""
    base = {"train_stimuli": list(train_keys), "layer_rms_norm_train": _rms_norm(without + with_)}
    out: dict[str, Learned | str] = {}
    dm = diff_of_means(without, with_)
    unit_seed = int(digest(unit_id, 8), 16)
    for method in methods:
        extra: dict = {}
        if method == "diffmeans":
            vec = dm
        elif method == "probe":
            vec, extra = probe(without, with_, probe_frames, seed + unit_seed)
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
            raise ValueError(f"unknown method {method!r}")
        norm = float(np.linalg.norm(vec))
        if not (np.all(np.isfinite(vec)) and norm > _EPS):
            out[method] = f"{method} direction is zero or not finite"
            continue
        rms = base["layer_rms_norm_train"]
        out[method] = Learned(np.asarray(vec, dtype=np.float64), {
            "source": method, "norm": norm,
            "natural_strength": norm / rms if rms > _EPS else None,
            "cosine_to_diffmeans": float(vec @ dm / (norm * max(float(np.linalg.norm(dm)), _EPS))),
            **extra, **base,
        })
    return out


def vector_hash(vec: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(vec, dtype="<f8").tobytes()).hexdigest()[:16]
