"""The shared skeleton of the synthetic built-in concepts: a seeded draw of parameters, a
render of both signals from them, and the pair specs of a run."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from steerlab.battery.concept import PairSpec, Rule, mono

DURATION_S, QUICK_DURATION_S, FADE_MS = 0.5, 0.3, 10.0


class SyntheticConcept:
    """Subclasses set ``name``, ``description``, ``changes``, ``controls``, ``rule`` and
    implement :meth:`draw` (seeded parameters, JSON scalars), :meth:`sounds` (the two signals
    of the sound itself, ``[samples]`` each, before margins and scaling) and :meth:`measure`."""

    name = ""
    description = ""
    changes: tuple[str, str] = ("create", "remove")
    variants: tuple[str, ...] = ("synthetic",)
    controls: Mapping[str, str] = {}
    rule: Rule
    delegate: Callable[..., Any] | None = None

    def draw(self, rng: np.random.Generator, sample_rate: int) -> dict[str, Any]:
        raise NotImplementedError

    def sounds(self, spec: PairSpec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def measure(self, baseline: np.ndarray, patched: np.ndarray, spec: PairSpec) -> dict[str, Any]:
        raise NotImplementedError

    def pairs(self, sample_rate: int, seeds: Sequence[int], margin_s: float, quick: bool) -> list[PairSpec]:
        out = []
        for seed in seeds:
            params = self.draw(np.random.default_rng([seed, 1]), sample_rate)
            out.append(
                PairSpec(
                    self.name,
                    "synthetic",
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
        without, with_ = self.sounds(spec, b - a, np.random.default_rng([spec.seed, 2]))
        without, with_ = scale_pair(without, with_)
        return place(without, a), place(with_, a)

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
