"""What a concept is: the contract a ``steerlab_register_concepts`` plugin fills.

A concept (a musical property: a partial, a note, a chord's quality, brightness, attack
sharpness, loudness) supplies everything ``steerlab steerability`` needs to ask whether a
model holds it as a steerable variable, in the shape the partials test gave the question
(SCIENCE.md): matched pairs (:class:`PairSpec`, rendered by :meth:`Concept.render`: the same
sound without and with the concept's change, one seed), the ideal edit in the waveform (the
pair itself: ``with`` is the ideal edit of ``without``, and the reverse), a scorer
(:meth:`Concept.score`) with one *target* measure (signed: positive towards "with") and one
*damage* measure (what the edit should not have changed), a verdict :class:`Rule` whose
thresholds are fixed up front with their rationale, the names of its two directions of
change, the waveform edits its rule must reject (:meth:`Concept.wrong_edits`) and which
positive-control models can vouch for it (``controls``: model name -> why; empty: none can).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from steerlab import validation as check
from steerlab.artifacts import config_hash
from steerlab.registry import Registry

VARIANTS = ("synthetic", "instrument")


#: the score of a patched decode with a NaN or infinite sample (an edit that overflowed the decoder,
#: e.g. a concentrated direction added to a log-magnitude layer, whose exp then overflows): no
#: measure of it exists (librosa refuses it), and the rule fails it (Rule.passes: target and damage
#: must be finite); the battery gives it to every concept's such rows (runner._scores), recorded as
#: such in the row's scores
NON_FINITE: dict[str, Any] = {"target": None, "damage": None, "non_finite_decode": True}


@dataclass(frozen=True)
class PairSpec:
    """The recipe of one matched pair: a concept, its stimulus variant, a seed, the sample rate
    (Hz), the sound's duration and the silent margins around it (s), the fades (ms) and the
    concept's own parameters (``params``: sorted ``(name, value)`` pairs of JSON scalars).
    Rendering is a pure function of the spec (:meth:`Concept.render`)."""

    concept: str
    variant: str
    seed: int
    sample_rate: int
    duration_s: float
    margin_s: float
    fade_ms: float
    params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        check.choice("variant", self.variant, VARIANTS)
        check.integer("sample_rate", self.sample_rate, low=1)
        check.number("duration_s", self.duration_s, low=0, low_open=True, unit="s")
        check.number("margin_s", self.margin_s, low=0, unit="s")
        object.__setattr__(self, "params", tuple(sorted((str(k), v) for k, v in dict(self.params).items())))

    def param(self, name: str) -> Any:
        return dict(self.params)[name]

    @property
    def n_samples(self) -> int:
        return int(round((self.duration_s + 2 * self.margin_s) * self.sample_rate))

    def span_samples(self) -> tuple[int, int]:
        """The sound's samples ``[first, last)`` inside the clip (the margins excluded)."""
        a = int(round(self.margin_s * self.sample_rate))
        return a, a + int(round(self.duration_s * self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["params"] = dict(self.params)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PairSpec:
        return cls(**{**d, "params": tuple(dict(d.get("params", {})).items())})

    def key(self) -> str:
        return config_hash(json.loads(json.dumps(self.to_dict())))


@dataclass(frozen=True)
class Rule:
    """A concept's verdict rule, fixed before any model is measured.

    An edit *towards "with"* (add) passes when ``target >= min_target`` and
    ``damage <= max_damage``; an edit *towards "without"* (removal) when ``-target >=
    min_target`` and ``damage <= max_damage``. A unit is steerable when one (add strength,
    removal setting) passes on at least ``min_share`` of the held-out pairs (as partials).
    ``target``/``damage``: what the measures are, with units; ``rationale``: why these numbers;
    ``requires``: further ``(score name, minimum)`` conditions every passing edit meets (the
    partial's concentration)."""

    min_target: float
    max_damage: float
    min_share: float
    target: str
    damage: str
    rationale: str
    requires: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        check.number("min_target", self.min_target, low=0, low_open=True)
        check.number("max_damage", self.max_damage, low=0, low_open=True)
        check.fraction("min_share", self.min_share)
        for name, low in self.requires:
            check.number(f"requires[{name}]", low)

    def passes(self, score: Mapping[str, Any], towards: str) -> bool:
        """Whether one scored edit passes, ``towards`` ``"with"`` (add) or ``"without"`` (removal).
        A null measure (nothing to measure) passes nothing."""
        t, d = score.get("target"), score.get("damage")
        if t is None or d is None or not (np.isfinite(t) and np.isfinite(d)):
            return False
        sign = 1.0 if towards == "with" else -1.0
        extra = all(score.get(k) is not None and score[k] >= low for k, low in self.requires)
        return bool(sign * t >= self.min_target and d <= self.max_damage and extra)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@runtime_checkable
class Concept(Protocol):
    """What a concept plugin registers (``registry.add(concept)``); see the module docstring.

    ``changes``: the names of the two directions of change, towards "with" first (``("create",
    "remove")``, ``("raise", "lower")``). ``variants``: the stimulus variants it renders.
    ``controls``: positive-control model -> why it can vouch for this concept (empty: none can,
    and every verdict is "not validated"). ``delegate``: None, or a callable running the
    concept's own established pipeline instead of the battery's (``partial``: ``steerlab
    partials``), called as ``delegate(model, out_dir, quick, bar=, notify=, config_file=, dictionaries=)``
    (and ``device=``; ``executor=`` too, the run's :class:`steerlab.executors.Executor`, when
    its signature takes that argument or ``**kwargs``, else it runs in the calling process) and returning ``(outcome, summary)`` as :func:`steerlab.partials.run` does. Optional:
    ``no_control_reason`` (why no control can vouch, recorded when ``controls`` is empty).
    """

    name: str
    description: str
    changes: tuple[str, str]
    variants: tuple[str, ...]
    controls: Mapping[str, str]
    rule: Rule
    delegate: Callable[..., Any] | None

    def pairs(self, sample_rate: int, seeds: Sequence[int], margin_s: float, quick: bool) -> list[PairSpec]:
        """The specs of the pairs for ``seeds`` at ``sample_rate`` with ``margin_s`` of silence.
        A concept whose ``variants`` hold more than ``"synthetic"`` also takes ``variant=`` (a
        keyword, one of its variants; the battery passes it only for those)."""
        ...

    def render(self, spec: PairSpec) -> tuple[np.ndarray, np.ndarray]:
        """``(without, with)``: float64 ``[samples]`` each, same length, same seed."""
        ...

    def score(self, baseline: np.ndarray, patched: np.ndarray, spec: PairSpec) -> dict[str, Any]:
        """Scores of ``patched`` against ``baseline`` (``[samples]`` or ``[channels, samples]``):
        ``target`` (signed, positive towards "with"), ``damage`` (>= 0), and the concept's
        other measures (JSON scalars)."""
        ...

    def wrong_edits(self, spec: PairSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Edits of the waveform the rule must reject: name -> ``(before, after)``."""
        ...


class ConceptRegistry(Registry["Concept"]):
    """The concepts ``steerlab steerability`` can test, by name."""

    def __init__(self) -> None:
        super().__init__("concept")

    def add(self, item: Concept, name: str | None = None) -> Concept:
        missing = [m for m in ("changes", "controls", "rule", "pairs", "render", "score") if not hasattr(item, m)]
        if missing:
            from steerlab.errors import SteerlabError

            raise SteerlabError(
                f"concept {getattr(item, 'name', item)!r} registered by {self.current_plugin} lacks "
                f"{', '.join(missing)} (see steerlab.battery.concept.Concept)"
            )
        return super().add(item, name)


NO_CONTROL_REASON = "no control model can vouch for this concept"


def no_control_reason(concept: Concept) -> str | None:
    """Why no control can vouch for ``concept`` (its ``no_control_reason``, else a plain
    sentence), or None when it has controls: every artifact states the absence the same way
    (``controls`` an empty mapping, this reason beside it)."""
    if concept.controls:
        return None
    return str(getattr(concept, "no_control_reason", NO_CONTROL_REASON))


def mono(x: np.ndarray) -> np.ndarray:
    """``[samples]`` float64 of ``[samples]`` or ``[channels, samples]`` (channel mean)."""
    x = np.asarray(x, dtype=np.float64)
    return x if x.ndim == 1 else x.mean(axis=0)
