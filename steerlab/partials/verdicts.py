"""Verdicts per (model, layer, family, target, density, method, path, removal) (SCIENCE.md step 5).

For a held-out pair, an *add* setting (a strength) passes when adding the direction
to the without-target signal gains at least ``min_gain_db`` in the target band,
with concentration at least ``min_concentration`` and off-band log-spectral
distance at most ``max_offband_db``; a *removal* setting passes when the
with-target signal loses at least ``min_loss_db`` under the same two conditions.
The removal methods get separate verdicts (``removal``): ``ablate`` (project the
direction out; one setting) and ``subtract`` (calibrated strengths, see
:func:`steerlab.partials.sweep.projection_excess`), and for the ``sae`` method ``sae_ablate``
(the feature's code set to 0, the SAE's error kept; :func:`steerlab.partials.sweep.sae_code_ablation`). A pair passes a combination
(add setting, removal setting) when it passes both. The unit is **steerable** by that
removal method when some combination, the same for every pair, passes on at least
``min_share`` of the held-out pairs: one steering recipe must work on most stimuli,
not each stimulus its own strength.

Whether a verdict can be trusted is decided by the positive controls
(:func:`validation`): a method whose verdicts on a control are not all steerable, or
a control whose null is steerable somewhere, leaves that method's verdicts "not
validated", never "not steerable" (:func:`label`).
The best combination (highest share; then smallest strengths) is reported, with
medians over pairs of gain, loss, concentration and off-band distance at it and
bootstrap 95% intervals of those medians (percentile method, seeded).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from steerlab.errors import ConfigError
from steerlab.partials.config import Thresholds

GROUP_KEYS = ("model", "model_role", "layer", "family", "target_hz", "density", "method", "path")
# sae_ablate: the sae method's removal in the SAE's code space (steerlab.partials.sweep.sae_code_ablation)
REMOVALS = ("ablate", "subtract", "sae_ablate")
_ONE_SETTING = ("ablate", "sae_ablate")


def _median_or_none(values: list) -> float | None:
    """The median of the values that are not None; None when every value is."""
    kept = [x for x in values if x is not None]
    return float(np.median(kept)) if kept else None


def median_ci(values: Sequence[float | None], n_boot: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Median and a percentile bootstrap 95% interval of the median of the finite ``values``
    (None and non-finite ones left out); NaNs when none is left."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    boots = np.median(x[rng.integers(0, len(x), size=(n_boot, len(x)))], axis=1)
    return float(np.median(x)), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def flat(verdict: Any) -> dict[str, Any]:
    """A verdict dataclass as one flat row: each ``(median, ci_lo, ci_hi)`` field ``k`` as
    ``k_median``, ``k_ci_lo``, ``k_ci_hi``, every other field as it is."""
    out: dict[str, Any] = {}
    for k, v in asdict(verdict).items():
        if isinstance(v, (tuple, list)) and len(v) == 3:
            out[f"{k}_median"], out[f"{k}_ci_lo"], out[f"{k}_ci_hi"] = v
        else:
            out[k] = v
    return out


def groups(rows: list[dict], keys: Sequence[str]) -> list[list[dict]]:
    """The rows grouped by their values of ``keys``, groups in the order of their first row."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return list(out.values())


def settings(
    rows: list[dict], add_op: str, removal: str | None, name: Callable[[dict], str]
) -> tuple[dict[float, dict[int, dict]], dict[str, dict[int, dict]]]:
    """One group's rows by setting and seed: the ``add_op`` rows by strength, and the removal rows
    (op ``removal``; None: every other op) by their setting's ``name``."""
    add: dict[float, dict[int, dict]] = defaultdict(dict)
    rem: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        if r["op"] == add_op:
            add[r["strength"]][r["seed"]] = r
        elif removal is None or r["op"] == removal:
            rem[name(r)][r["seed"]] = r
    return add, rem


def best_setting(
    add: dict[float, dict[int, dict]],
    rem: dict[str, dict[int, dict]],
    seeds: list[int],
    order: Callable[[str], Any],
    passes: Callable[[dict, dict], bool],
) -> tuple[float, float | None, str | None, list[dict], list[dict]]:
    """The (add strength, removal setting) whose pairs pass (``passes(add_row, removal_row)``) on
    the largest share of ``seeds``: the first such in increasing strength, then removal ``order``.
    Returns the share (-1 when there is no combination), the strength, the removal setting's name
    and the add and removal rows at them (in seed order)."""
    best: tuple[float, float | None, str | None] = (-1.0, None, None)  # (share, strength, removal)
    for s in sorted(add):
        for name in sorted(rem, key=order):
            ok = [passes(add[s][k], rem[name][k]) for k in seeds if k in add[s] and k in rem[name]]
            share = sum(ok) / len(seeds)
            if share > best[0]:
                best = (share, s, name)
    share, s_best, r_best = best
    a_rows = [add[s_best][k] for k in seeds if k in add[s_best]] if s_best is not None else []
    r_rows = [rem[r_best][k] for k in seeds if k in rem[r_best]] if r_best is not None else []
    return share, s_best, r_best, a_rows, r_rows


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
    removal: str
    n_heldout: int
    steerable: bool
    pass_share: float
    best_add_strength: float | None
    best_remove: str | None
    add_share: float
    remove_share: float
    gain_db: tuple[float, float, float]
    loss_db: tuple[float, float, float]
    concentration_add: tuple[float, float, float]
    concentration_remove: tuple[float, float, float]
    offband_add_db: tuple[float, float, float]
    offband_remove_db: tuple[float, float, float]
    codes_changed_share: float | None
    layer_frame_rate_hz: float
    # the verdict's view of adding: median over held-out pairs, at the best add strength, of the
    # gain where the add passes concentration and off-band damage, 0 dB where it does not
    gain_passing_db: float = math.nan

    def flat(self) -> dict[str, Any]:
        return flat(self)


def offband(r: dict) -> float | None:
    """The off-band distance the rule reads: ``offband_db`` (the output space's own: the
    log-spectral distance on audio, the salience off-band distance on a pitch salience), or
    ``offband_lsd_db`` on rows written before ``offband_db`` existed."""
    return r["offband_db"] if "offband_db" in r else r.get("offband_lsd_db")


def _ok(x: float | None, lo: float | None = None, hi: float | None = None) -> bool:
    """A null score (nothing to measure, e.g. a change of nothing) passes no criterion."""
    return x is not None and (lo is None or x >= lo) and (hi is None or x <= hi)


def _passes_add(r: dict, t: Thresholds) -> bool:
    return (
        _ok(r["gain_db"], t.min_gain_db)
        and _ok(r["concentration"], t.min_concentration)
        and _ok(offband(r), hi=t.max_offband_db)
    )


def _passes_remove(r: dict, t: Thresholds) -> bool:
    return (
        r["gain_db"] is not None
        and -r["gain_db"] >= t.min_loss_db
        and _ok(r["concentration"], t.min_concentration)
        and _ok(offband(r), hi=t.max_offband_db)
    )


def _removal_name(r: dict) -> str:
    return r["op"] if r["op"] in _ONE_SETTING else f"subtract {r['strength']:g}"


def _removal_order(name: str) -> tuple[int, float]:
    return (0, 0.0) if name == "ablate" else (2, 0.0) if name == "sae_ablate" else (1, float(name.split()[1]))


def _passes_add_shape(r: dict, t: Thresholds) -> bool:
    return _ok(r["concentration"], t.min_concentration) and _ok(offband(r), hi=t.max_offband_db)


def verdict(rows: list[dict], t: Thresholds, n_boot: int, seed: int, removal: str | None = None) -> Verdict:
    """The verdict of one group's rows (all held-out pairs; add rows and the removal rows of
    ``removal``, ``"ablate"``, ``"subtract"`` or ``"sae_ablate"``; None: whichever removal setting is best).
    Raises ValueError when the group has no add or no removal rows of that kind."""
    first = rows[0]
    add, rem = settings(rows, "add", removal, _removal_name)
    if not add or not rem:
        raise ConfigError(f"no add rows or no {removal or 'removal'} rows in this group", parameter="rows")
    seeds = sorted({r["seed"] for r in rows})
    share, s_best, r_best, a_rows, r_rows = best_setting(
        add, rem, seeds, _removal_order, lambda a, r: _passes_add(a, t) and _passes_remove(r, t)
    )
    rng = np.random.default_rng(seed)
    add_share = sum(_passes_add(r, t) for r in a_rows) / len(seeds)
    rem_share = sum(_passes_remove(r, t) for r in r_rows) / len(seeds)
    codes = [r["codes_changed_share"] for r in rows if r.get("codes_changed_share") is not None]
    return Verdict(
        first["model"],
        first["model_role"],
        first["layer"],
        first["family"],
        first["target_hz"],
        first["density"],
        first["method"],
        first["path"],
        removal or "best",
        len(seeds),
        bool(share >= t.min_share),
        float(share),
        s_best,
        r_best,
        float(add_share),
        float(rem_share),
        median_ci([r["gain_db"] for r in a_rows], n_boot, rng),
        median_ci([None if r["gain_db"] is None else -r["gain_db"] for r in r_rows], n_boot, rng),
        median_ci([r["concentration"] for r in a_rows], n_boot, rng),
        median_ci([r["concentration"] for r in r_rows], n_boot, rng),
        median_ci([offband(r) for r in a_rows], n_boot, rng),
        median_ci([offband(r) for r in r_rows], n_boot, rng),
        float(np.mean(codes)) if codes else None,
        first["layer_frame_rate_hz"],
        float(
            np.median([r["gain_db"] if _passes_add_shape(r, t) and r["gain_db"] is not None else 0.0 for r in a_rows])
        )
        if a_rows
        else math.nan,
    )


def verdicts(rows: list[dict], t: Thresholds, n_boot: int = 1000, seed: int = 0) -> list[Verdict]:
    """Verdicts of every group in ``rows`` (in the rows' order), one per removal method present."""
    out = []
    for g in groups(rows, GROUP_KEYS):
        ops = {r["op"] for r in g}
        out += [verdict(g, t, n_boot, seed, removal) for removal in REMOVALS if removal in ops and "add" in ops]
    return out


VALIDATED, NOT_VALIDATED, UNCHECKED, CONTROL = "validated", "not validated", "unchecked", "control"


def control_summary(vs: list[Verdict]) -> dict[str, Any]:
    """The controls as counts: per positive-control model, method and removal method,
    ``[steerable, total]`` of its verdicts; the null (random direction) per model, which
    must be steerable nowhere; and :func:`validation`."""
    null = [v for v in vs if v.method == "random"]
    pos = [v for v in vs if v.model_role == "positive_control"]
    by: dict[str, dict[str, list[int]]] = {}
    for v in pos:
        if v.method == "random":
            continue
        cell = by.setdefault(v.model, {}).setdefault(f"{v.method}/{v.removal}", [0, 0])
        cell[0] += v.steerable
        cell[1] += 1
    learned = [v for v in pos if v.method != "random"]
    return {
        "null_total": len(null),
        "null_steerable": sum(v.steerable for v in null),
        "null_ok": bool(null) and not any(v.steerable for v in null),
        "positive_models": sorted({v.model for v in pos}),
        "positive_total": len(learned),
        "positive_steerable": sum(v.steerable for v in learned),
        "positive_ok": bool(learned) and all(v.steerable for v in learned),
        "positive_by_model": by,
        "null_by_model": {
            m: [sum(v.steerable for v in null if v.model == m), sum(1 for v in null if v.model == m)]
            for m in sorted({v.model for v in null})
        },
        "validation": {f"{m}/{r}": st for (m, r), st in validation(vs).items()},
    }


def validation(vs: list[Verdict]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (method, removal) of the measured models: whether the positive controls vouch for
    its verdicts, judged **per control** and then over all of them.

    Per control ``c`` (``by_control[c]``: ``status``, ``steerable``, ``total``): ``"validated"``
    when ``c`` ran the method and every one of its verdicts there is steerable while the null is
    steerable on none of ``c``'s cells; ``"not validated"`` when one of those verdicts is not
    steerable or the null is steerable on ``c``; ``"unchecked"`` when ``c`` ran but not this method
    (e.g. ``sae`` without a dictionary for it). Over all (``status``, ``reason``): ``"not
    validated"`` if any control says so, else ``"unchecked"`` if any control (or, no control
    having run, none) could not check it, else ``"validated"``: a method is validated only by
    every control that ran. ``"control"`` for the null itself. ``by_model``: ``[steerable,
    total]`` per control that ran the method."""
    pos = [v for v in vs if v.model_role == "positive_control"]
    controls = sorted({v.model for v in pos})
    null_bad = {v.model for v in pos if v.method == "random" and v.steerable}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for m, r in dict.fromkeys((v.method, v.removal) for v in vs):
        if m == "random":
            out[(m, r)] = {
                "status": CONTROL,
                "reason": "the null: must be steerable nowhere",
                "by_model": {},
                "by_control": {},
            }
            continue
        mine = [v for v in pos if v.method == m and v.removal == r]
        by = {
            c: [sum(v.steerable for v in mine if v.model == c), sum(1 for v in mine if v.model == c)]
            for c in sorted({v.model for v in mine})
        }
        per: dict[str, dict[str, Any]] = {}
        for c in controls:
            a, b = by.get(c, [0, 0])
            if not b:
                st = UNCHECKED
            elif c in null_bad or a < b:
                st = NOT_VALIDATED
            else:
                st = VALIDATED
            per[c] = {"status": st, "steerable": a, "total": b, "null_steerable": c in null_bad}

        def names(status: str, per: dict[str, dict[str, Any]] = per) -> str:
            return ", ".join(
                f"{c} {per[c]['steerable']}/{per[c]['total']}"
                + (" (null steerable)" if per[c]["null_steerable"] else "")
                for c in controls
                if per[c]["status"] == status
            )

        if not controls:
            st, why = UNCHECKED, "no positive control ran"
        elif any(p["status"] == NOT_VALIDATED for p in per.values()):
            st, why = NOT_VALIDATED, "control failed: " + names(NOT_VALIDATED)
        elif any(p["status"] == UNCHECKED for p in per.values()):
            st, why = UNCHECKED, "not run on " + ", ".join(c for c in controls if per[c]["status"] == UNCHECKED)
        else:
            st, why = VALIDATED, "steerable on every cell of " + names(VALIDATED)
        out[(m, r)] = {"status": st, "reason": why, "by_model": by, "by_control": per}
    return out


def label(v: Verdict, val: dict[tuple[str, str], dict[str, Any]]) -> str:
    """What a verdict may be called: on a measured model, "steerable"/"not steerable" only when
    its method's controls passed, else "not validated" or "unchecked"; the null and the
    controls' own verdicts are named as such."""
    word = "steerable" if v.steerable else "not steerable"
    if v.model_role == "positive_control":
        return f"control: {word}"
    if v.method == "random":
        return f"null: {word}"
    st = val.get((v.method, v.removal), {}).get("status", UNCHECKED)
    return word if st == VALIDATED else st


def oracle(plans: list, t: Thresholds, scoring: dict, max_batch: int = 16) -> list[dict[str, Any]]:
    """The ceiling of the rule: the *ideal* edit (exactly the target partial added to the
    without-target waveform, or removed from the with-target one) scored like every item.
    Where even it fails, no direction at any layer can pass, whatever the model: the rule
    or the scorer, not the model, decides that verdict.

    On a model with a decoder the ideal edit is scored on the waveforms themselves (the
    perfect decode). On a model whose output is not a sound (a pitch salience) it is scored
    through the same model: its unpatched outputs of the without- and with-target signals,
    one against the other, by the same scorer as the items (:func:`steerlab.partials.sweep.score_output`).
    Per (model, family, target, density): ``pass_share``, ``steerable``, the medians of the
    off-band distance adding (``median_offband_db``) and of gain and concentration adding."""
    from steerlab.partials.sweep import _pair, note_bands_for, outputs, score_output

    seen: dict[tuple, dict[str, Any]] = {}
    for plan in plans:
        model = plan.model
        for unit, specs in plan.test.items():
            key = (unit.model, unit.family, unit.target_hz, unit.density)
            if key in seen:
                continue
            pairs = [_pair(spec) for spec in specs] if model.has_decoder else outputs(model, specs, max_batch)
            ok, off, gain, conc = 0, [], [], []
            for spec, (without, with_) in zip(specs, pairs):
                score = _AudioAsModel(spec.sample_rate) if model.has_decoder else model
                note = note_bands_for(score, spec, scoring)  # a note on audio: its own partials
                a = score_output(score, without, with_, spec.target_hz, scoring, note=note)
                r = score_output(score, with_, without, spec.target_hz, scoring, note=note)
                ok += _passes_add(a, t) and _passes_remove(r, t)
                off.append(offband(a))
                gain.append(a["gain_db"])
                conc.append(a["concentration"])
            seen[key] = {
                "model": unit.model,
                "family": unit.family,
                "target_hz": unit.target_hz,
                "density": unit.density,
                "pass_share": ok / len(specs),
                "steerable": ok / len(specs) >= t.min_share,
                "median_offband_db": _median_or_none(off),
                "median_gain_db": _median_or_none(gain),
                "median_concentration": _median_or_none(conc),
                "output_kind": "audio" if model.has_decoder else getattr(model, "output_kind", None),
            }
    return list(seen.values())


class _AudioAsModel:
    """The waveform itself as the output: what :func:`oracle` scores on decoding models."""

    has_decoder = True

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
