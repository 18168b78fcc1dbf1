"""The third positive-control model: the log-magnitude of a long-window STFT, resynthesised with
the analysis phase, so that a level change and a spectral tilt are linear directions of its
layer by construction.

``filterbank_24khz`` and ``stft_24khz`` hold magnitudes and raise a band by adding a carrier at
its centre (their decoders are built for partials): neither can raise the level of content that
is already there. This model keeps every bin's own phase and writes the layer as a logarithm,
so adding a vector to the layer multiplies each bin's own content. Written from its definition:

Analysis: ``stft_24khz``'s own (Allen & Rabiner 1977, "A unified approach to short-time Fourier
analysis and synthesis", Proc. IEEE 65(11); the same code, held as ``self.stft``): a periodic
Hann window of ``n_fft = 4096`` samples, hop 1024, frame ``m`` centred on sample ``1024 m``,
bins ``f_k = k * 24000 / 4096`` Hz, amplitudes ``|X(m, k)| = 2 |F(m, k)| / sum(w)``. Why this
window and hop: 75% overlap of a Hann window makes ``sum_m w^2`` constant (1.5), so the
weighted overlap-add below is an exact inverse; and a 171 ms window's main lobe (+-11.7 Hz)
holds one partial of a harmonic sound (partials >= 110 Hz apart), so a gain per bin is a gain
per partial, nearly constant across each partial's main lobe.

Layer ``log_magnitude`` ``[batch, n_fft/2 + 1, frames]``: ``L(m, k) = ln(max(|X(m, k)|, floor)
/ floor)``, the level in nats above ``floor = 1e-12`` (amplitude units; -240 dB re 1). Why this
floor: it must be finite (silence is exact zeros) and below the magnitudes a frame holding sound
has, so that (nearly) every bin of such a frame is above it: float32 round-off of the analysis
leaves the emptiest bins of a frame at 1e-11 to 1e-10 of its largest (measured on a tone of
amplitude 0.3: 1e-11 smallest, 8e-11 first percentile), so with the battery's partials (0.005 to
0.1) all but 0.27% of the bins of the loudness and brightness training pairs' sound frames are
above it (measured; those few hold round-off, 200 dB under the partials). Why measured from the
floor: silence then reads 0, as it does on steerlab's other layers; an offset changes neither a
difference of means nor what adding a vector does, but steerlab's strengths are multiples of
the layer's RMS norm, which would otherwise be set by the floor's distance from 1.

Synthesis (Griffin & Lim 1984, "Signal estimation from modified short-time Fourier transform",
IEEE TASSP 32(2), eq. 6; ``stft_24khz``'s weighted overlap-add): with ``L'`` the (possibly
patched) layer, ``Y(m, k) = floor * exp(L'(m, k)) * X(m, k) / |X(m, k)|`` (phase 0 where
``X = 0``): the analysis phase with magnitude ``exp`` of the layer, then
``y(n) = sum_m w(n - t_m) y_m(n - t_m) / sum_m w(n - t_m)^2`` with ``y_m = IDFT(Y(m, .))``.

What follows from the definition (measured in tests/test_logspec.py):

- Unpatched, ``Y = X`` on every bin above the floor, so the decode is the input up to the
  content below ``floor`` (at most 1e-12 per bin) and float32 round-off.
- A gain: adding ``c * 1`` (the constant vector) to the layer of every frame multiplies every
  bin above the floor by ``e^c`` with its phase kept: ``Y = e^c X``, so the decode is
  ``e^c x``. Adding ``c_m * 1`` to frame ``m`` only gives ``y(n) = x(n) g(n)``,
  ``g(n) = sum_m w^2 e^{c_m} / sum_m w^2``: a gain that varies smoothly in time, the same for
  every partial. STFT linearity: ``|g X| = g |X|``, so a gain ``g`` is the constant vector
  ``ln g`` on every bin above the floor.
- A tilt of ``s`` dB per octave about ``f_0`` is the fixed ramp ``r(k) = (s ln 10 / 20)
  log2(f_k / f_0)`` in log-frequency (bin 0 takes bin 1's value); added to every frame, each
  partial whose main lobe is narrow against the ramp's curvature comes out times
  ``10^(s log2(f / f_0) / 20)``, the tilted input.

What the difference of means is for each concept's pair (its pair, not the ideal edit, is what
the direction is learned from):

- ``loudness``: ``with = 2 * without`` exactly, in float32 too (a power of two scales every
  rounding step of the FFT exactly), so on every bin above the floor ``L_with - L_without =
  ln 2`` and in silent frames both are 0: the difference of means is ``p ln 2 * 1`` (``p`` the
  share of frames holding sound), the constant vector, whatever the notes. Adding it is a gain;
  reversing it (adding its negative to the with-signal) is a gain below 1. It vouches.
- ``brightness``: ``with`` is the same partials with amplitudes times ``T(f) = (f / 1 kHz)^(4 /
  6.02)``, so on a partial's main-lobe bins ``L_with - L_without = ln T(f_k)`` (to 0.07 dB at 1
  kHz); on bins holding only leakage between partials, close to it; on bins holding only
  round-off, not. The difference of means is therefore ``q(k) ln T(f_k)``, ``q(k)`` the share of
  training frames with sound in bin ``k``: the ideal ramp wherever every training pair has
  partials, scaled down where only some do (the pairs' notes differ: MIDI 45-69, 24 harmonics up
  to 8 kHz, so bins above about 2.6 kHz hold partials in only some pairs). It vouches for a
  tilt to the extent the training pairs cover the held-out pairs' bands; the battery's run
  measures whether that is enough (docs/logspec.md).

What it can NOT vouch for: content added to bins that hold none (a partial, a note, a chord's
third): raising an empty bin scales whatever is below the floor there, so an added partial's
phase is noise (or nothing at all in silence); and onsets: a direction is one vector added to
every frame of the span, constant in time at 43 ms frames, and cannot express a 2 ms attack.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from steerlab.builtins.stft.model import StftConfig, StftModel
from steerlab.errors import ConfigError
from steerlab.model import AudioModel, LayerInfo, LoadOptions
from steerlab.registry import LayerRegistry

MODEL_NAME = "logspec_24khz"


@dataclass(frozen=True)
class LogSpecConfig:
    """Everything the transform is computed from (no training, no weights file): the STFT's
    rate, window and hop (``stft_24khz``'s, see :class:`StftConfig`) and the floor (amplitude
    units) the layer's logarithm is measured from."""

    sample_rate: int = 24_000
    n_fft: int = 4_096
    hop: int = 1_024
    # below float32 round-off of any frame holding sound (module docstring); float32 keeps
    # exp(layer) * floor normal for layer values up to about 60 nats
    floor: float = 1e-12

    def __post_init__(self) -> None:
        StftConfig(self.sample_rate, self.n_fft, self.hop)  # its checks
        f = self.floor
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not (1e-30 <= f < 1e-3):
            raise ConfigError(f"floor must be a number in [1e-30, 1e-3), got {f!r}", parameter="floor")

    @property
    def stft(self) -> StftConfig:
        return StftConfig(self.sample_rate, self.n_fft, self.hop)

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "bin_hz": self.stft.bin_hz,
            "window": "periodic hann",
            "layer": "ln(max(|X|, floor) / floor)",
        }


class LogSpecModel(AudioModel):
    """The positive control for level and tilt: see the module docstring."""

    family = "logspec"
    channels = 1
    causal = False
    paths = ("continuous",)
    default_path = "continuous"
    floor: torch.Tensor  # buffer [] (float64), registered in __init__, so the weights hash covers it

    def __init__(self, cfg: LogSpecConfig = LogSpecConfig()) -> None:
        super().__init__()
        self.name = MODEL_NAME
        self.cfg = cfg
        self.config = cfg.to_json()
        self.sample_rate = cfg.sample_rate
        self.hop = cfg.hop
        self.stft = StftModel(cfg.stft)  # the analysis and the overlap-add, one place
        self.right_context = self.stft.right_context
        self.register_buffer("floor", torch.tensor(float(cfg.floor), dtype=torch.float64))
        self.log_magnitude = torch.nn.Identity()
        self.eval()

    def layer(self, spec: torch.Tensor) -> torch.Tensor:
        """Spectra ``[batch, bins, frames]`` (complex) -> ``ln(max(|X|, floor) / floor)`` (float32)."""
        mag = spec.abs() * self.stft.amplitude_scale
        return torch.log(mag.clamp_min(self.cfg.floor)) - math.log(self.cfg.floor)

    def forward(self, wave: torch.Tensor, path: str = "continuous") -> torch.Tensor:
        """``wave [batch, 1, samples]`` -> decode ``[batch, 1, samples]``."""
        self.check_path(path)
        length = wave.shape[-1]
        wave = torch.nn.functional.pad(wave, (0, (-length) % self.cfg.hop))
        spec = self.stft.analyse(wave)  # [batch, bins, frames]
        patched = self.log_magnitude(self.layer(spec))
        mag = spec.abs()
        phase = torch.where(mag > 0, spec / mag.clamp_min(1e-30), torch.ones_like(spec))
        # floor * exp(L') in amplitude units, back to |F| units
        new = torch.exp(patched + math.log(self.cfg.floor)) / self.stft.amplitude_scale
        frames = torch.fft.irfft(phase * new, n=self.cfg.n_fft, dim=1)  # [batch, n_fft, frames]
        return self.stft.overlap_add(frames.transpose(1, 2), length)

    def bin_hz(self) -> torch.Tensor:
        """Centre of every bin, ``k * sample_rate / n_fft`` (Hz) ``[bins]``."""
        return torch.arange(self.cfg.n_fft // 2 + 1, dtype=torch.float64) * self.stft.cfg.bin_hz

    def tilt_ramp(self, db_per_octave: float, pivot_hz: float = 1000.0) -> torch.Tensor:
        """The layer vector ``[bins]`` (nats) of a tilt of ``db_per_octave`` about ``pivot_hz``:
        ``(s ln 10 / 20) log2(f_k / pivot)``, bin 0 (DC, no octave) given bin 1's value."""
        f = self.bin_hz()
        f[0] = f[1]
        return (db_per_octave * math.log(10) / 20 * torch.log2(f / pivot_hz)).float()


def load(options: LoadOptions) -> LogSpecModel:
    """Build the model from its config (``options.extra`` overrides fields of
    :class:`LogSpecConfig`). There are no learned weights, so ``random_init`` gives the same
    model; a checkpoint is refused."""
    cfg = options.computed_config(MODEL_NAME, LogSpecConfig, "its transform is")
    return LogSpecModel(cfg).to(options.device)


def register_layers(model: LogSpecModel, registry: LayerRegistry) -> None:
    cfg = model.cfg
    registry.add(
        LayerInfo(
            name="log_magnitude",
            kind="stft",
            module_path="log_magnitude",
            channels=cfg.n_fft // 2 + 1,
            stride=cfg.hop,
            hop=cfg.hop,
            sample_rate=cfg.sample_rate,
            receptive_field=cfg.n_fft,
            kernel_size=cfg.n_fft,
            side="encoder",
        )
    )
