"""Built-in plugin: the basic intervention types (add, ablate, scale, clamp).

Pure tensor arithmetic (no import of torch here, so listing plugins stays fast).
Notation: ``a_t`` the activation at frame t, ``d`` the unit direction,
``c_t = <a_t, d>`` its component along d, ``w_t`` the span weight, ``v`` the value.
"""

from __future__ import annotations

from dataclasses import dataclass

from steerlab.hookspecs import hookimpl


@dataclass(frozen=True)
class Add:
    name: str = "add"
    formula: str = "a_t <- a_t + w_t * v * d"
    description: str = "add the direction with strength v"
    value_kind: str = "strength"

    def apply(self, act, direction, value, weight):
        return act + value * direction[:, None] * weight[None, :]


@dataclass(frozen=True)
class Ablate:
    name: str = "ablate"
    formula: str = "a_t <- a_t - w_t * c_t * d"
    description: str = "project the direction out (strength unused)"
    value_kind: str = "none"

    def apply(self, act, direction, value, weight):
        return act - direction[:, None] * (weight * (direction @ act))[None, :]


@dataclass(frozen=True)
class Scale:
    name: str = "scale"
    formula: str = "a_t <- a_t + w_t * (v - 1) * c_t * d"
    description: str = "multiply the component along the direction by v"
    value_kind: str = "factor"

    def apply(self, act, direction, value, weight):
        return act + direction[:, None] * (weight * (value - 1.0) * (direction @ act))[None, :]


@dataclass(frozen=True)
class Clamp:
    name: str = "clamp"
    formula: str = "a_t <- a_t + w_t * (v - c_t) * d"
    description: str = "set the component along the direction to v"
    value_kind: str = "strength"

    def apply(self, act, direction, value, weight):
        return act + direction[:, None] * (weight * (value - direction @ act))[None, :]


@hookimpl
def steerlab_register_interventions(registry):
    for kind in (Add(), Ablate(), Scale(), Clamp()):
        registry.add(kind)
