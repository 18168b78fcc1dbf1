"""First-layer weight variants for the weights-dependence analysis (g).

The source post compares archetypes learned with trained, random and handcrafted
first-layer filters. Here a variant is a fresh copy of the model (models whose
weight normalisation cannot be deep-copied are re-loaded through a ``load``
callable, and the copy's weights are checked against the original before any
change) whose first convolution -- the first layer of kind ``conv`` in the model's
layer table, and the first ``torch.nn.Conv1d`` inside its module -- gets new
weights. Weight normalisation on that conv is removed first (the function it
computes is unchanged), so the plain ``weight`` can be written.

- ``random``: PyTorch's default ``Conv1d`` initialisation (weight and bias), seeded;
- ``handcrafted``: zero-mean patterns that are rare in audio, whose energy sits at
  low frequencies: alternating signs (period 2, the Nyquist rate), alternating pairs
  (period 4), a period-3 pattern and a second-difference spike, cycled over the
  output channels with shifted phases; each filter is scaled to the norm of the
  trained filter it replaces and the trained bias is kept, so only the shape changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from steerlab import validation as check
from steerlab.errors import WeightsVariantError

VARIANTS = ("trained", "random", "handcrafted")


def first_conv(model: Any) -> tuple[Any, Any]:
    """The first ``conv`` layer's :class:`LayerInfo` and the first ``Conv1d`` module inside it."""
    import torch

    from steerlab import api

    info = next((layer for layer in api.layers(model) if layer.kind == "conv"), None)
    if info is None:
        raise WeightsVariantError(f"model {model.name!r} has no layer of kind 'conv' in its layer table")
    node = model
    for part in info.module_path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    conv = next((m for m in node.modules() if isinstance(m, torch.nn.Conv1d)), None)
    if conv is None:
        raise WeightsVariantError(f"layer {info.name} of {model.name!r} holds no torch.nn.Conv1d")
    return info, conv


def handcrafted_filters(out_channels: int, in_channels: int, taps: int) -> np.ndarray:
    """Zero-mean, unit-norm filters ``[out, in, taps]`` of shapes rare in audio (see the module docstring)."""
    n = np.arange(taps)
    shapes = [
        lambda s: np.cos(np.pi * (n + s)),  # +1 -1 +1 ...: the Nyquist rate
        lambda s: np.sign(np.cos(np.pi * (n + s) / 2 + np.pi / 4)),  # ++--++-: period 4
        lambda s: np.cos(2 * np.pi * (n + s) / 3),  # period 3 (8 kHz at 24 kHz)
        lambda s: np.convolve(np.eye(taps)[(taps // 2 + s) % taps], [-1.0, 2.0, -1.0], mode="same"),
    ]
    out = np.zeros((out_channels, in_channels, taps))
    for c in range(out_channels):
        f = shapes[c % len(shapes)](c // len(shapes))
        f = f - f.mean()
        norm = np.linalg.norm(f)
        f = f / norm if norm > 0 else np.eye(taps)[c % taps]
        out[c, :] = f / np.sqrt(in_channels)
    return out


def _copy(model: Any, load: Callable[[], Any] | None) -> Any:
    try:
        twin = copy.deepcopy(model)
    except RuntimeError:  # torch's old weight_norm keeps non-leaf tensors that refuse deepcopy
        if load is None:
            raise WeightsVariantError(f"model {model.name!r} cannot be copied and no loader was given") from None
        twin = load()
        if twin.weights_hash() != model.weights_hash():
            raise WeightsVariantError(
                f"re-loading {model.name!r} gave different weights than the analysed model"
            ) from None
    twin.eval()
    return twin


def variant(model: Any, name: str, seed: int = 0, load: Callable[[], Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """A copy of ``model`` with the first convolution's weights of variant ``name``, and a
    record of what was done (filters before and after, module, weights hashes)."""
    import torch

    check.choice("name", name, VARIANTS, what="weights variant")
    info, conv = first_conv(model)
    record: dict[str, Any] = {
        "variant": name,
        "layer": info.name,
        "module_path": info.module_path,
        "weight_shape": list(conv.weight.shape),
        "original_weights_hash": model.weights_hash(),
    }
    if name == "trained":
        record.update(how="unchanged", weights_hash=record["original_weights_hash"])
        return model, record
    twin = _copy(model, load)
    _, tconv = first_conv(twin)
    for remove in (
        lambda m: torch.nn.utils.remove_weight_norm(m),
        lambda m: torch.nn.utils.parametrize.remove_parametrizations(m, "weight"),
    ):
        try:
            remove(tconv)
        except (ValueError, AttributeError, RuntimeError):
            pass  # not normalised that way
    with torch.no_grad():
        trained = tconv.weight.detach().clone()
        if name == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                tconv.reset_parameters()
            how = f"torch default Conv1d initialisation (reset_parameters), seed {seed}; weight and bias replaced"
        else:
            shape = tuple(tconv.weight.shape)
            f = torch.as_tensor(handcrafted_filters(*shape), dtype=tconv.weight.dtype)
            norms = trained.flatten(1).norm(dim=1).view(-1, *([1] * (len(shape) - 1)))
            tconv.weight.copy_(f * norms)
            how = (
                "handcrafted zero-mean patterns (alternating, period 4, period 3, second-difference spike), "
                "scaled to the trained filters' norms; trained bias kept"
            )
    record.update(
        how=how + "; applied to a copy of the model after removing weight normalisation",
        filters=tconv.weight.detach().squeeze(1).tolist(),
        trained_filters=trained.squeeze(1).tolist(),
        weights_hash=twin.weights_hash(),
    )
    return twin, record
