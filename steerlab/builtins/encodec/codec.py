"""Build EnCodec-architecture codecs from the ``encodec`` package's own classes.

The official 24 kHz and 48 kHz models and the project's small embedded codec are
all ``encodec.EncodecModel`` instances; only the sizes differ. A
:class:`CodecConfig` is the whole recipe for the architecture, so it is stored
next to every set of weights and hashed into every result.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from steerlab.errors import ConfigError

if TYPE_CHECKING:
    from encodec.model import EncodecModel


@dataclass(frozen=True)
class CodecConfig:
    """Architecture of an EnCodec-style codec (defaults: the official 24 kHz model)."""

    sample_rate: int = 24_000
    channels: int = 1
    n_filters: int = 32
    dimension: int = 128
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    lstm: int = 2
    causal: bool = True
    norm: str = "weight_norm"
    bins: int = 1024
    target_bandwidths: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0, 24.0)
    normalize: bool = False
    segment: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        norms = ("weight_norm", "time_group_norm", "none")
        if self.norm not in norms:
            raise ConfigError(f"norm must be one of {norms}, got {self.norm!r}", parameter="norm")
        if self.sample_rate <= 0 or self.channels not in (1, 2):
            raise ConfigError("sample_rate must be positive and channels 1 or 2", parameter=("sample_rate", "channels"))
        if not self.ratios or any(r < 1 for r in self.ratios):
            raise ConfigError(f"ratios must be positive integers, got {self.ratios}", parameter="ratios")

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> int:
        return math.ceil(self.sample_rate / self.hop_length)

    @property
    def n_q(self) -> int:
        bits_per_codebook = math.log2(self.bins)
        return int(1000 * self.target_bandwidths[-1] // (self.frame_rate * bits_per_codebook))

    def to_json(self) -> dict:
        d = asdict(self)
        d["ratios"] = list(self.ratios)
        d["target_bandwidths"] = list(self.target_bandwidths)
        return d

    @classmethod
    def from_json(cls, d: dict) -> CodecConfig:
        d = dict(d)
        d["ratios"] = tuple(d["ratios"])
        d["target_bandwidths"] = tuple(d["target_bandwidths"])
        return cls(**d)

    def config_hash(self) -> str:
        """16 hex digits of :func:`steerlab.artifacts.config_hash` of the config, in the form
        checkpoints were first written with (``compact=False``), so recorded hashes still match."""
        from steerlab.artifacts import config_hash

        return config_hash(self.to_json(), compact=False)


def build_codec(cfg: CodecConfig) -> EncodecModel:
    """An untrained ``encodec.EncodecModel`` with the architecture of ``cfg``."""
    from encodec.model import EncodecModel
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    common: dict[str, Any] = dict(
        channels=cfg.channels,
        dimension=cfg.dimension,
        n_filters=cfg.n_filters,
        n_residual_layers=cfg.n_residual_layers,
        ratios=list(cfg.ratios),
        norm=cfg.norm,
        causal=cfg.causal,
        lstm=cfg.lstm,
    )
    with warnings.catch_warnings():
        # encodec builds its layers with torch's deprecated weight_norm: encodec's concern, not the user's
        # (scoped to these two calls, so a caller's own warnings stay as they set them)
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*weight_norm.*")
        encoder = SEANetEncoder(**common)
        decoder = SEANetDecoder(**common)
    quantizer = ResidualVectorQuantizer(dimension=cfg.dimension, n_q=cfg.n_q, bins=cfg.bins)
    model = EncodecModel(
        encoder,
        decoder,
        quantizer,
        list(cfg.target_bandwidths),
        cfg.sample_rate,
        cfg.channels,
        normalize=cfg.normalize,
        segment=cfg.segment,
    )
    return model.eval()


OFFICIAL_24KHZ = CodecConfig()
OFFICIAL_48KHZ = CodecConfig(
    sample_rate=48_000,
    channels=2,
    causal=False,
    norm="time_group_norm",
    target_bandwidths=(3.0, 6.0, 12.0, 24.0),
    normalize=True,
    segment=1.0,
)
# The project's embedded default: the 24 kHz architecture (same strides, kernels,
# causality) at reduced width, small enough to ship and to train on two CPU cores.
EMBEDDED = CodecConfig(n_filters=12, dimension=64, lstm=1, bins=256, target_bandwidths=(1.2, 2.4, 4.8))
