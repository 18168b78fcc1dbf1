"""The shared skeleton of the built-in concepts: a seeded draw of parameters, a render of both
signals from them, and the pair specs of a run, for the ``synthetic`` variant (sums of sinusoids)
and, where a concept implements :meth:`SyntheticConcept.instrument_sounds`, the ``instrument``
variant (General MIDI notes rendered from a SoundFont, :mod:`steerlab.builtins.concepts._rendered`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from steerlab.battery.concept import NON_FINITE, PairSpec, Rule, mono

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

    def features(self, xs: np.ndarray, specs: Sequence[PairSpec]) -> list[dict[str, Any]]:
        """What :meth:`compare` reads of each signal, one dict per row of ``xs`` ``[signals,
        samples]`` (mono float64, one length; ``specs``: the pair of each row). Subclasses
        transform all rows in one call where the library allows; each row's values are those
        of the same computation on that row alone, bit for bit (tests check)."""
        raise NotImplementedError

    def compare(self, base: dict[str, Any], patched: dict[str, Any], spec: PairSpec) -> dict[str, Any]:
        """The scores of :meth:`measure` from the baseline's and the patched signal's
        :meth:`features`."""
        raise NotImplementedError

    def measure(self, baseline: np.ndarray, patched: np.ndarray, spec: PairSpec) -> dict[str, Any]:
        """The scores of ``patched`` against ``baseline`` (mono ``[samples]`` each)."""
        base, edited = self.features_of([baseline, patched], [spec, spec])
        return self.compare(base, edited, spec)

    def features_of(self, signals: Sequence[np.ndarray], specs: Sequence[PairSpec]) -> list[dict[str, Any]]:
        """:meth:`features` of each mono signal, the signals of one length in one call."""
        out: list[dict[str, Any]] = [{} for _ in signals]
        by_length: dict[int, list[int]] = {}
        for i, x in enumerate(signals):
            by_length.setdefault(len(x), []).append(i)
        for rows in by_length.values():
            xs = np.stack([np.asarray(signals[i], dtype=np.float64) for i in rows])
            for i, f in zip(rows, self.features(xs, [specs[i] for i in rows])):
                out[i] = f
        return out

    def score_many(
        self, jobs: Sequence[tuple[Hashable, np.ndarray, np.ndarray, PairSpec]], memo: dict[Hashable, Any]
    ) -> list[dict[str, Any]]:
        """:meth:`score` of each ``(baseline key, baseline, patched, spec)``, the same values:
        the patched signals' features in one batch, a baseline's computed once per key (and
        length) and kept in ``memo``, the caller's (one sweep's) cache; :data:`NON_FINITE` for a
        non-finite patched signal (the others' values do not depend on which rows share a batch)."""
        bad = {i for i, (_, _, p, _) in enumerate(jobs) if not np.isfinite(p).all()}
        if bad:
            scored = iter(self.score_many([j for i, j in enumerate(jobs) if i not in bad], memo))
            return [dict(NON_FINITE) if i in bad else next(scored) for i in range(len(jobs))]
        if type(self).features is SyntheticConcept.features:  # a subclass with its own measure only
            return [self.score(b, p, spec) for _, b, p, spec in jobs]
        mono_jobs = [(key, mono(b), mono(p), spec) for key, b, p, spec in jobs]
        todo: dict[Hashable, tuple[np.ndarray, PairSpec]] = {}
        for key, b, _, spec in mono_jobs:
            k = (key, len(b), spec)
            if k not in memo and k not in todo:
                todo[k] = (b, spec)
        new = self.features_of([b for b, _ in todo.values()], [s for _, s in todo.values()])
        memo.update(zip(todo, new))
        edited = self.features_of([p for _, _, p, _ in mono_jobs], [s for *_, s in mono_jobs])
        return [self.compare(memo[(key, len(b), spec)], f, spec) for (key, b, _, spec), f in zip(mono_jobs, edited)]

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
        """:meth:`measure` of the mono signals; :data:`NON_FINITE` for a non-finite ``patched``."""
        if not np.isfinite(patched).all():
            return dict(NON_FINITE)
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
