"""Verdicts per (model, layer, family, target, density, method, path) (SCIENCE.md step 5).

For a held-out pair, an *add* setting (a strength) passes when adding the direction
to the without-target signal gains at least ``min_gain_db`` in the target band,
with concentration at least ``min_concentration`` and off-band log-spectral
distance at most ``max_offband_db``; a *removal* setting (subtract at a strength,
or ablate) passes when the with-target signal loses at least ``min_loss_db``
under the same two conditions. A pair passes a combination (add setting, removal
setting) when it passes both. The unit is **steerable** when some combination,
the same for every pair, passes on at least ``min_share`` of the held-out pairs:
one steering recipe must work on most stimuli, not each stimulus its own strength.
The best combination (highest share; then smallest strengths) is reported, with
medians over pairs of gain, loss, concentration and off-band distance at it and
bootstrap 95% intervals of those medians (percentile method, seeded).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

import numpy as np

from steerlab.partials.config import Thresholds

GROUP_KEYS = ("model", "model_role", "layer", "family", "target_hz", "density", "method", "path")


def median_ci(values: Sequence[float], n_boot: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Median and a percentile bootstrap 95% interval of the median; NaNs when empty."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    boots = np.median(x[rng.integers(0, len(x), size=(n_boot, len(x)))], axis=1)
    return float(np.median(x)), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


@dataclass(frozen=True)
class Verdict:
    model: str
    model_role: str
    layer: str
    family: str
    target_hz: float
    density: int
    method: str
    path: str
    n_heldout: int
    steerable: bool
    pass_share: float
    best_add_strength: Optional[float]
    best_remove: Optional[str]
    add_share: float
    remove_share: float
    gain_db: tuple[float, float, float]
    loss_db: tuple[float, float, float]
    concentration_add: tuple[float, float, float]
    concentration_remove: tuple[float, float, float]
    offband_add_db: tuple[float, float, float]
    offband_remove_db: tuple[float, float, float]
    codes_changed_share: Optional[float]
    layer_frame_rate_hz: float

    def flat(self) -> dict[str, Any]:
        d = asdict(self)
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, (tuple, list)) and len(v) == 3:
                out[f"{k}_median"], out[f"{k}_ci_lo"], out[f"{k}_ci_hi"] = v
            else:
                out[k] = v
        return out


def _passes_add(r: dict, t: Thresholds) -> bool:
    return (r["gain_db"] >= t.min_gain_db and r["concentration"] >= t.min_concentration
            and r["offband_lsd_db"] <= t.max_offband_db)


def _passes_remove(r: dict, t: Thresholds) -> bool:
    return (-r["gain_db"] >= t.min_loss_db and r["concentration"] >= t.min_concentration
            and r["offband_lsd_db"] <= t.max_offband_db)


def _removal_name(r: dict) -> str:
    return "ablate" if r["op"] == "ablate" else f"subtract {r['strength']:g}"


def _removal_order(name: str) -> tuple[int, float]:
    return (0, 0.0) if name == "ablate" else (1, float(name.split()[1]))


def verdict(rows: list[dict], t: Thresholds, n_boot: int, seed: int) -> Verdict:
    """The verdict of one group's rows (all ops and strengths, all held-out pairs)."""
    first = rows[0]
    add: dict[float, dict[int, dict]] = defaultdict(dict)
    rem: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        if r["op"] == "add":
            add[r["strength"]][r["seed"]] = r
        else:
            rem[_removal_name(r)][r["seed"]] = r
    seeds = sorted({r["seed"] for r in rows})
    best = (-1.0, None, None)
    for s in sorted(add):
        for name in sorted(rem, key=_removal_order):
            ok = [_passes_add(add[s][k], t) and _passes_remove(rem[name][k], t)
                  for k in seeds if k in add[s] and k in rem[name]]
            share = sum(ok) / len(seeds)
            if share > best[0]:
                best = (share, s, name)
    share, s_best, r_best = best
    rng = np.random.default_rng(seed)
    a_rows = [add[s_best][k] for k in seeds if k in add[s_best]] if s_best is not None else []
    r_rows = [rem[r_best][k] for k in seeds if k in rem[r_best]] if r_best is not None else []
    add_share = sum(_passes_add(r, t) for r in a_rows) / len(seeds)
    rem_share = sum(_passes_remove(r, t) for r in r_rows) / len(seeds)
    codes = [r["codes_changed_share"] for r in rows if r.get("codes_changed_share") is not None]
    return Verdict(
        first["model"], first["model_role"], first["layer"], first["family"], first["target_hz"], first["density"],
        first["method"], first["path"], len(seeds), bool(share >= t.min_share), float(share), s_best, r_best,
        float(add_share), float(rem_share),
        median_ci([r["gain_db"] for r in a_rows], n_boot, rng),
        median_ci([-r["gain_db"] for r in r_rows], n_boot, rng),
        median_ci([r["concentration"] for r in a_rows], n_boot, rng),
        median_ci([r["concentration"] for r in r_rows], n_boot, rng),
        median_ci([r["offband_lsd_db"] for r in a_rows], n_boot, rng),
        median_ci([r["offband_lsd_db"] for r in r_rows], n_boot, rng),
        float(np.mean(codes)) if codes else None, first["layer_frame_rate_hz"],
    )


def verdicts(rows: list[dict], t: Thresholds, n_boot: int = 1000, seed: int = 0) -> list[Verdict]:
    """Verdicts of every group in ``rows``, in the rows' order."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in GROUP_KEYS), []).append(r)
    return [verdict(g, t, n_boot, seed) for g in groups.values()]


def control_summary(vs: list[Verdict]) -> dict[str, Any]:
    """The two controls: the null must never be steerable; the positive control model's
    learned directions (all methods but the null) should be."""
    null = [v for v in vs if v.method == "random"]
    pos = [v for v in vs if v.model_role == "positive_control" and v.method != "random"]
    pos_dm = [v for v in pos if v.method == "diffmeans"]
    out = {
        "null_total": len(null), "null_steerable": sum(v.steerable for v in null),
        "null_ok": bool(null) and not any(v.steerable for v in null),
        "positive_total": len(pos_dm), "positive_steerable": sum(v.steerable for v in pos_dm),
        "positive_ok": bool(pos_dm) and all(v.steerable for v in pos_dm),
        "positive_by_method": {m: [sum(v.steerable for v in pos if v.method == m),
                                   sum(1 for v in pos if v.method == m)] for m in sorted({v.method for v in pos})},
        "null_by_model": {m: [sum(v.steerable for v in null if v.model == m), sum(1 for v in null if v.model == m)]
                          for m in sorted({v.model for v in null})},
    }
    return out


def oracle(plans: list, t: Thresholds, scoring: dict) -> list[dict[str, Any]]:
    """The ceiling of the rule: the *ideal* edit (exactly the target partial added to the
    without-target waveform, or removed from the with-target one) scored like every item.
    Where even it fails, no direction at any layer can pass, whatever the model: the rule
    or the scorer, not the model, decides that verdict."""
    from steerlab.scoring import ScoreConfig, score
    from steerlab.stimuli import render

    seen: dict[tuple, dict[str, Any]] = {}
    for plan in plans:
        for unit, specs in plan.test.items():
            key = (unit.model, unit.family, unit.target_hz, unit.density)
            if key in seen:
                continue
            ok = 0
            offband = []
            for spec in specs:
                without, with_ = render(spec)
                a = score(without, with_, spec.sample_rate, [spec.target_hz], ScoreConfig(**scoring), multires=False)["targets"][0]
                r = score(with_, without, spec.sample_rate, [spec.target_hz], ScoreConfig(**scoring), multires=False)["targets"][0]
                ok += _passes_add(a, t) and _passes_remove(r, t)
                offband.append(a["offband_lsd_db"])
            seen[key] = {"model": unit.model, "family": unit.family, "target_hz": unit.target_hz,
                         "density": unit.density, "pass_share": ok / len(specs),
                         "steerable": ok / len(specs) >= t.min_share, "median_offband_db": float(np.median(offband))}
    return list(seen.values())
