"""A worked example of an out-of-tree steerlab plugin: a fixed cosine/sine-filterbank codec.

Installed (``pip install .``), it is found through its entry point in the group
``steerlab`` (see pyproject.toml); steerlab then calls the two hooks below.
"""

from __future__ import annotations

import math

import torch

from steerlab.hookspecs import hookimpl
from steerlab.model import AudioModel, LayerInfo

SAMPLE_RATE, BANDS, KERNEL, HOP = 16_000, 64, 128, 32


def filters() -> torch.Tensor:
    """``[2 * BANDS, 1, KERNEL]``: unit-norm Hann-windowed cosines and sines, centres 62.5, 187.5, ... 7937.5 Hz.

    Sines beside the cosines: with real filters alone, a partial in quadrature with a
    band's cosine would be invisible to it."""
    t = torch.arange(KERNEL) / SAMPLE_RATE
    phase = 2 * math.pi * ((torch.arange(BANDS) + 0.5) * SAMPLE_RATE / 2 / BANDS)[:, None] * t
    w = torch.hann_window(KERNEL) * torch.cat([torch.cos(phase), torch.sin(phase)])
    return (w / w.norm(dim=1, keepdim=True))[:, None]


class CosineCodec(AudioModel):
    """Strided analysis, then its transpose as synthesis (no training, no weights file)."""

    name, family, sample_rate, hop = "example_cosine_codec", "example", SAMPLE_RATE, HOP
    # a sample is decoded from every frame whose window covers it, the last reaching
    # KERNEL - HOP samples ahead: declaring it lets steerlab batch clips of any length exactly
    causal, right_context = False, KERNEL - HOP

    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Conv1d(1, 2 * BANDS, KERNEL, stride=HOP, bias=False)
        self.decoder = torch.nn.ConvTranspose1d(2 * BANDS, 1, KERNEL, stride=HOP, bias=False)
        with torch.no_grad():
            self.encoder.weight.copy_(filters())
            self.decoder.weight.copy_(filters() * HOP / KERNEL)  # Hann overlap-add of adjacent bands: unit gain

    def forward(self, wave: torch.Tensor, path: str = "continuous") -> torch.Tensor:
        self.check_path(path)
        frames = self.encoder(torch.nn.functional.pad(wave, (KERNEL - HOP, 0)))  # a frame per HOP samples
        return self.decoder(frames)[..., KERNEL - HOP : KERNEL - HOP + wave.shape[-1]]


@hookimpl
def steerlab_register_models(registry):
    from steerlab.registry import ModelSpec

    registry.add(ModelSpec("example_cosine_codec", lambda options: CosineCodec(), "fixed 64-band cosine/sine codec"))


@hookimpl
def steerlab_register_layers(model, registry):
    if isinstance(model, CosineCodec):
        registry.add(
            LayerInfo("analysis", "conv", "encoder", 2 * BANDS, HOP, HOP, SAMPLE_RATE, KERNEL, kernel_size=KERNEL)
        )
        registry.alias("bottleneck", "analysis")
