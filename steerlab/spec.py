"""What to patch: :class:`InterventionSpec`, the checks of its codebook count, and the
record fields it contributes to a run's ``scores.json``.

A spec is plain data, checked on construction; resolving it against a model (its layer,
its intervention type, its prepared state) is :func:`steerlab.engine.resolve`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from steerlab.errors import DirectionError, InterventionError, UnknownNameError
from steerlab.interventions import Direction, Prepared, Span, Strength
from steerlab.model import AudioModel, LayerInfo


@dataclass(frozen=True, kw_only=True)
class InterventionSpec:
    """What to patch: a layer, a direction, an intervention type, a strength, a span and
    the type's own options. Keyword arguments only::

        InterventionSpec(layer="first_conv", direction=channel_direction(3, info), intervention="add",
                         strength=Strength(0.5), span=Span(0.1, 0.4))

    ``direction`` may be None (the default) for types that do not need one (``patch``,
    ``mean-ablate``, ``feature-clamp``). ``options`` are type-specific (``steerlab
    interventions`` lists each type's names), e.g. ``{"source": "voice.wav"}`` for ``patch``
    or ``{"dictionary": "dicts/feat", "feature": 7}`` for ``feature-clamp``. ``path``: the
    decode path (None: the model's default); ``n_q``: codebooks to decode with (quantized
    path only). Raises :class:`InterventionError` / :class:`DirectionError` for values of the
    wrong type or range, and :class:`~steerlab.errors.UnknownNameError` (``parameter
    "intervention"``) for an intervention name no plugin registered (checked here, so a typo
    fails at construction, not at ``intervene``).
    """

    layer: str
    direction: Direction | None = None
    intervention: str = "add"
    strength: Strength = Strength(1.0, "relative")
    span: Span = Span()
    path: str | None = None
    n_q: int | None = None
    normalize_direction: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str) or not self.layer:
            raise InterventionError(f"layer must be a layer name, got {self.layer!r}", parameter="layer")
        if self.direction is not None and not isinstance(self.direction, Direction):
            raise DirectionError(
                f"direction must be a steerlab Direction or None, got {type(self.direction).__name__}",
                parameter="direction",
            )
        if not isinstance(self.intervention, str) or not self.intervention:
            raise InterventionError(
                f"intervention must be a registered type's name, got {self.intervention!r}", parameter="intervention"
            )
        from steerlab import plugins

        registered = plugins.interventions()
        if self.intervention not in registered:
            raise UnknownNameError("intervention", self.intervention, registered.names(), parameter="intervention")
        if not isinstance(self.strength, Strength):
            raise InterventionError(
                f"strength must be a steerlab Strength, got {type(self.strength).__name__}", parameter="strength"
            )
        if not isinstance(self.span, Span):
            raise InterventionError(f"span must be a steerlab Span, got {type(self.span).__name__}", parameter="span")
        if self.n_q is not None and (isinstance(self.n_q, bool) or not isinstance(self.n_q, int) or self.n_q < 1):
            raise InterventionError(f"n_q must be a whole number >= 1, got {self.n_q!r}", parameter="n_q")
        if not isinstance(self.options, Mapping) or not all(isinstance(k, str) for k in self.options):
            raise InterventionError("options must be a mapping with string keys", parameter="options")
        # a read-only copy: a spec is shared by every item and chunk of a run
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def to_json(self, layer: LayerInfo, prepared: Prepared | None = None) -> dict[str, Any]:
        """The spec's fields of a run's record, with ``layer``'s description and what
        ``prepared`` computed."""
        from steerlab.interventions import json_safe

        return {
            "layer": layer.name,
            "layer_info": layer.to_json(),
            "intervention": self.intervention,
            "alpha": self.strength.alpha,
            "strength_mode": self.strength.mode,
            "value_kind": prepared.value_scale if prepared is not None else None,
            "start_s": self.span.start_s,
            "end_s": self.span.end_s,
            "fade_in_frames": self.span.fade_in,
            "fade_out_frames": self.span.fade_out,
            "direction": None
            if self.direction is None
            else {**(self.direction.provenance or {}), "norm": self.direction.norm},
            "normalize_direction": self.normalize_direction,
            "options": json_safe(dict(self.options)),
            **with_reason(
                "prepared",
                prepared.summary if prepared is not None else None,
                "not prepared yet (api.prepare was not called)"
                if prepared is None
                else f"intervention {self.intervention!r} has no prepare step: nothing computed before the run",
            ),
            **(
                {}
                if self.span.end_s is not None
                else {"end_s_reason": "not given: the span runs to the end of the input"}
            ),
        }


def with_reason(key: str, value: Any, reason: str) -> dict[str, Any]:
    """``{key: value}``, plus ``{key}_reason`` when value is None: no null without a reason in a record."""
    return {key: value} if value is not None else {key: None, f"{key}_reason": reason}


def codebooks(model: AudioModel) -> int | None:
    """How many codebooks ``model``'s quantizer holds (``model.n_q``); None for a model without one."""
    n = getattr(model, "n_q", None)
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def check_n_q(model: AudioModel, path: str, n_q: int | None) -> None:
    """Refuse an ``n_q`` (codebooks to decode with) that ``model`` on ``path`` cannot use: one-line
    InterventionError when the model has no codebooks, when ``path`` bypasses the quantizer of a
    model that has a ``quantized`` path, or when ``n_q`` exceeds the model's codebooks."""
    if n_q is None:
        return
    total = codebooks(model)
    if total is None:
        raise InterventionError(
            f"n_q does not apply to {model.name}: it has no codebooks (no quantizer); drop n_q", parameter="n_q"
        )
    if "quantized" in model.paths and path != "quantized":
        raise InterventionError(
            f"n_q {n_q} applies to the quantized path only, and the {path} path bypasses the "
            "quantizer; decode on the quantized path or drop n_q",
            parameter="n_q",
        )
    if n_q > total:
        raise InterventionError(
            f"n_q {n_q} is out of range: {model.name} has {total} codebooks (1..{total})", parameter="n_q"
        )


def n_q_record(model: AudioModel, path: str, n_q: int | None) -> dict[str, Any]:
    """``{"n_q": codebooks used}`` for a run's record, with ``n_q_reason`` when none are used."""
    total = codebooks(model)
    if "quantized" in model.paths and path != "quantized":
        return with_reason("n_q", None, f"the {path} path bypasses the quantizer: no codebooks are used")
    if total is None:
        return with_reason("n_q", None, f"{model.name} has no codebooks (no quantizer)")
    return {"n_q": total if n_q is None else n_q}
