"""Reconstruction quality of a codec on held-out synthetic music, beside the same
architecture at random initialisation (the figures the README reports)."""

from __future__ import annotations

import torch

from .loaders import random_codec
from .model import EncodecAudioModel
from .train import _pool, evaluate


class _Codec(torch.nn.Module):
    """The attribute layout ``train.evaluate`` expects, over an EncodecAudioModel."""

    def __init__(self, model: EncodecAudioModel) -> None:
        super().__init__()
        self.encoder, self.quantizer, self.decoder = model.encoder, model.quantizer, model.decoder
        self.frame_rate = model.cfg.frame_rate
        self.bits_per_codebook = int(torch.tensor(model.cfg.bins).log2())


def evaluate_model(model: EncodecAudioModel, clips: int = 64, seed: int = 12_345) -> dict[str, dict[str, float]]:
    data = _pool(model.cfg, clips, seed, 1.0)
    data = data[..., : data.shape[-1] - data.shape[-1] % model.hop]
    random = random_codec(f"{model.name} (random init)", model.cfg)
    return {model.name: evaluate(_Codec(model), data), random.name: evaluate(_Codec(random), data)}
