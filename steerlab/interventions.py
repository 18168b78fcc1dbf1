"""Interventions: what a patch does to a layer's activations.

The core owns the contract and the shared pieces (time spans as frame weights,
directions, strengths); every intervention type is a plugin. An
:class:`InterventionType` maps one item's activation ``[channels, frames]`` to a
patched one, given a unit direction ``d [channels]``, a value (the strength) and
per-frame weights ``w [frames]`` in [0, 1] (1 inside the span, ramps for fades,
0 outside). Types are pure torch arithmetic, so their formulas can be tested
against plain computations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from steerlab.errors import DirectionError, InterventionError, first_line
from steerlab.model import LayerInfo

STRENGTH_MODES = ("relative", "absolute")


@runtime_checkable
class InterventionType(Protocol):
    name: str
    formula: str
    description: str
    value_kind: str  # "strength" (scaled in relative mode), "factor" (used as given) or "none"

    def apply(self, act: torch.Tensor, direction: torch.Tensor, value: float, weight: torch.Tensor) -> torch.Tensor:
        """``act [channels, frames]``, unit ``direction [channels]``, ``weight [frames]`` -> patched act."""
        ...


@dataclass(frozen=True)
class Span:
    """A time span in seconds (``end=None``: to the end) with fades in frames."""

    start_s: float = 0.0
    end_s: float | None = None
    fade_in: int = 0
    fade_out: int = 0

    def __post_init__(self) -> None:
        if not math.isfinite(self.start_s) or self.start_s < 0:
            raise InterventionError(f"--start must be a finite time >= 0 s, got {self.start_s}")
        if self.end_s is not None and (not math.isfinite(self.end_s) or self.end_s <= self.start_s):
            raise InterventionError(f"--end ({self.end_s} s) must be after --start ({self.start_s} s)")
        if self.fade_in < 0 or self.fade_out < 0:
            raise InterventionError("fades are frame counts >= 0")

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
    """A direction in a layer's activation space and where it came from."""

    vector: np.ndarray  # [channels], as given (not normalised)
    provenance: dict

    @property
    def norm(self) -> float:
        return float(np.linalg.norm(self.vector))

    def unit(self) -> torch.Tensor:
        return torch.from_numpy(self.vector / self.norm).float()

    def check_fits(self, layer: LayerInfo) -> None:
        if self.vector.shape != (layer.channels,):
            raise DirectionError(
                f"direction has {self.vector.shape[0] if self.vector.ndim == 1 else self.vector.shape} "
                f"entries but layer {layer.name!r} has {layer.channels} channels; "
                f"use a direction of width {layer.channels} (see `steerlab layers`)"
            )


def channel_direction(channel: int, layer: LayerInfo) -> Direction:
    if not 0 <= channel < layer.channels:
        raise DirectionError(f"--channel {channel} is out of range for layer {layer.name!r} (0..{layer.channels - 1})")
    v = np.zeros(layer.channels)
    v[channel] = 1.0
    return Direction(v, {"source": "channel", "channel": channel})


def load_direction(path: Path, key: str | None = None) -> Direction:
    """A direction from ``.npy`` or ``.safetensors`` (the tensor ``key``, or the only one)."""
    from steerlab.artifacts import file_sha256

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


@dataclass(frozen=True)
class Strength:
    """``alpha`` absolute, or relative to the layer's RMS activation norm on that input."""

    alpha: float
    mode: str = "relative"

    def __post_init__(self) -> None:
        if not math.isfinite(self.alpha):
            raise InterventionError(f"--alpha must be a finite number, got {self.alpha}")
        if self.mode not in STRENGTH_MODES:
            raise InterventionError(f"strength mode must be one of {STRENGTH_MODES}, got {self.mode!r}")

    def resolve(self, act: torch.Tensor) -> float:
        return self.alpha * rms_norm(act) if self.mode == "relative" else self.alpha
