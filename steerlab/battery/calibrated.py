"""Calibrated raise and lower: strengths in units of the concept's own size at the layer.

``add`` and ``reverse`` move an activation by ``strength x`` the layer's RMS norm, a unit that does
not scale with the concept: on ``logspec_24khz`` the smallest step (0.3) tilted twice the pair's own
tilt and raised the level 33 dB for a 6 dB pair (docs/steerability.md). The calibrated operations
take their unit from the training pairs instead, fixed before any run (pre-registered, issue 15):

- the **calibration** ``c`` of a direction ``v`` (unit ``u = v / |v|``) at a layer is the mean, over
  the training pairs and the frames of the sound's span (the add's own :func:`~steerlab.partials.sweep.edit_span`),
  of ``(r_with - r_without) . u``: how far the pairs themselves differ along ``u``
  (:func:`calibration`);
- ``add_calibrated`` at strength ``s`` adds ``s c u`` to the without-signal and ``reverse_calibrated``
  adds ``-s c u`` to the with-signal, on the add's span with its fades (:func:`patch`): strength 1 moves
  the activation along ``u`` by exactly the pairs' mean difference;
- the grid :data:`CALIBRATED_STRENGTHS` is ``0.5, 1, 2``: 1 is the edit the pairs themselves make, and
  a factor of two either side allows a layer whose decode is compressive or expansive in the concept
  (or a direction that carries only part of it) without reaching the RMS grid's overshoot;
- the difference of means, the probe's pattern and the SAE feature are calibrated by their **own**
  projection (a direction along which the pairs barely differ gets a small edit: that is what it
  measures); the random null by the **difference of means'** (``source: "diffmeans"``), so the null's
  edit is exactly as large as the difference of means' at every strength and only its direction is
  random. Its own projection would make the null's edit about ``1/sqrt(channels)`` of that (a random
  unit vector's share of the difference), an edit too small to pass anything: a null that cannot fail.

Their verdict (``removal: "reverse_calibrated"``) pairs ``add_calibrated`` towards "with" with
``reverse_calibrated`` back (:mod:`steerlab.battery.verdicts`). ``partial`` runs through
``steerlab partials`` (its delegate) and has no calibrated operations, so its rows stay partials'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: the pre-registered grid: multiples of the pairs' own mean projection difference
CALIBRATED_STRENGTHS = (0.5, 1.0, 2.0)
ADD, REVERSE = "add_calibrated", "reverse_calibrated"
#: op -> (the signal it edits, the sign of the direction)
CALIBRATED_OPS = {ADD: ("without", 1.0), REVERSE: ("with", -1.0)}
#: the suffix of a direction's calibration in a run's vectors (a ``[1]`` array beside the direction)
CALIBRATION = "/calibration"


def _span_mean(frames: Sequence[np.ndarray], u: np.ndarray, span: tuple[int, int] | None) -> float:
    """Mean over clips of the mean over ``span`` (frames ``[first, last)``; None: all) of ``r_t . u``."""
    from steerlab.partials.directions import _span_frames

    return float(np.mean([f.mean(0) @ u for f in _span_frames(frames, span)]))


def projection_difference(
    vec: np.ndarray, without: Sequence[np.ndarray], with_: Sequence[np.ndarray], span: tuple[int, int] | None
) -> float:
    """``mean (r_with - r_without) . u`` over the training clips and ``span`` (module docstring);
    ``vec``: ``[channels]`` (any norm, not zero); ``without``/``with_``: per clip ``[frames, channels]``.
    In the layer's units; negative when the pairs differ against ``vec``'s sign."""
    u = np.asarray(vec, dtype=np.float64) / float(np.linalg.norm(vec))
    return _span_mean(with_, u, span) - _span_mean(without, u, span)


def calibration(
    method: str,
    vec: np.ndarray,
    without: Sequence[np.ndarray],
    with_: Sequence[np.ndarray],
    span: tuple[int, int] | None,
    layer_rms_norm: float,
) -> dict[str, Any]:
    """The calibration of one learned direction (module docstring): ``value`` (``c``, the layer's
    units), ``source`` (``"own"``, or ``"diffmeans"`` for the ``random`` null), ``own_value`` (the
    direction's own projection difference, recorded for the null too), and ``rms_relative``
    (``c`` over the training frames' RMS norm: the RMS-relative strength that calibrated strength 1
    equals)."""
    from steerlab.partials.directions import diff_of_means

    own = projection_difference(vec, without, with_, span)
    value, source = own, "own"
    if method == "random":
        dm = diff_of_means(without, with_)
        value = projection_difference(dm, without, with_, span) if np.linalg.norm(dm) > 0 else 0.0
        source = "diffmeans"
    return {
        "value": value,
        "source": source,
        "own_value": own,
        "rms_relative": value / layer_rms_norm if layer_rms_norm > 0 else None,
        "span_frames": None if span is None else list(span),
        "strengths": list(CALIBRATED_STRENGTHS),
    }


def patch(model: Any, it: Any, vectors: dict[str, np.ndarray]) -> Any:
    """The engine's patch of a calibrated item ``it`` (a :class:`~steerlab.battery.plan.BatteryItem`
    with ``op`` in :data:`CALIBRATED_OPS`): ``add`` of ``sign x`` the unit direction at the
    absolute value ``strength x c`` on the add's span (:func:`steerlab.partials.sweep.edit_span`),
    ``c`` read from ``vectors[direction_id + CALIBRATION]``. The rows record ``strength_mode``
    ``"absolute"`` and the ``value`` the edit used."""
    from steerlab import engine
    from steerlab.interventions import Direction, Strength
    from steerlab.loading import layers
    from steerlab.partials.sweep import edit_span
    from steerlab.spec import InterventionSpec

    _, sign = CALIBRATED_OPS[it.op]
    c = float(np.asarray(vectors[it.direction_id + CALIBRATION]).reshape(-1)[0])
    spec = InterventionSpec(
        layer=it.layer,
        direction=Direction(sign * np.asarray(vectors[it.direction_id]), {"id": it.direction_id, "sign": sign}),
        intervention="add",
        strength=Strength(it.strength * c, "absolute"),
        span=edit_span("add", it.pair, layers(model).get(it.layer)),
        path=it.path,
    )
    return engine.Patch(engine.resolve(model, spec))
