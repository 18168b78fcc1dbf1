"""Which partials can survive to each layer, predicted from the architecture alone.

Step 7 of the protocol in SCIENCE.md: before measuring anything, read strides and
kernels (a list of :class:`~steerlab.model.LayerInfo` in forward order, all at the
model's input ``sample_rate`` ``fs``) and predict, per layer, target frequency and
mixture density, whether the target partial can exist *as an oscillation of its
own* at that layer. The batch report puts these predictions beside the measured
verdicts and reports their agreement with :func:`rank_agreement`. numpy only; no
model is run.

Definitions (all frequencies in Hz):

- **Frame rate** ``r = fs / hop`` (``LayerInfo.frame_rate``; ``hop`` is the cumulative
  stride) and **Nyquist** ``r / 2`` (``LayerInfo.nyquist_hz``). ``path_nyquist_hz`` is
  the lowest Nyquist of this layer and every layer before it: a decoder layer
  runs at a high rate again, but a partial above the bottleneck's Nyquist reached
  it only as a code the decoder re-synthesises from, never as an oscillation.
- **Alias** of ``f`` at rate ``r``: ``m = f mod r``, folded into ``[0, r/2]`` as
  ``m if m <= r/2 else r - m`` (440 Hz at 75 Hz: 65, reflected to 10). The
  prediction is about the partial surviving *as an oscillation at the layer's
  rate*. Above Nyquist a layer's channels can still carry information about ``f``
  (many channels, the nonlinear envelope, energy pooled over a band), so "does
  not survive" means "not as a separable oscillation", not "no information".
- **Main-lobe width** ``W = fs / N`` with ``N`` the layer's receptive field in
  input samples, taken as the length of the cumulative effective filter: the
  distance from the peak to the first null of a length-``N`` rectangular window,
  the "on the order of fs / N" of SCIENCE.md (EnCodec's first conv: 7 taps at
  24 kHz, 3429 Hz). Two partials ``W`` apart put each one's peak on the other's
  null (the Rayleigh criterion), so ``W`` is also the least separation resolved.
  After an LSTM (``recurrent``) the true filter is unbounded to the left: the
  conv-only receptive field is a lower bound on ``N``, so ``W`` is an upper bound
  and the prediction is conservative there (flagged ``main_lobe_upper_bound``).
  For decoder layers ``N`` counts the whole path from the input, encoder included.
- **Mixture partials** for a density ``d`` follow :mod:`steerlab.stimuli` (same
  families and defaults). ``harmonic`` and ``chord`` mixtures are deterministic,
  so their partials are computed exactly by :func:`steerlab.stimuli.partials` (and
  combinations the stimulus generator would skip are marked ``infeasible``);
  ``spacing_hz`` is the distance from the target to its nearest mixture partial
  (at most ``f0 / 2`` for a dense harmonic series; ``f0`` is the grid spacing).
  ``inharmonic`` partials are random: ``d`` log-uniform frequencies in ``[lo, hi]``
  have density ``d / (f ln(hi/lo))`` per Hz near ``f``, so the expected gap to the
  next partial on either side of the target is ``spacing = f ln(hi/lo) / d`` (for a
  target outside the band: the distance to the nearer edge ``e`` plus
  ``e ln(hi/lo) / d``), never less than ``min_separation_hz`` (the generator keeps
  every partial that far from the target); the neighbours are placed at
  ``f - spacing`` and ``f + spacing`` (those strictly inside ``(0, fs/2)``).
  ``tone`` has no mixture (density 0, infinite spacing; infinities are ``None``
  in :meth:`Prediction.to_json` and the fields).
- **Per (layer, target, density)**: ``below_nyquist`` = ``f < r/2``;
  ``resolvable`` = ``W <= spacing``; ``aliased_to`` = the alias of ``f``;
  ``alias_separation_hz`` = the least distance between ``aliased_to`` and the alias
  of a mixture partial (infinite without a mixture); ``collides`` =
  ``alias_separation < W``. Folding is 1-Lipschitz, so ``alias_separation <=
  spacing`` whenever a neighbour exists: below Nyquist with the whole mixture
  below it, ``collides`` is exactly ``not resolvable``; ``collides`` adds the
  partials folded onto the target from above.
- **Score** ``= c * min(1, separation / W)`` with ``separation = min(spacing,
  alias_separation)`` and ``c = 1`` below Nyquist, ``ALIASED_CREDIT`` (0.5) above:
  in ``[0, 1]``, nondecreasing in separation, nonincreasing in ``W``, lower when
  aliased. ``survives`` = ``below_nyquist and resolvable and not collides``, i.e.
  ``score == 1``. ``path_below_nyquist`` says whether ``f`` stayed below every
  Nyquist up to the layer, and ``survives_path`` = ``survives and
  path_below_nyquist``: it differs from ``survives`` only after a bottleneck
  (decoder layers), where the layer could hold the partial but it can only have
  been re-synthesised, not carried.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from steerlab import validation as check
from steerlab.errors import ArchError
from steerlab.model import LayerInfo
from steerlab.stimuli import FAMILIES, Infeasible, StimulusSpec, partials

# Partial credit for a target above the layer's Nyquist: it exists only folded.
ALIASED_CREDIT = 0.5
# The stimulus CLI's first fundamental; harmonic and chord mixtures need one.
DEFAULT_F0 = 110.0
_SPEC_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(StimulusSpec)}


def alias_hz(f: float, rate: float) -> float:
    """``f`` folded into ``[0, rate / 2]``: where a partial lands after sampling at ``rate``
    (a real sinusoid at ``-f`` is the one at ``f``)."""
    m = abs(f) % rate
    return m if m <= rate / 2 else rate - m


def main_lobe_hz(layer: LayerInfo) -> float:
    """``fs / N``: main-lobe width of a filter as long as the layer's receptive field."""
    return layer.sample_rate / max(layer.receptive_field, 1)


@dataclass(frozen=True)
class Mixture:
    """The context a target partial sits in; defaults match :class:`steerlab.stimuli.StimulusSpec`."""

    family: str = "inharmonic"
    f0: float | None = None
    chord: str = "major"
    band_low_hz: float = _SPEC_DEFAULTS["band_low_hz"]
    band_high_hz: float = _SPEC_DEFAULTS["band_high_hz"]
    min_separation_hz: float = _SPEC_DEFAULTS["min_separation_hz"]

    def __post_init__(self) -> None:
        check.choice("family", self.family, FAMILIES, what="mixture family", error=ArchError)
        if self.family in ("harmonic", "chord"):
            if self.f0 is None:
                object.__setattr__(self, "f0", DEFAULT_F0)
        elif self.f0 is not None:
            raise ArchError(f"f0 is only used by harmonic and chord mixtures, not {self.family!r}", parameter="f0")
        for name in ("band_low_hz", "band_high_hz", "min_separation_hz", *(("f0",) if self.f0 is not None else ())):
            check.positive(name, getattr(self, name), error=ArchError)
        if self.band_low_hz >= self.band_high_hz:
            raise ArchError(
                f"band_low_hz {self.band_low_hz:g} must be below band_high_hz {self.band_high_hz:g}",
                parameter=("band_low_hz", "band_high_hz"),
            )

    def spec(self, target_hz: float, density: int, sample_rate: int) -> StimulusSpec:
        """The stimulus spec this mixture stands for (validates it like the generator does)."""
        return StimulusSpec(
            self.family,
            target_hz,
            density,
            self.f0,
            self.chord if self.family == "chord" else None,
            sample_rate=sample_rate,
            min_separation_hz=self.min_separation_hz,
            band_low_hz=self.band_low_hz,
            band_high_hz=self.band_high_hz,
        )

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.family != "chord":
            d["chord"] = None
        return d


@dataclass(frozen=True)
class Context:
    """The mixture around one target: the (exact or expected) neighbours and the spacing."""

    partials_hz: tuple[float, ...]
    spacing_hz: float
    exact: bool
    infeasible: str | None = None


def context(target_hz: float, density: int, mixture: Mixture, sample_rate: int) -> Context:
    """Mixture partials near ``target_hz`` at ``density`` (see the module docstring)."""
    spec = mixture.spec(target_hz, density, sample_rate)
    if mixture.family == "tone":
        return Context((), math.inf, True)
    if mixture.family == "inharmonic":
        lo, hi = mixture.band_low_hz, mixture.band_high_hz
        per = math.log(hi / lo) / density
        edge = min(max(target_hz, lo), hi)
        spacing = max(abs(target_hz - edge) + edge * per, mixture.min_separation_hz)
        near = tuple(n for n in (target_hz - spacing, target_hz + spacing) if 0 < n < sample_rate / 2)
        return Context(near, spacing, False)
    try:
        freqs = partials(spec).freqs_hz
    except Infeasible as exc:
        return Context((), math.nan, True, exc.reason)
    return Context(tuple(freqs), min(abs(f - target_hz) for f in freqs), True)


@dataclass(frozen=True)
class Prediction:
    """The prediction for one target partial at one density and one layer."""

    target_hz: float
    density: int
    aliased_to: float
    below_nyquist: bool
    path_below_nyquist: bool
    spacing_hz: float | None
    alias_separation_hz: float | None
    resolvable: bool | None
    collides: bool | None
    score: float | None
    survives: bool | None
    survives_path: bool | None
    exact_context: bool
    infeasible: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LayerPrediction:
    """A layer's rates and main lobe, and its predictions (targets outer, densities inner)."""

    layer: LayerInfo
    main_lobe_hz: float
    path_nyquist_hz: float
    predictions: tuple[Prediction, ...]

    @property
    def main_lobe_upper_bound(self) -> bool:
        return self.layer.recurrent

    def to_json(self) -> dict[str, Any]:
        return {
            **self.layer.to_json(),
            "main_lobe_hz": self.main_lobe_hz,
            "main_lobe_upper_bound": self.main_lobe_upper_bound,
            "path_nyquist_hz": self.path_nyquist_hz,
            "predictions": [p.to_json() for p in self.predictions],
        }


@dataclass(frozen=True)
class ArchReport:
    """Predictions for every layer; :meth:`get` looks one up for the batch report."""

    sample_rate: int
    mixture: Mixture
    targets_hz: tuple[float, ...]
    densities: tuple[int, ...]
    layers: tuple[LayerPrediction, ...]
    model: str | None = None
    _index: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for lp in self.layers:
            for p in lp.predictions:
                self._index[(lp.layer.name, p.target_hz, p.density)] = p

    def get(self, layer: str, target_hz: float, density: int) -> Prediction:
        try:
            return self._index[(layer, float(target_hz), int(density))]
        except KeyError:
            raise ArchError(f"no prediction for layer {layer!r}, target {target_hz:g} Hz, density {density}") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "sample_rate": self.sample_rate,
            "mixture": self.mixture.to_json(),
            "targets_hz": list(self.targets_hz),
            "densities": list(self.densities),
            "aliased_credit": ALIASED_CREDIT,
            "layers": [lp.to_json() for lp in self.layers],
        }


def _predict_one(layer: LayerInfo, lobe: float, path_nyq: float, f: float, d: int, ctx: Context) -> Prediction:
    rate = layer.frame_rate
    a = alias_hz(f, rate)
    below, path_below = f < layer.nyquist_hz, f < path_nyq
    if ctx.infeasible:
        none = (None,) * 7
        return Prediction(f, d, a, below, path_below, *none, ctx.exact, ctx.infeasible)
    alias_sep = min((abs(alias_hz(p, rate) - a) for p in ctx.partials_hz), default=math.inf)
    resolvable, collides = lobe <= ctx.spacing_hz, alias_sep < lobe
    separation = min(ctx.spacing_hz, alias_sep)
    score = (1.0 if below else ALIASED_CREDIT) * min(1.0, separation / lobe)
    survives = below and resolvable and not collides
    return Prediction(
        f,
        d,
        a,
        below,
        path_below,
        _finite_or_none(ctx.spacing_hz),
        _finite_or_none(alias_sep),
        resolvable,
        collides,
        score,
        survives,
        survives and path_below,
        ctx.exact,
    )


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def predict(
    layers: Sequence[LayerInfo],
    targets_hz: Iterable[float],
    densities: Iterable[int] = (1, 2, 4, 8, 16),
    mixture: Mixture = Mixture(),
    model: str | None = None,
) -> ArchReport:
    """Predict, for ``layers`` in forward order, which targets survive at which densities.

    All layers must share one input ``sample_rate``; targets must lie in
    ``(0, sample_rate / 2)``. For ``tone`` the densities are ``(0,)``.
    """
    layers = list(layers)
    if not layers:
        raise ArchError("no layers to predict for", parameter="layers")
    rates = {layer.sample_rate for layer in layers}
    if len(rates) != 1:
        raise ArchError(f"layers disagree on the input sample rate: {sorted(rates)}", parameter="layers")
    sr = rates.pop()
    targets = tuple(float(f) for f in targets_hz)
    if not targets:
        raise ArchError("give at least one target frequency", parameter="targets_hz")
    for f in targets:
        if not (math.isfinite(f) and 0 < f < sr / 2):
            raise ArchError(
                f"target {f:g} Hz is outside (0, {sr / 2:g}) Hz for sample rate {sr}", parameter="targets_hz"
            )
    dens = (0,) if mixture.family == "tone" else tuple(int(d) for d in densities)
    if mixture.family != "tone" and (not dens or any(d < 1 for d in dens)):
        raise ArchError(
            f"densities must be integers >= 1 for {mixture.family!r} mixtures, got {list(dens)}", parameter="densities"
        )
    contexts = {(f, d): context(f, d, mixture, sr) for f in targets for d in dens}
    out, path_nyq = [], math.inf
    for layer in layers:
        lobe, path_nyq = main_lobe_hz(layer), min(path_nyq, layer.nyquist_hz)
        preds = tuple(_predict_one(layer, lobe, path_nyq, f, d, contexts[f, d]) for f in targets for d in dens)
        out.append(LayerPrediction(layer, lobe, path_nyq, preds))
    return ArchReport(sr, mixture, targets, dens, tuple(out), model)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse = np.unique(x, return_inverse=True)
    return (np.bincount(inverse, weights=ranks) / np.bincount(inverse))[inverse]


def rank_agreement(predicted: Sequence[float | None], measured: Sequence[float | None]) -> float | None:
    """Spearman rank correlation of predictions and measured verdicts (booleans count as 0/1).

    Pairs where either value is None or NaN are dropped; returns None when the
    correlation is undefined (fewer than two pairs left, or either side constant).
    """
    if len(predicted) != len(measured):
        raise ArchError(f"rank_agreement needs equal lengths, got {len(predicted)} and {len(measured)}")
    p = np.array([np.nan if v is None else float(v) for v in predicted], dtype=float)
    m = np.array([np.nan if v is None else float(v) for v in measured], dtype=float)
    keep = np.isfinite(p) & np.isfinite(m)
    p, m = p[keep], m[keep]
    if len(p) < 2:
        return None
    rp, rm = _average_ranks(p), _average_ranks(m)
    rp, rm = rp - rp.mean(), rm - rm.mean()
    denom = math.sqrt(float(rp @ rp) * float(rm @ rm))
    if denom == 0:
        return None
    return float(np.clip(float(rp @ rm) / denom, -1.0, 1.0))
