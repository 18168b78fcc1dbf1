"""Built-in plugin: the intervention catalogue.

Pure tensor arithmetic in ``apply`` (torch is not imported at module level, so
listing plugins stays fast); what needs the model happens in ``prepare``
(:mod:`.learned`: feature-clamp, archetype; :mod:`.replace`: patch, mean-ablate).
Notation (``docs/interventions.md``): ``a_t`` the activation at frame t, ``d`` the
unit direction, ``c_t = <a_t, d>`` its component along d, ``w_t`` the span weight,
``v`` the value.
"""

from __future__ import annotations

from dataclasses import dataclass

from steerlab.builtins.interventions.learned import Archetype, FeatureClamp
from steerlab.builtins.interventions.replace import MeanAblate, Patch
from steerlab.hookspecs import hookimpl


@dataclass(frozen=True)
class Add:
    name: str = "add"
    formula: str = "a_t <- a_t + w_t * v * d"
    description: str = "add the direction with strength v"
    value_scale: str = "strength"

    def apply(self, act, direction, value, weight, state=None):
        return act + value * direction[:, None] * weight[None, :]


@dataclass(frozen=True)
class Ablate:
    name: str = "ablate"
    formula: str = "a_t <- a_t - w_t * c_t * d"
    description: str = "project the direction out (strength unused)"
    value_scale: str = "none"

    def apply(self, act, direction, value, weight, state=None):
        return act - direction[:, None] * (weight * (direction @ act))[None, :]


@dataclass(frozen=True)
class Scale:
    name: str = "scale"
    formula: str = "a_t <- a_t + w_t * (v - 1) * c_t * d"
    description: str = "multiply the component along the direction by v"
    value_scale: str = "factor"

    def apply(self, act, direction, value, weight, state=None):
        return act + direction[:, None] * (weight * (value - 1.0) * (direction @ act))[None, :]


@dataclass(frozen=True)
class Clamp:
    name: str = "clamp"
    formula: str = "a_t <- a_t + w_t * (v - c_t) * d"
    description: str = "set the component along the direction to v"
    value_scale: str = "strength"

    def apply(self, act, direction, value, weight, state=None):
        return act + direction[:, None] * (weight * (value - direction @ act))[None, :]


@hookimpl
def steerlab_register_interventions(registry):
    for itype in (Add(), Ablate(), Scale(), Clamp(), FeatureClamp(), Archetype(), Patch(), MeanAblate()):
        registry.add(itype)
