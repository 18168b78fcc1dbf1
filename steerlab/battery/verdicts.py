"""Verdicts of a concept's run, with the positive control, the null and the oracle beside each.

Per (model, layer, variant, method, path) and removal method (``ablate``, ``subtract``,
``reverse``: the add recipe with the direction's sign flipped; ``reverse_calibrated``: the
calibrated raise and lower of :mod:`steerlab.battery.calibrated`, whose add side is
``add_calibrated`` where the others' is ``add``), as for
partials (:mod:`steerlab.partials.verdicts`): an *add* setting passes on a held-out pair when the
concept's rule (:meth:`steerlab.battery.concept.Rule.passes`) passes the patched decode
towards "with", a removal setting when it passes towards "without"; the unit is **steerable**
when one (add strength, removal setting), the same for every pair, passes both on at least
``rule.min_share`` of the pairs. Medians over pairs of target and damage at that setting come
with percentile-bootstrap 95% intervals (:func:`steerlab.partials.verdicts.median_ci`).

Validation is partials' (:func:`steerlab.partials.verdicts.validation`), judged per concept
over the controls that can vouch for it; a concept no control can vouch for is "no control",
and every verdict of its measured model is "not validated". The oracle is the ideal edit in the
waveform (the pair itself), scored by the same rule: where it fails, the rule, not the model,
decides the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from steerlab.battery.calibrated import ADD, CALIBRATED_OPS, REVERSE
from steerlab.battery.concept import Concept, no_control_reason
from steerlab.partials.verdicts import (
    NOT_VALIDATED,
    best_setting,
    flat,
    groups,
    label,
    median_ci,
    settings,
    validation,
)

GROUP_KEYS = ("model", "model_role", "layer", "variant", "method", "path")
REMOVALS = ("ablate", "subtract", "reverse", REVERSE, "sae_ablate")  # sae_ablate: the sae method's only
_ONE_SETTING = ("ablate", "sae_ablate")
#: the add op a removal's verdict pairs it with (``add`` unless named here)
ADD_OF = {REVERSE: ADD}
NO_CONTROL = "no control"


def strength_unit(removal: str) -> str:
    """The unit of the add strength a verdict of ``removal`` pairs with: ``"rms"`` (``strength x``
    the activation's RMS norm at the layer) or ``"calibrated"`` (``strength x`` the training pairs'
    own mean difference along the direction); the report and ``summary.csv`` name it beside the
    strength (``best_add_strength_unit``): calibrated exactly when its add op is
    (:data:`ADD_OF`, :data:`steerlab.battery.calibrated.CALIBRATED_OPS`)."""
    return "calibrated" if ADD_OF.get(removal, "add") in CALIBRATED_OPS else "rms"


@dataclass(frozen=True)
class BatteryVerdict:
    concept: str
    model: str
    model_role: str
    layer: str
    variant: str
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
    target_add: tuple[float, float, float]
    target_remove: tuple[float, float, float]
    damage_add: tuple[float, float, float]
    damage_remove: tuple[float, float, float]
    codes_changed_share: float | None

    def flat(self) -> dict[str, Any]:
        return flat(self)


def _removal_name(r: dict) -> str:
    return r["op"] if r["op"] in _ONE_SETTING else f"{r['op']} {r['strength']:g}"


def verdict(concept: Concept, rows: list[dict], removal: str, n_boot: int, seed: int) -> BatteryVerdict:
    """The verdict of one group's rows for one removal method (module docstring)."""
    rule = concept.rule
    add, rem = settings(rows, ADD_OF.get(removal, "add"), removal, _removal_name)
    seeds = sorted({r["seed"] for r in rows})
    share, s_best, r_best, a_rows, r_rows = best_setting(
        add,
        rem,
        seeds,
        lambda n: (0, 0.0) if n in _ONE_SETTING else (1, float(n.split()[1])),
        lambda a, r: rule.passes(a, "with") and rule.passes(r, "without"),
    )
    rng = np.random.default_rng(seed)
    codes = [r["codes_changed_share"] for r in rows if r.get("codes_changed_share") is not None]
    first = rows[0]
    return BatteryVerdict(
        first["concept"],
        first["model"],
        first["model_role"],
        first["layer"],
        first["variant"],
        first["method"],
        first["path"],
        removal,
        len(seeds),
        bool(share >= rule.min_share),
        float(max(share, 0.0)),
        s_best,
        r_best,
        sum(rule.passes(r, "with") for r in a_rows) / len(seeds),
        sum(rule.passes(r, "without") for r in r_rows) / len(seeds),
        median_ci([r["target"] for r in a_rows], n_boot, rng),
        median_ci([r["target"] for r in r_rows], n_boot, rng),
        median_ci([r["damage"] for r in a_rows], n_boot, rng),
        median_ci([r["damage"] for r in r_rows], n_boot, rng),
        float(np.mean(codes)) if codes else None,
    )


def verdicts(concept: Concept, rows: list[dict], n_boot: int = 1000, seed: int = 0) -> list[BatteryVerdict]:
    out = []
    for g in groups(rows, GROUP_KEYS):
        ops = {r["op"] for r in g}
        out += [
            verdict(concept, g, removal, n_boot, seed)
            for removal in REMOVALS
            if removal in ops and ADD_OF.get(removal, "add") in ops
        ]
    return out


def oracle(concept: Concept, plans: list) -> dict[str, dict[str, Any]]:
    """Per model: the ideal edit (the pair's own waveforms, the perfect decode) scored by the rule,
    towards "with" and back: ``pass_share`` (both ways), ``steerable`` (share >= min_share), and
    the medians of target and damage towards "with"."""
    from steerlab.battery.runner import _pair

    out = {}
    for cp in plans:
        ok, tgt, dmg = 0, [], []
        for spec in cp.test:
            without, with_ = _pair(concept, spec)
            a, r = concept.score(without, with_, spec), concept.score(with_, without, spec)
            ok += concept.rule.passes(a, "with") and concept.rule.passes(r, "without")
            tgt.append(a["target"])
            dmg.append(a["damage"])
        share = ok / max(1, len(cp.test))
        out[cp.model.name] = {
            "pass_share": share,
            "steerable": share >= concept.rule.min_share,
            "median_target": float(np.median([t for t in tgt if t is not None])) if tgt else math.nan,
            "median_damage": float(np.median(dmg)) if dmg else math.nan,
        }
    return out


def _validation(vs: list[BatteryVerdict]) -> dict[tuple[str, str], dict[str, Any]]:
    """Partials' validation per (method, removal). The removals that came before the calibrated
    one are judged among themselves, exactly as before it existed (so their marks do not change);
    the calibrated removal over every verdict, so a null steerable on a control under any removal,
    the calibrated null included, leaves it not validated (the stricter of the two readings)."""
    before = [v for v in vs if v.removal != REVERSE]
    val = validation(before)  # type: ignore[arg-type]  # duck-typed: model_role, model, method, removal, steerable
    if len(before) < len(vs):
        every = validation(vs)  # type: ignore[arg-type]
        val.update({k: st for k, st in every.items() if k[1] == REVERSE})
    return val


def table(concept: Concept, vs: list[BatteryVerdict], plans: list) -> dict[str, Any]:
    """The verdicts as rows, each with its validation, label, null, controls and oracle beside it,
    and the controls' summary. The same shape for every concept: ``controls`` (model -> why it
    can vouch) and each row's ``control`` (model -> its verdict) are empty where no control can
    vouch, ``no_control_reason`` says why (None otherwise), and ``validation`` holds every
    (method, removal) as ``"method/removal"`` -> status, reason, ``by_model``, ``by_control``."""
    controls = dict(concept.controls)
    val = _validation(vs)
    reason = no_control_reason(concept)
    if reason is not None:
        val = {
            k: v if k[0] == "random" else {**v, "status": NOT_VALIDATED, "reason": f"{NO_CONTROL}: {reason}"}
            for k, v in val.items()
        }
    orc = oracle(concept, plans)
    nulls = {(v.model, v.layer, v.variant, v.path, v.removal): v for v in vs if v.method == "random"}
    ctrl = {(v.model, v.method, v.removal): v for v in vs if v.model_role == "positive_control"}
    rows = []
    for v in vs:
        null = nulls.get((v.model, v.layer, v.variant, v.path, v.removal))
        row = v.flat()
        row["best_add_strength_unit"] = strength_unit(v.removal)
        row["label"] = label(v, val)  # type: ignore[arg-type]
        row["validation"] = val.get((v.method, v.removal), {}).get("status")
        row["validation_reason"] = val.get((v.method, v.removal), {}).get("reason")
        row["null_steerable"] = None if null is None else null.steerable
        row["null_pass_share"] = None if null is None else null.pass_share
        row["control"] = {  # empty when no control can vouch (the table's no_control_reason says why)
            c: (None if (c, v.method, v.removal) not in ctrl else ctrl[(c, v.method, v.removal)].steerable)
            for c in controls
        }
        row["oracle_pass_share"] = orc[v.model]["pass_share"]
        row["oracle_steerable"] = orc[v.model]["steerable"]
        rows.append(row)
    return {
        "concept": concept.name,
        "rule": concept.rule.to_dict(),
        "controls": controls,
        "no_control_reason": reason,
        "validation": {f"{m}/{r}": st for (m, r), st in val.items()},
        "oracle": orc,
        "verdicts": rows,
    }
