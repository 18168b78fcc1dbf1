"""EnCodec models as steerable :class:`steerlab.model.AudioModel` objects.

:class:`EncodecAudioModel` wraps an ``encodec.EncodecModel`` (official or the
embedded one) with a plain ``forward(wave, path, n_q)`` and three extra hook
points: ``latent`` (continuous encoder output), ``quantized`` (the quantizer's
reconstruction) and ``codes`` (``[batch, n_q, frames]`` code indices, read-only).

Inputs are zero-padded to a whole number of frames (hop 320 at 24 kHz) before
encoding and the decode is trimmed to the input length, so the right edge of a
clip is treated the same whether the clip is processed alone or in a batch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from steerlab.model import AudioModel, LayerInfo, TracedOutput
from steerlab.registry import LayerRegistry

from .codec import CodecConfig, build_codec

if TYPE_CHECKING:
    from encodec.model import EncodecModel


class EncodecAudioModel(AudioModel):
    family = "encodec"
    paths = ("continuous", "quantized")
    default_path = "continuous"
    # the quantizer's code indices [batch, n_q, frames], read on the quantized path, where the
    # quantizer runs after the ``latent`` layer and before the ``quantized`` one
    traced_outputs = (TracedOutput("codes", "codes", paths=("quantized",), before="quantized"),)
    training_record: dict[str, Any]  # the config.json of a codec loaded by ``load_artifact`` (only then set)

    def __init__(self, name: str, cfg: CodecConfig, codec: EncodecModel | None = None) -> None:
        super().__init__()
        codec = codec if codec is not None else build_codec(cfg)
        self.name = name
        self.cfg = cfg
        self.config = cfg.to_json()
        self.sample_rate = cfg.sample_rate
        self.channels = cfg.channels
        self.hop = cfg.hop_length
        self.causal = cfg.causal
        # time_group_norm normalises over the whole time axis: padding would change it
        self.ragged_batching = cfg.causal and cfg.norm != "time_group_norm"
        # SEANet's convolutions, ELUs, LSTM and (per-sample) group norms, the quantizer and the
        # decoder each act on one row at a time; forward reads the input again only for its length
        self.rows_independent = True
        self.encoder = codec.encoder
        self.quantizer = codec.quantizer
        self.decoder = codec.decoder
        self.latent = torch.nn.Identity()
        self.quantized = torch.nn.Identity()
        self.codes = torch.nn.Identity()
        self.eval()

    @property
    def n_q(self) -> int:  # type: ignore[override]  # read-only here; the core only reads it
        return self.cfg.n_q

    def bandwidth_for(self, n_q: int | None) -> float:
        n_q = self.n_q if n_q is None else n_q
        return n_q * math.log2(self.cfg.bins) * self.cfg.frame_rate / 1000

    def input_scale(self, wave: torch.Tensor) -> float:
        """The 48 kHz model encodes audio normalised to unit RMS (encodec's ``normalize``)."""
        if not self.cfg.normalize:
            return 1.0
        return float(wave.pow(2).mean().sqrt()) + 1e-8

    def forward(self, wave: torch.Tensor, path: str = "continuous", n_q: int | None = None) -> torch.Tensor:
        """``wave [batch, channels, samples]`` -> decode ``[batch, channels, samples]``."""
        z = self.latent(self.encoder(wave))
        if path == "quantized":
            codes = self.quantizer.encode(z, self.cfg.frame_rate, self.bandwidth_for(n_q))
            codes = self.codes(codes.transpose(0, 1)).transpose(0, 1)
            z = self.quantized(self.quantizer.decode(codes))
        elif path != "continuous":
            self.check_path(path)
        return self.decoder(z)[..., : wave.shape[-1]]


def _conv_params(module: torch.nn.Module) -> tuple[Any, bool]:
    """The ``torch.nn.Conv1d`` (or ``ConvTranspose1d``) inside an encodec ``SConv1d`` (or
    ``SConvTranspose1d``), and whether it is transposed."""
    inner = getattr(module, "conv", None) or getattr(module, "convtr", None)
    inner = getattr(inner, "conv", None) or getattr(inner, "convtr", None)
    return inner, hasattr(module, "convtr")


def register_seanet_layers(model: EncodecAudioModel, registry: LayerRegistry) -> None:
    """Every encoder and decoder module by a stable name, plus the latents."""
    sr = model.sample_rate
    hop, rf, recurrent = 1, 1, False
    channels = model.channels
    lstm = "after an LSTM: the context to the left is unbounded; RF counts convolutions only"

    def walk(side: str, seq: torch.nn.Sequential) -> None:
        nonlocal hop, rf, recurrent, channels
        module: Any  # encodec's blocks, told apart by class name and read by their attribute names
        for i, module in enumerate(seq):
            kind_name = type(module).__name__
            stride, kernel = 1, None
            if kind_name in ("SConv1d", "SConvTranspose1d"):
                conv, transposed = _conv_params(module)
                kernel, stride, dilation = conv.kernel_size[0], conv.stride[0], conv.dilation[0]
                channels = conv.out_channels
                if transposed:
                    hop //= stride
                    rf += (math.ceil(kernel / stride) - 1) * hop * stride
                    kind = "convtr"
                else:
                    rf += (kernel - 1) * dilation * hop
                    hop *= stride
                    kind = "conv"
            elif kind_name == "SEANetResnetBlock":
                for sub in module.block:
                    if type(sub).__name__ == "SConv1d":
                        conv, _ = _conv_params(sub)
                        rf += (conv.kernel_size[0] - 1) * conv.dilation[0] * hop
                kind = "resblock"
            elif kind_name == "SLSTM":
                recurrent = True
                kind = "lstm"
            else:
                kind = kind_name.lower()
            registry.add(
                LayerInfo(
                    name=f"{side}.{i}.{kind}",
                    kind=kind,
                    module_path=f"{side}.model.{i}",
                    channels=channels,
                    stride=stride,
                    hop=max(hop, 1),
                    sample_rate=sr,
                    receptive_field=rf,
                    kernel_size=kernel,
                    recurrent=recurrent,
                    side=side,
                    context=lstm if recurrent else "",
                )
            )

    walk("encoder", model.encoder.model)
    dim = model.cfg.dimension
    for name in ("latent", "quantized"):
        registry.add(
            LayerInfo(name, name, name, dim, 1, hop, sr, rf, None, recurrent, "latent", lstm if recurrent else "")
        )
    walk("decoder", model.decoder.model)
    registry.alias("first_conv", "encoder.0.conv")
    last_conv = f"encoder.{len(model.encoder.model) - 1}.conv"
    registry.alias("last_conv", last_conv)
    # SEANetEncoder.forward returns its last conv's output, and ``latent`` is an identity on it
    registry.declare_same_tensor("latent", last_conv)
