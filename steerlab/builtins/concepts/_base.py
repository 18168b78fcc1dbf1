"""The shared skeleton of the built-in concepts: a seeded draw of parameters, a render of both
signals from them, and the pair specs of a run, for the ``synthetic`` variant (sums of sinusoids)
and, where a concept implements :meth:`SyntheticConcept.instrument_sounds`, the ``instrument``
variant (General MIDI notes rendered from a SoundFont, :mod:`steerlab.builtins.concepts._rendered`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from steerlab.battery.concept import PairSpec, Rule, mono

DURATION_S, QUICK_DURATION_S, FADE_MS = 0.5, 0.3, 10.0


class SyntheticConcept:
    """Subclasses set ``name``, ``description``, ``changes``, ``controls``, ``rule`` and
    implement :meth:`draw` (seeded parameters, JSON scalars), :meth:`sounds` (the two signals
    of the sound itself, ``[samples]`` each, before margins and scaling) and :meth:`measure`;
    for the ``instrument`` variant also :meth:`instrument_sounds` (and list it in ``variants``),
    and optionally ``programs`` (the GM programs its pairs draw from)."""

    name = ""
    description = ""
    changes: tuple[str, str] = ("create", "remove")
    variants: tuple[str, ...] = ("synthetic",)
    controls: Mapping[str, str] = {}
    rule: Rule
    delegate: Callable[..., Any] | None = None
    programs: Mapping[int, str] = {}  # empty: steerlab.builtins.concepts._rendered.PROGRAMS

    def draw(self, rng: np.random.Generator, sample_rate: int) -> dict[str, Any]:
        raise NotImplementedError

    def sounds(self, spec: PairSpec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def measure(self, baseline: np.ndarray, patched: np.ndarray, spec: PairSpec) -> dict[str, Any]:
        raise NotImplementedError

    def instrument_sounds(self, spec: PairSpec, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The two signals of an ``instrument`` pair (``[n]`` each, before margins and scaling),
        rendered with GM program ``spec.param("program")``."""
        raise NotImplementedError

    def pairs(
        self, sample_rate: int, seeds: Sequence[int], margin_s: float, quick: bool, variant: str = "synthetic"
    ) -> list[PairSpec]:
        """The pair specs of ``seeds`` (see :class:`~steerlab.battery.concept.Concept`); ``variant``
        one of ``variants``. An ``instrument`` pair draws the concept's parameters exactly as the
        synthetic pair of its seed, and its GM program from the seed's own stream."""
        from steerlab import validation as check

        check.choice("variant", variant, self.variants)
        if variant == "instrument":
            from steerlab.builtins.concepts import _rendered

            _rendered.available()
        out = []
        for seed in seeds:
            params = self.draw(np.random.default_rng([seed, 1]), sample_rate)
            if variant == "instrument":
                from steerlab.builtins.concepts._rendered import PROGRAMS, VELOCITY, draw_program

                params = {**params, "program": draw_program(seed, tuple(self.programs or PROGRAMS))}
                params["velocity"] = VELOCITY
            out.append(
                PairSpec(
                    self.name,
                    variant,
                    int(seed),
                    int(sample_rate),
                    QUICK_DURATION_S if quick else DURATION_S,
                    float(margin_s),
                    FADE_MS,
                    tuple(params.items()),
                )
            )
        return out

    def render(self, spec: PairSpec) -> tuple[np.ndarray, np.ndarray]:
        from steerlab.builtins.concepts._sound import place, scale_pair

        a, b = spec.span_samples()
        without, with_ = self.unscaled(spec)
        without, with_ = scale_pair(without, with_)
        return place(without, a), place(with_, a)

    def unscaled(self, spec: PairSpec) -> tuple[np.ndarray, np.ndarray]:
        """The pair's two sounds before margins and scaling (``[samples]`` each, the span's length)."""
        a, b = spec.span_samples()
        if spec.variant == "instrument":
            return self.instrument_sounds(spec, b - a)
        return self.sounds(spec, b - a, np.random.default_rng([spec.seed, 2]))

    def scale(self, spec: PairSpec) -> float:
        """The gain :meth:`render` applies to this pair (the louder sound peaks at ``PEAK``)."""
        from steerlab.builtins.concepts._sound import PEAK

        w, x = self.unscaled(spec)
        return PEAK / max(float(np.max(np.abs(w))), float(np.max(np.abs(x))), 1e-12)

    def score(self, baseline: np.ndarray, patched: np.ndarray, spec: PairSpec) -> dict[str, Any]:
        return self.measure(mono(baseline), mono(patched), spec)

    def wrong_edits(self, spec: PairSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Shared wrong edits of the without signal: +6 dB of level, and Gaussian noise with the
        sound's envelope at the ideal edit's energy; subclasses add their own."""
        without, with_ = self.render(spec)
        rng = np.random.default_rng([spec.seed, 3])
        ideal = with_ - without
        energy = float(np.sum(ideal**2)) or float(np.sum(without**2))
        a, b = spec.span_samples()
        noise = np.zeros_like(without)
        noise[a:b] = rng.standard_normal(b - a)
        noise *= np.sqrt(energy / float(np.sum(noise**2)))
        return {"gain +6 dB": (without, without * 2.0), "noise": (without, without + noise)}
