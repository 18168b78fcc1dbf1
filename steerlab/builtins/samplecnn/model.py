"""A toy sample-level CNN (after Lee et al. 2018, "SampleCNN") as a steerable
:class:`steerlab.model.AudioModel` without a decoder.

Architecture (all kernels of length 3, as in the paper): a strided first conv
(kernel 3, stride 3) with BatchNorm and ReLU, then ``len(block_channels)`` blocks
of conv (kernel 3, stride 1, zero padding 1) + BatchNorm + ReLU + max-pooling by 3,
then a head that pools globally over time (mean and max, concatenated) and maps
to class logits with one linear layer. Every hook point is a block output
``[batch, channels, frames]``; the head's pooled vector has no time axis and is
not a layer.

Batching: the global pooling sees every frame, so zeros appended to batch a
shorter clip with a longer one would change its logits. The model therefore sets
``ragged_batching = False`` (the tracer only batches clips of equal length) and
pads every input itself to a whole number of final frames, so a direct call and a
traced call see exactly the same samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from steerlab.errors import ConfigError
from steerlab.model import AudioModel, LayerInfo
from steerlab.registry import LayerRegistry
from steerlab.synth import KINDS

if TYPE_CHECKING:
    from .instruments import InstrumentTask

KERNEL = 3  # the "sample-level" filter length of every conv and pooling window
POOLINGS = ("meanmax", "mean", "max")


@dataclass(frozen=True)
class SampleCNNConfig:
    """Architecture and task of a SampleCNN; stored beside every set of weights."""

    sample_rate: int = 24_000
    first_channels: int = 16
    block_channels: tuple[int, ...] = (16, 16, 32, 32, 64, 64)
    labels: tuple[str, ...] = KINDS
    pooling: str = "meanmax"

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate must be positive, got {self.sample_rate}", parameter="sample_rate")
        if self.first_channels <= 0 or not self.block_channels or any(c <= 0 for c in self.block_channels):
            raise ConfigError("first_channels and every block_channels entry must be positive, with at least one block")
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels must be at least two distinct names, got {self.labels}", parameter="labels")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}", parameter="pooling")

    @property
    def hop(self) -> int:
        """Samples per frame of the last block: the first conv's stride times one pooling per block."""
        return KERNEL ** (len(self.block_channels) + 1)

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> dict:
        d = asdict(self)
        d["block_channels"] = list(self.block_channels)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_json(cls, d: dict) -> SampleCNNConfig:
        d = dict(d)
        d["block_channels"] = tuple(d["block_channels"])
        d["labels"] = tuple(d["labels"])
        return cls(**d)

    def config_hash(self) -> str:
        """16 hex digits of :func:`steerlab.artifacts.config_hash` of the config, in the form
        checkpoints were first written with (``compact=False``), so recorded hashes still match."""
        from steerlab.artifacts import config_hash

        return config_hash(self.to_json(), compact=False)


def _block(c_in: int, c_out: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Conv1d(c_in, c_out, KERNEL, stride=1, padding=1),
        torch.nn.BatchNorm1d(c_out),
        torch.nn.ReLU(),
        torch.nn.MaxPool1d(KERNEL, stride=KERNEL),
    )


class SampleCNN(AudioModel):
    """``forward(wave [batch, 1, samples]) -> logits [batch, classes]``."""

    family = "samplecnn"
    has_decoder = False
    causal = False
    # padding is handled by refusing ragged batches (see the module docstring)
    right_context = 0
    ragged_batching = False
    paths = ("continuous",)
    default_path = "continuous"
    channels = 1
    # set by the loader: the weights folder's config.json, and the instrument task's split
    # (``instruments.InstrumentTask``) when the weights were trained on it (None: synthetic clip kinds)
    training_record: dict | None = None
    instrument_task: InstrumentTask | None = None

    def __init__(self, name: str, cfg: SampleCNNConfig) -> None:
        super().__init__()
        self.name = name
        self.cfg = cfg
        self.config = cfg.to_json()
        self.sample_rate = cfg.sample_rate
        self.hop = cfg.hop
        self.front = torch.nn.Sequential(
            torch.nn.Conv1d(1, cfg.first_channels, KERNEL, stride=KERNEL),
            torch.nn.BatchNorm1d(cfg.first_channels),
            torch.nn.ReLU(),
        )
        widths = (cfg.first_channels, *cfg.block_channels)
        self.blocks = torch.nn.ModuleList(_block(a, b) for a, b in zip(widths[:-1], widths[1:]))
        pooled = cfg.block_channels[-1] * (2 if cfg.pooling == "meanmax" else 1)
        self.head = torch.nn.Linear(pooled, cfg.n_classes)
        self.eval()

    @property
    def labels(self) -> tuple[str, ...]:
        return self.cfg.labels

    @property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]  # read-only here; the core only reads it
        """What ``steerlab intervene`` names the classes by in its class-probability scores."""
        return self.cfg.labels

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Last block output ``[batch, channels, frames]`` of ``wave [batch, 1, samples]``."""
        # padding here too (the tracer already pads) keeps direct and traced calls identical
        x = F.pad(wave, (0, self.padded_length(wave.shape[-1]) - wave.shape[-1]))
        x = self.front(x)
        for block in self.blocks:
            x = block(x)
        return x

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Global pooling over time: ``[batch, channels, frames] -> [batch, pooled]``."""
        if self.cfg.pooling == "mean":
            return h.mean(-1)
        if self.cfg.pooling == "max":
            return h.amax(-1)
        return torch.cat([h.mean(-1), h.amax(-1)], dim=1)

    def forward(self, wave: torch.Tensor, path: str = "continuous") -> torch.Tensor:
        """``wave [batch, 1, samples]`` -> logits ``[batch, classes]``."""
        if path != "continuous":
            self.check_path(path)
        return self.head(self.pool(self.features(wave)))


def layer_table(cfg: SampleCNNConfig) -> list[LayerInfo]:
    """Every hook point in forward order, with hop and receptive field in input samples.

    A kernel-``k`` conv of stride 1 on a layer of hop ``h`` widens the receptive field
    by ``(k - 1) h``; so does a pooling window of ``k`` (stride ``k``), which then
    multiplies the hop by ``k``. The strided first conv spans ``k`` samples at hop ``k``.
    """
    sr = cfg.sample_rate
    hop = rf = KERNEL
    rows = [LayerInfo("conv.0", "conv", "front", cfg.first_channels, KERNEL, hop, sr, rf, KERNEL)]
    for i, channels in enumerate(cfg.block_channels):
        rf += (KERNEL - 1) * hop  # the conv
        rf += (KERNEL - 1) * hop  # the pooling window
        hop *= KERNEL
        rows.append(LayerInfo(f"block.{i + 1}", "block", f"blocks.{i}", channels, KERNEL, hop, sr, rf, KERNEL))
    return rows


def register_layers(model: SampleCNN, registry: LayerRegistry) -> None:
    table = layer_table(model.cfg)
    for info in table:
        registry.add(info)
    registry.alias("first_conv", table[0].name)
    registry.alias("last_conv", table[-1].name)


def receptive_field_formula(n_blocks: int) -> int:
    """Closed form of :func:`layer_table`'s receptive field after ``n_blocks`` blocks:
    ``3 + sum_{i=1..n} 4 * 3^i = 2 * 3^(n+1) - 3`` (block ``i`` starts at hop ``3^i``;
    ``n = 0`` is the first conv alone)."""
    return 2 * KERNEL ** (n_blocks + 1) - 3
