"""Interventions along learned directions: ``feature-clamp`` (through a feature dictionary's
SAE) and ``archetype`` (a motion: added to the generators ``g_t = r_{t+1} - r_t``).

Exact definitions, index conventions and value semantics: ``docs/interventions.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from steerlab.errors import InterventionError

FEATURE_MODES = ("set", "scale")


@dataclass(frozen=True)
class FeatureClampState:
    """A feature dictionary's SAE and the feature to clamp, resolved for one run."""

    ref: Any  # steerlab.api.DictionaryRef
    feature: int
    mode: str
    atom: Any  # [channels]: s * W_dec[j], the raw-space change per unit of code j
    sae: Any

    @property
    def code_per_unit(self) -> float:
        """Code units per activation unit along the feature: ``1 / (s * |W_dec[j]|)``."""
        return 1.0 / float(self.atom.norm())

    def to_json(self) -> dict[str, Any]:
        return {
            "dictionary": self.ref.to_json(),
            "feature": self.feature,
            "mode": self.mode,
            "sae_scale": float(self.sae.scale),
            "code_per_activation_unit": self.code_per_unit,
        }


def _feature_index(value: Any) -> int:
    try:
        j = int(value)
    except (TypeError, ValueError):
        j = -1
    if isinstance(value, bool) or j < 0 or (isinstance(value, float) and value != j):
        raise InterventionError(f"feature-clamp option 'feature' must be a latent number >= 0, got {value!r}")
    return j


@dataclass(frozen=True)
class FeatureClamp:
    """Clamp one SAE feature of each frame, keeping the SAE's reconstruction error.

    ``a'_t = a_t + w_t (D(z'_t) - D(z_t))`` where ``z_t = E(a_t)`` (the SAE's codes,
    normalisation included) and ``z'_t`` equals ``z_t`` except at feature ``j``. ``D`` is
    affine, so this is ``a_t + w_t (z'_tj - z_tj) s W_dec[j]``: the centre, ``b_dec`` and
    the error ``a_t - D(z_t)`` cancel exactly. mode ``set``: ``z'_tj = v / (s |W_dec[j]|)``
    (``v`` in activation units: the feature's decoded contribution then has norm ``v``);
    mode ``scale``: ``z'_tj = v z_tj``.
    """

    name: str = "feature-clamp"
    formula: str = "a_t <- a_t + w_t * (z'_tj - z_tj) * s * W_dec[j];  z = E(a_t), z'_tj = v/(s|W_dec[j]|) or v*z_tj"
    description: str = (
        "set (mode=set) or scale (mode=scale) SAE feature j of each frame; only j's decoded "
        "contribution changes, the reconstruction error is kept"
    )
    value_scale: str = "strength"
    needs_direction: bool = False
    options_help = MappingProxyType(
        {
            "dictionary": "feature dictionary folder (steerlab learn features); the CLI's --feature DICT:ID sets it",
            "feature": "latent number j; set by --feature DICT:ID",
            "mode": "set (default: v in activation units, relative or absolute) or scale (v a factor on the code)",
        }
    )

    def value_scale_for(self, options):
        return "factor" if options.get("mode", "set") == "scale" else "strength"

    def prepare(self, model, layer, direction, options):
        from steerlab import api

        if options.get("dictionary") is None or options.get("feature") is None:
            raise InterventionError(
                "feature-clamp needs the options dictionary (a feature dictionary) and feature (a latent number)",
                parameter=("dictionary", "feature"),
            )
        mode = options.get("mode", "set")
        if mode not in FEATURE_MODES:
            raise InterventionError(f"feature-clamp mode must be one of {', '.join(FEATURE_MODES)}, got {mode!r}")
        j = _feature_index(options["feature"])
        ref = api.resolve_dictionary(options["dictionary"], model)
        api.check_dictionary_fits(ref, model, layer, "feature")
        size = ref.dictionary.config.size
        if j >= size:
            raise InterventionError(
                f"feature {j} is out of range: dictionary {ref.spec} has {size} features (0..{size - 1})"
            )
        sae = ref.dictionary.sae
        atom = (sae.W_dec[j] * sae.scale).detach().clone()
        return FeatureClampState(ref, j, mode, atom, sae)

    def apply(self, act, direction, value, weight, state):
        import torch

        sae = state.sae
        with torch.no_grad():
            x = act.T.to(sae.W_dec.dtype)  # [frames, channels]
            code = sae.encode(x.to(sae.W_dec.device))[:, state.feature].to(act.device)
            target = code * value if state.mode == "scale" else torch.full_like(code, value * state.code_per_unit)
            delta = weight.to(code.dtype) * (target - code)  # [frames]
            atom = state.atom.to(act.device, code.dtype)
            return act + (atom[:, None] * delta[None, :]).to(act.dtype)


@dataclass(frozen=True)
class Archetype:
    """A motion along ``d``: ``v d w_t`` is added to the generator ``g_t = r_{t+1} - r_t``.

    Step ``t`` goes from frame ``t`` to frame ``t+1`` and is selected with the span weight
    ``w_t`` of its start frame. Keeping ``r_0`` fixed, the trajectory whose generators are
    ``g'_t = g_t + v w_t d`` is ``r'_t = r_t + v d C_t`` with ``C_t = sum_{u<t} w_u``: an
    exclusive running sum, 0 at the first frame and constant (not returning) after the span.
    """

    name: str = "archetype"
    formula: str = "r_t <- r_t + v * d * C_t,  C_t = sum_{u<t} w_u  (so g'_t = g_t + v w_t d)"
    description: str = (
        "motion: add v*d to the generators g_t = r_{t+1} - r_t on the span; the offset "
        "accumulates and persists after it"
    )
    value_scale: str = "motion"
    chunkable: bool = False

    def apply(self, act, direction, value, weight, state=None):
        import torch

        steps = torch.zeros_like(weight)  # exclusive running sum: frame t has moved by steps 0..t-1
        steps[1:] = torch.cumsum(weight[:-1], 0)
        return act + value * direction[:, None] * steps[None, :]
