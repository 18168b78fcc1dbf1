"""The second positive-control model: a short-time Fourier transform with a long window and
its weighted overlap-add inverse.

Where ``filterbank_24khz`` is a bank of log-spaced FIR filters running at the sample rate,
this model is frame-based: a linear frequency grid, a hop of ``hop`` samples (the layer runs
at ``sample_rate / hop`` frames per second) and a synthesis that is the least-squares
inverse of the analysis. Both are written from their definitions:

Analysis (Allen & Rabiner 1977, "A unified approach to short-time Fourier analysis and
synthesis", Proc. IEEE 65(11)): frame ``m`` is centred on sample ``t_m = m * hop`` and
weighted by a periodic Hann window ``w`` of ``n_fft`` samples,
``F(m, k) = sum_j x(t_m - n_fft/2 + j) w(j) exp(-2 pi i k j / n_fft)`` for bins
``k = 0 .. n_fft/2`` (``f_k = k * sample_rate / n_fft``); the signal is zero outside the
input. Hook point ``magnitude`` ``[batch, n_fft/2 + 1, frames]`` holds
``|X(m, k)| = 2 |F(m, k)| / sum_j w(j)``: a stationary partial of amplitude ``A`` at a bin
centre reads ``A`` on that bin (and ``A/2`` on its two neighbours, the Hann main lobe),
whatever its phase.

Synthesis (Griffin & Lim 1984, "Signal estimation from modified short-time Fourier
transform", IEEE TASSP 32(2), eq. 6): from modified frames ``y_m`` (time domain, one per
frame), ``y(n) = sum_m w(n - t_m + n_fft/2) y_m(n - t_m + n_fft/2) / sum_m w(...)^2``, the
signal whose STFT is nearest the modified one in the least-squares sense. Unmodified,
``y_m = IDFT(F(m, .)) = x w`` and ``y = x`` exactly wherever ``sum_m w^2 > 0`` (everywhere,
for ``hop <= n_fft / 2``).

The modification (the same rule as the filterbank's decoder, on STFT bins): with ``a`` the
(possibly patched) magnitudes, ``g = min(a / |X|, 1)`` and ``e = max(a - |X|, 0)``,
``y_m = IDFT(g F(m, .)) + w(j) sum_k e(m, k) c_k(t_m - n_fft/2 + j)``, where ``c_k(t)`` is a
carrier at ``f_k`` of phase 0 at ``t = 0`` (``cos(2 pi f_k t)``; ``1/2`` at DC and
``cos(pi t)/2`` at Nyquist, so that its analysis reads 1 on bin ``k``). A patch that lowers
a bin scales that bin's own content (ablating deletes it); one that raises a bin adds the
windowed STFT frame of a carrier at the bin's centre, so a constant excess ``e`` on bin
``k`` over every frame synthesises exactly ``e cos(2 pi f_k t)``. Why not the bin's own
phase: an empty bin's phase is whatever leaks into it, the problem docs/filterbank.md
describes for its first (phase-vocoder) design.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from steerlab.errors import ConfigError
from steerlab.model import AudioModel, LayerInfo, LoadOptions
from steerlab.registry import LayerRegistry

MODEL_NAME = "stft_24khz"


@dataclass(frozen=True)
class StftConfig:
    """Everything the transform is computed from (no training, no weights file)."""

    sample_rate: int = 24_000
    # 4096 samples (171 ms): bins 5.86 Hz apart, Hann main lobe +-11.7 Hz, narrower than the
    # batch test's 30 Hz minimum partial separation, so two partials never share a main lobe
    n_fft: int = 4_096
    # a quarter window (75% overlap): sum_m w^2 is constant (1.5) away from the edges
    hop: int = 1_024

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}", parameter=name)
        if self.n_fft < 16 or self.n_fft % 2:
            raise ConfigError(f"n_fft must be an even number >= 16, got {self.n_fft}", parameter="n_fft")
        if self.hop > self.n_fft // 2 or (self.n_fft // 2) % self.hop:
            raise ConfigError(
                f"hop must divide n_fft / 2 = {self.n_fft // 2} (so the Hann frames overlap and "
                f"the right context is whole frames), got {self.hop}"
            )

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def bin_hz(self) -> float:
        """Spacing of the bins, ``sample_rate / n_fft``."""
        return self.sample_rate / self.n_fft

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "bin_hz": self.bin_hz, "window": "periodic hann"}


def hann(n: int) -> np.ndarray:
    """Periodic Hann window ``0.5 - 0.5 cos(2 pi j / n)``, ``j = 0 .. n-1`` (float64)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


class StftModel(AudioModel):
    """The positive control of STFT construction: partials are steerable at ``magnitude``
    (the bins of their main lobe) by construction. See the module docstring."""

    family = "stft"
    channels = 1
    window: torch.Tensor  # buffer [n_fft], registered in __init__
    causal = False
    paths = ("continuous",)
    default_path = "continuous"

    def __init__(self, cfg: StftConfig = StftConfig()) -> None:
        super().__init__()
        self.name = MODEL_NAME
        self.cfg = cfg
        self.config = cfg.to_json()
        self.sample_rate = cfg.sample_rate
        self.hop = cfg.hop
        # frames reach n_fft / 2 past their centre: with that much zero padding every input
        # sample sees all the frames that cover it, batched or not
        self.right_context = cfg.n_fft // 2
        w = hann(cfg.n_fft)
        self.register_buffer("window", torch.from_numpy(w.astype(np.float32)))
        self.amplitude_scale = 2.0 / float(w.sum())  # |F| -> amplitude of a partial at a bin centre
        self.magnitude = torch.nn.Identity()
        self.eval()

    # -- analysis -----------------------------------------------------------------------
    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [batch, 1, L]`` (``L`` a multiple of ``hop``) -> windowed frames
        ``[batch, L / hop + 1, n_fft]``, frame ``m`` centred on sample ``m * hop``."""
        n = self.cfg.n_fft
        padded = F.pad(wave[:, 0], (n // 2, n // 2))
        return padded.unfold(-1, n, self.cfg.hop) * self.window

    def analyse(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [batch, 1, L]`` -> frame-local spectra ``F [batch, bins, frames]`` (complex)."""
        return torch.fft.rfft(self.frames(wave), dim=-1).transpose(1, 2)

    def carrier_phases(self, n_frames: int) -> torch.Tensor:
        """``exp(2 pi i k (t_m - n_fft/2) / n_fft)`` ``[bins, frames]``: turns a value with phase 0
        at absolute time 0 into frame ``m``'s local reference. Exact integer arithmetic mod
        ``n_fft``, so long inputs keep their phase."""
        n, dev = self.cfg.n_fft, self.window.device
        k = torch.arange(self.cfg.bins, dtype=torch.int64, device=dev)
        start = torch.arange(n_frames, dtype=torch.int64, device=dev) * self.cfg.hop - n // 2
        cycles = torch.remainder(k[:, None] * start[None], n).to(torch.float64) / n
        return torch.polar(torch.ones_like(cycles), 2 * math.pi * cycles).to(torch.complex64)

    # -- synthesis ----------------------------------------------------------------------
    def overlap_add(self, frames: torch.Tensor, length: int) -> torch.Tensor:
        """Least-squares inverse (Griffin & Lim 1984): ``frames [batch, M, n_fft]`` (modified
        windowed frames) -> ``[batch, 1, length]``."""
        n, hop = self.cfg.n_fft, self.cfg.hop
        m = frames.shape[1]
        full = n + (m - 1) * hop
        num = F.fold((frames * self.window).transpose(1, 2), (1, full), (1, n), stride=(1, hop))
        w2 = (self.window**2)[None, :, None].expand(1, n, m)
        den = F.fold(w2, (1, full), (1, n), stride=(1, hop))
        y = num[..., n // 2 : n // 2 + length] / den[..., n // 2 : n // 2 + length]
        return y.reshape(frames.shape[0], 1, length)

    def forward(self, wave: torch.Tensor, path: str = "continuous") -> torch.Tensor:
        """``wave [batch, 1, samples]`` -> decode ``[batch, 1, samples]``."""
        self.check_path(path)
        length = wave.shape[-1]
        wave = F.pad(wave, (0, (-length) % self.cfg.hop))
        spec = self.analyse(wave)  # [batch, bins, frames]
        mag = spec.abs() * self.amplitude_scale
        patched = self.magnitude(mag)
        # (new tensors only: mag and patched may be held by hooks)
        kept = patched.div(mag.clamp_min(1e-30)).clamp_max(1.0)  # where |X| = 0, F = 0 and the product is 0
        excess = (patched - mag).clamp_min(0.0)
        own = torch.fft.irfft(spec * kept, n=self.cfg.n_fft, dim=1)  # [batch, n_fft, frames]
        # the windowed frames of carriers at the bins' centres, phase 0 at t = 0, reading `excess`
        added = torch.fft.irfft(excess * self.carrier_phases(spec.shape[-1]), n=self.cfg.n_fft, dim=1)
        frames = own + added * (self.cfg.n_fft / 2) * self.window[:, None]
        return self.overlap_add(frames.transpose(1, 2), length)

    # -- helpers --------------------------------------------------------------------------
    def bin_of(self, hz: float) -> int:
        """Index of the bin whose centre is nearest ``hz``."""
        return int(min(max(round(hz / self.cfg.bin_hz), 0), self.cfg.bins - 1))

    def bin_centre(self, k: int) -> float:
        return k * self.cfg.bin_hz


def load(options: LoadOptions) -> StftModel:
    """Build the model from its config (``options.extra`` overrides fields of :class:`StftConfig`).
    There are no learned weights, so ``random_init`` gives the same model; a checkpoint is refused."""
    return StftModel(options.computed_config(MODEL_NAME, StftConfig, "its transform is")).to(options.device)


def register_layers(model: StftModel, registry: LayerRegistry) -> None:
    cfg = model.cfg
    registry.add(
        LayerInfo(
            name="magnitude",
            kind="stft",
            module_path="magnitude",
            channels=cfg.bins,
            stride=cfg.hop,
            hop=cfg.hop,
            sample_rate=cfg.sample_rate,
            receptive_field=cfg.n_fft,
            kernel_size=cfg.n_fft,
            side="encoder",
        )
    )
