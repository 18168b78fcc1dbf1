"""Interventions: what a patch does to a layer's activations.

The core owns the contract and the shared pieces (time spans as frame weights,
directions, strengths); every intervention type is a plugin. An
:class:`InterventionType` maps one item's activation ``[channels, frames]`` to a
patched one, given a unit direction ``d [channels]`` (or None for types that do
not need one), a value (the strength), per-frame weights ``w [frames]`` in [0, 1]
(1 inside the span, ramps for fades, 0 outside) and the state its optional
``prepare`` step computed once per run. ``apply`` is pure torch arithmetic, so
every formula can be tested against a plain computation; whatever needs the model
(a source audio's activations, a reference mean, an SAE) happens in ``prepare``.

The helpers below (:func:`needs_direction`, :func:`prepare`, :func:`apply`, ...) are
how the core calls a type: they read the optional members with their defaults, so a
type defines only what it needs. :class:`Direction`, :class:`Span` and
:class:`Strength` are public (``steerlab.Direction`` etc.): a direction can be built
from any array, with its provenance recorded.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from steerlab.errors import DirectionError, InterventionError, first_line
from steerlab.model import LayerInfo

STRENGTH_MODES = ("relative", "absolute")
#: what the strength's ``alpha`` is scaled by to become the value ``v`` (a type's ``value_scale``)
VALUE_SCALES = ("strength", "motion", "factor", "none")


@runtime_checkable
class InterventionType(Protocol):
    """The contract of an intervention type.

    Required members:

    - ``name``, ``formula`` (one line, in the notation of ``docs/interventions.md``),
      ``description``;
    - ``value_scale``: what the strength's ``alpha`` (the CLI's ``--alpha``) is scaled by to become the value ``v``: ``"strength"``
      (``alpha``, times the layer's RMS activation norm on that input in relative
      mode), ``"motion"`` (``alpha``, times the RMS norm of the layer's generators
      ``r_{t+1} - r_t`` on that input in relative mode), ``"factor"`` (``alpha`` as given)
      or ``"none"`` (unused, ``v = 0``);
    - ``apply(act, direction, value, weight, state) -> Tensor``: ``act [channels, frames]``
      (one item, padding frames included, where ``weight`` is 0), ``direction [channels]``
      (unit unless ``--no-normalize-direction``; None when the run has none), ``value`` a
      float, ``weight [frames]``, ``state`` what ``prepare`` returned (None for types
      without it). Must not modify ``act`` in place.

    Optional members (read with these defaults when absent):

    - ``needs_direction: bool = True``. False: the type runs without a direction
      (``direction`` is None) and, when one is given, uses it as its docs say (patch and
      mean-ablate then act on the component along ``d`` only).
    - ``prepare(model, layer, direction, options[, context]) -> state``: called once per
      run, before any traced pass and before any output is written, with the loaded model,
      the :class:`~steerlab.model.LayerInfo`, the direction tensor (or None) and the run's
      options mapping; a ``context`` parameter, if declared, receives a
      :class:`RunContext` (decode path, ``n_q``, batch size), so activations read on
      the decoder side come from the same path as the run's. It may run the model
      (``steerlab.tracing.capture`` / ``run``) to obtain activations. Raise a :class:`~steerlab.errors.SteerlabError` subclass for bad
      options. If the state has ``to_json()``, its JSON-safe result is recorded under
      ``prepared`` in every ``scores.json``.
    - ``check(state, n_frames, span_frames)``: called per input before the traced pass,
      with the input's frame count at the layer and the span as frames ``[first, last)``;
      raise :class:`~steerlab.errors.InterventionError` to refuse an input (e.g. a patch
      source shorter than the span).
    - ``options_help: Mapping[str, str]``: the option names the type accepts, with a line
      each; other names are refused. Absent: the type accepts no options.
    - ``value_scale_for(options) -> str``: when the value's meaning depends on an option
      (``feature-clamp``'s ``mode``).
    - ``chunkable: bool = True``. False: the patch of a frame depends on frames before it
      or on absolute time (``archetype``'s running sum, ``patch``'s alignment), so a long
      input must go through the model in one pass; ``steerlab intervene`` refuses to
      split it into chunks.
    """

    name: str
    formula: str
    description: str
    value_scale: str

    def apply(
        self, act: torch.Tensor, direction: torch.Tensor | None, value: float, weight: torch.Tensor, state: Any = None
    ) -> torch.Tensor:
        """``act [channels, frames]``, ``direction [channels]`` or None, ``weight [frames]`` -> patched act."""
        ...


def needs_direction(itype: Any) -> bool:
    """Whether the type refuses to run without a direction (``needs_direction``, default True)."""
    return bool(getattr(itype, "needs_direction", True))


def is_chunkable(itype: Any) -> bool:
    """Whether a long input may be patched in chunks (``chunkable``, default True)."""
    return bool(getattr(itype, "chunkable", True))


def options_help(itype: Any) -> dict[str, str]:
    """The type's option names with a line of help each (``options_help``, default none)."""
    return dict(getattr(itype, "options_help", None) or {})


def value_scale(itype: Any, options: Mapping[str, Any]) -> str:
    """How the strength becomes the value for these options: one of :data:`VALUE_SCALES`."""
    chooser = getattr(itype, "value_scale_for", None)
    out = chooser(options) if chooser is not None else itype.value_scale
    if out not in VALUE_SCALES:
        raise InterventionError(f"intervention {itype.name!r} has value scale {out!r}; expected one of {VALUE_SCALES}")
    return out


def check_options(itype: Any, options: Mapping[str, Any]) -> None:
    """Refuse option names the type does not take, listing the ones it does."""
    from steerlab.validation import did_you_mean

    valid = options_help(itype)
    for key in options:
        if key not in valid:
            hint = did_you_mean(str(key), valid)
            listed = ", ".join(sorted(valid)) or "none"
            raise InterventionError(
                f"intervention {itype.name!r} takes no option {key!r}.{hint} "
                f"Its options: {listed} (see `steerlab interventions`)"
            )


def apply(
    itype: Any, act: torch.Tensor, direction: torch.Tensor | None, value: float, weight: torch.Tensor, state: Any = None
) -> torch.Tensor:
    """``itype.apply(act, direction, value, weight, state)``: the patched ``[channels, frames]``
    (see :class:`InterventionType`); ``state`` is what :func:`prepare` returned."""
    return itype.apply(act, direction, value, weight, state)


def json_safe(value: Any) -> Any:
    """A JSON-safe description of an option value: paths as strings, arrays as shape + sha256,
    objects with ``to_json()`` through it, non-finite floats as None."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        arr = np.ascontiguousarray(arr)
        return {
            "array_shape": list(arr.shape),
            "dtype": str(arr.dtype),
            "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
        }
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return json_safe(to_json())
    return repr(value)


@dataclass(frozen=True)
class RunContext:
    """How the run that a ``prepare`` step serves will call the model."""

    path: str
    n_q: int | None = None
    max_batch: int = 16


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` computed for one run: the type's state and its JSON summary."""

    intervention: str
    state: Any = None
    summary: dict[str, Any] | None = None
    value_scale: str = "strength"

    def __post_init__(self) -> None:
        if self.value_scale not in VALUE_SCALES:
            raise InterventionError(
                f"value_scale must be one of {VALUE_SCALES}, got {self.value_scale!r}", parameter="value_scale"
            )


def prepare(
    itype: Any,
    model: Any,
    layer: LayerInfo,
    direction: torch.Tensor | None,
    options: Mapping[str, Any],
    context: RunContext | None = None,
) -> Prepared:
    """Check the options, run the type's ``prepare`` (if any) and summarise its state."""
    check_options(itype, options)
    scale = value_scale(itype, options)
    fn = getattr(itype, "prepare", None)
    if fn is None:
        return Prepared(itype.name, None, None, scale)
    try:
        wants_context = "context" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        wants_context = False
    if wants_context:
        state = fn(model, layer, direction, options, context=context or RunContext(model.default_path))
    else:
        state = fn(model, layer, direction, options)
    summary = None
    if state is not None:
        to_json = getattr(state, "to_json", None)
        summary = json_safe(to_json()) if callable(to_json) else {"state": type(state).__name__}
    return Prepared(itype.name, state, summary, scale)


def check_item(itype: Any, prepared: Prepared, n_frames: int, span_frames: tuple[int, int]) -> None:
    """The type's ``check`` on one input (``n_frames`` at the layer, the span as ``[first, last)``), if it has one."""
    fn = getattr(itype, "check", None)
    if fn is not None:
        fn(prepared.state, n_frames, span_frames)


@dataclass(frozen=True)
class Span:
    """A time span in seconds (``end=None``: to the end) with fades in frames."""

    start_s: float = 0.0
    end_s: float | None = None
    fade_in: int = 0
    fade_out: int = 0

    def __post_init__(self) -> None:
        from steerlab.validation import is_integer, is_number, show

        if not is_number(self.start_s) or self.start_s < 0:
            raise InterventionError(
                f"start_s must be a finite time >= 0 s, got {show(self.start_s)}", parameter="start_s"
            )
        if self.end_s is not None and not is_number(self.end_s):
            raise InterventionError(
                f"end_s must be None or a finite time in s, got {show(self.end_s)}", parameter="end_s"
            )
        if self.end_s is not None and self.end_s <= self.start_s:
            raise InterventionError(
                f"end_s ({self.end_s} s) must be after start_s ({self.start_s} s)", parameter=("end_s", "start_s")
            )
        for name in ("fade_in", "fade_out"):
            value = getattr(self, name)
            if not is_integer(value) or value < 0:
                raise InterventionError(f"{name} must be a frame count >= 0, got {show(value)}", parameter=name)

    def frames(self, layer: LayerInfo, n_frames: int) -> tuple[int, int]:
        """The span as frames ``[first, last)`` of ``layer``, clipped to the item."""
        first = min(n_frames, int(math.floor(self.start_s * layer.frame_rate)))
        last = n_frames if self.end_s is None else min(n_frames, int(math.ceil(self.end_s * layer.frame_rate)))
        return first, last

    def weights(self, layer: LayerInfo, n_frames: int, total_frames: int) -> torch.Tensor:
        """``[total_frames]`` weights: 1 inside the span, linear fades at its ends, 0 elsewhere
        (and 0 on padding frames past ``n_frames``)."""
        w = torch.zeros(total_frames)
        first, last = self.frames(layer, n_frames)
        if last <= first:
            return w
        w[first:last] = 1.0
        if self.fade_in:
            k = min(self.fade_in, last - first)
            w[first : first + k] = torch.arange(1, k + 1) / (self.fade_in + 1)
        if self.fade_out:
            k = min(self.fade_out, last - first)
            w[last - k : last] = torch.minimum(w[last - k : last], torch.arange(k, 0, -1) / (self.fade_out + 1))
        return w


@dataclass(frozen=True)
class Direction:
    """A direction in a layer's activation space and where it came from.

    ``vector``: ``[channels]``, any array-like (numpy, torch, list), kept as given: not
    normalised, a float array keeps its dtype, anything else becomes float64. It must be
    finite and non-zero (else :class:`~steerlab.errors.DirectionError`, saying which: how many
    entries are NaN/inf, or that all are 0). ``provenance``:
    a JSON-safe dict recorded in every result; left out, it says the caller gave the array
    (``{"source": "array", ...}``) with the array's shape, dtype and sha256, so a result
    still names exactly which vector it used.
    """

    vector: np.ndarray  # [channels], as given (not normalised)
    provenance: dict | None = None

    def __post_init__(self) -> None:
        vec = self.vector
        if isinstance(vec, torch.Tensor):
            vec = vec.detach().cpu().numpy()
        try:
            vec = np.asarray(vec)
            if not np.issubdtype(vec.dtype, np.floating):
                vec = vec.astype(np.float64)
        except (TypeError, ValueError):
            raise DirectionError(
                f"vector must be an array of numbers [channels], got {type(self.vector).__name__} {self.vector!r:.60}",
                parameter="vector",
            ) from None
        if vec.ndim != 1:
            raise DirectionError(
                f"a direction is a vector [channels]; got an array of shape {vec.shape}", parameter="vector"
            )
        bad = int(np.count_nonzero(~np.isfinite(vec)))
        if bad:
            raise DirectionError(
                f"a direction must be finite: {bad} of its {vec.size} entries are NaN or infinite", parameter="vector"
            )
        if not np.any(vec):
            raise DirectionError(
                f"a direction must be non-zero: all {vec.size} entries are 0 (it has no direction to normalise)",
                parameter="vector",
            )
        if self.provenance is not None and not isinstance(self.provenance, dict):
            raise DirectionError(
                f"provenance must be a dict or None, got {type(self.provenance).__name__}", parameter="provenance"
            )
        object.__setattr__(self, "vector", vec)
        if self.provenance is None:
            object.__setattr__(
                self, "provenance", {"source": "array", "note": "given as an array by the caller", **json_safe(vec)}
            )

    @property
    def norm(self) -> float:
        """The vector's L2 norm, in the layer's activation units."""
        return float(np.linalg.norm(self.vector))

    def unit(self) -> torch.Tensor:
        """The unit vector, float32 ``[channels]``."""
        return torch.from_numpy(self.vector / self.norm).float()

    def check_fits(self, layer: LayerInfo) -> None:
        """Raise :class:`~steerlab.errors.DirectionError` unless the vector has ``layer.channels`` entries."""
        if self.vector.shape != (layer.channels,):
            raise DirectionError(
                f"direction has {self.vector.shape[0]} entries but layer {layer.name!r} has {layer.channels} channels; "
                f"use a direction of width {layer.channels} (see `steerlab layers`)"
            )


def channel_direction(channel: int, layer: LayerInfo) -> Direction:
    """The unit vector on ``channel`` of ``layer`` (``0 <= channel < layer.channels``, else
    :class:`~steerlab.errors.DirectionError`). ``layer``: a :class:`~steerlab.model.LayerInfo`,
    as ``steerlab.layers(model).get(name)`` returns it, not a layer's name (else
    :class:`~steerlab.errors.ConfigError` naming ``layer``); ``channel``: an integer (else
    ConfigError naming ``channel``)."""
    from steerlab.errors import ConfigError
    from steerlab.validation import integer

    if not isinstance(layer, LayerInfo):
        hint = (
            f" (layer {layer!r}: look it up with steerlab.layers(model).get({layer!r}))"
            if isinstance(layer, str)
            else ""
        )
        raise ConfigError(
            f"layer must be a LayerInfo from steerlab.layers(model).get(name), got {type(layer).__name__}{hint}",
            parameter="layer",
        )
    channel = integer("channel", channel)
    if not 0 <= channel < layer.channels:
        raise DirectionError(
            f"channel {channel} is out of range for layer {layer.name!r} (0..{layer.channels - 1})", parameter="channel"
        )
    v = np.zeros(layer.channels)
    v[channel] = 1.0
    return Direction(v, {"source": "channel", "channel": channel})


def load_direction(path: Path, key: str | None = None) -> Direction:
    """A direction from ``.npy`` or ``.safetensors`` (the tensor ``key``, or the only one)."""
    from steerlab.artifacts import file_sha256

    if not isinstance(path, (str, Path)):
        raise DirectionError(f"path must be a file path (str or Path), got {type(path).__name__}", parameter="path")
    if key is not None and not isinstance(key, str):
        raise DirectionError(f"key must be a tensor name (str) or None, got {type(key).__name__}", parameter="key")
    path = Path(path)
    if not path.is_file():
        raise DirectionError(f"direction file not found: {path}")
    try:
        if path.suffix == ".npy":
            vec = np.load(path, allow_pickle=False)
        elif path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            tensors = load_file(str(path))
            if key is None and len(tensors) != 1:
                raise DirectionError(f"{path} holds tensors {sorted(tensors)}; choose one with FILE:KEY")
            vec = tensors[key] if key is not None else next(iter(tensors.values()))
        else:
            raise DirectionError(f"direction file {path} must be .npy or .safetensors")
    except DirectionError:
        raise
    except KeyError:
        raise DirectionError(f"{path} has no tensor {key!r}") from None
    except Exception as exc:
        raise DirectionError(f"cannot read direction {path}: {first_line(exc)}") from None
    vec = np.asarray(vec, dtype=np.float64).squeeze()
    if vec.ndim != 1:
        raise DirectionError(f"direction in {path} has shape {vec.shape}; expected a vector [channels]")
    if not np.all(np.isfinite(vec)) or not np.any(vec):
        raise DirectionError(f"direction in {path} is zero or holds NaN/inf values")
    return Direction(vec, {"source": "file", "path": str(path), "key": key, "sha256": file_sha256(path)})


def rms_norm(act: torch.Tensor) -> float:
    """RMS over frames of the activation vectors' L2 norm: ``sqrt(mean_t |a_t|^2)``."""
    if act.shape[-1] == 0:
        return 0.0
    return float(act.pow(2).sum(0).mean().sqrt())


def rms_step_norm(act: torch.Tensor) -> float:
    """RMS norm of the generators ``g_t = a_{t+1} - a_t``: ``sqrt(mean_t |g_t|^2)`` (0 below two frames)."""
    if act.shape[-1] < 2:
        return 0.0
    return float((act[:, 1:] - act[:, :-1]).pow(2).sum(0).mean().sqrt())


@dataclass(frozen=True)
class Strength:
    """``alpha`` absolute, or relative to the layer's RMS activation norm on that input."""

    alpha: float
    mode: str = "relative"

    def __post_init__(self) -> None:
        from steerlab.validation import is_number, show

        if not is_number(self.alpha):
            raise InterventionError(f"alpha must be a finite number, got {show(self.alpha)}", parameter="alpha")
        if not isinstance(self.mode, str) or self.mode not in STRENGTH_MODES:
            raise InterventionError(
                f"mode must be one of {', '.join(STRENGTH_MODES)}, got {self.mode!r}", parameter="mode"
            )

    def resolve(self, act: torch.Tensor, scale: str = "strength") -> float:
        """The value ``v`` for an item's valid activation ``[channels, frames]`` and a value scale
        (one of :data:`VALUE_SCALES`)."""
        if scale == "none":
            return 0.0
        if scale == "factor" or self.mode == "absolute":
            return self.alpha
        return self.alpha * (rms_step_norm(act) if scale == "motion" else rms_norm(act))
