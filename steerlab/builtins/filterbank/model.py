"""The positive-control model: a bank of long narrowband filters and a matching synthesis.

Encoder: ``n_bands`` analytic (one-sided) FIR filters with centres log-spaced from
``f_min`` to ``f_max``. Band ``k`` passes ``W_k(f) = cos^2(pi/2 * u)`` with
``u = log(f / c_k) / log(r)`` (``r`` the ratio of adjacent centres) for ``|u| < 1``
and nothing elsewhere, so adjacent bands cross at -6 dB, each band is exactly zero
at its neighbours' centres, and ``sum_k W_k = 1`` between ``c_0`` and ``c_{K-1}``.
The taps are that response sampled on a fine frequency grid, brought back to the
time domain and cut to ``2 * half_length + 1`` taps centred on zero lag (a Hann
window: the same window for every band keeps the sum flat). Filtering is a
linear convolution done with FFTs, zero-phase, so the model is non-causal with
``right_context = half_length``.

Hook point ``bands`` ``[batch, n_bands, samples]`` (hop 1): the magnitude ``|z_k|`` of each
band's analytic signal. A partial of amplitude ``A`` at ``c_k`` reads as the constant ``A`` on
channel ``k`` and nothing on any other channel, whatever its phase.

Decoder: with ``a_k`` the (possibly patched) magnitudes,
``y = sum_k g_k * Re z_k + max(a_k - |z_k|, 0) * cos(2 pi c_k t)``, ``g_k = min(a_k / |z_k|, 1)``.
Unpatched (``a_k = |z_k|``) this is exactly ``sum_k Re z_k``: the input filtered by
``sum_k W_k``, i.e. the input within the model's band. A patch that lowers a band scales
that band's own content (ablating it, ``a_k = 0``, deletes it); a patch that raises a band
adds the excess as a carrier at the band's centre, whatever else leaks into the band.

Why not take the added carrier's phase from the band itself (a phase vocoder, the first
design here, with a -80 dBFS pilot giving empty bands a phase)? The onsets and fades of
partials one or two bands away leak into an "empty" band at up to -33 dBFS (measured on the
batch test's stimuli with 10 ms fades), far above any pilot that leaves the representation
alone; the added partial then followed their phase during every transient, spreading its
energy off the target (concentration 0.8, off-band damage 1.3-3.6 dB at 1223 Hz).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from steerlab.errors import ConfigError
from steerlab.model import AudioModel, LayerInfo, LoadOptions
from steerlab.registry import LayerRegistry

MODEL_NAME = "filterbank_24khz"


@dataclass(frozen=True)
class FilterbankConfig:
    """Everything the filters are computed from (no training, no weights file)."""

    sample_rate: int = 24_000
    f_min: float = 100.0
    f_max: float = 8_000.0
    n_bands: int = 64
    # taps on each side of zero lag; long enough that the lowest band (about 7 Hz
    # between neighbours at 100 Hz) keeps its shape after windowing
    half_length: int = 8192
    # frequency grid the ideal responses are sampled on (sample_rate / design_fft Hz apart)
    design_fft: int = 2**17

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate must be > 0 Hz, got {self.sample_rate}", parameter="sample_rate")
        if not (0 < self.f_min < self.f_max):
            raise ConfigError(f"need 0 < f_min < f_max, got f_min={self.f_min} and f_max={self.f_max}")
        if self.n_bands < 2:
            raise ConfigError(f"n_bands must be >= 2, got {self.n_bands}", parameter="n_bands")
        if self.f_max * self.ratio >= self.sample_rate / 2:
            raise ConfigError(
                f"the top band reaches {self.f_max * self.ratio:.0f} Hz, above Nyquist "
                f"({self.sample_rate / 2:g} Hz); lower f_max or raise n_bands"
            )
        if self.half_length < 1 or 2 * self.half_length + 1 > self.design_fft:
            raise ConfigError(f"half_length must be in [1, (design_fft - 1) / 2], got {self.half_length}")

    @property
    def ratio(self) -> float:
        """Ratio of adjacent centre frequencies."""
        return (self.f_max / self.f_min) ** (1.0 / (self.n_bands - 1))

    @property
    def taps(self) -> int:
        return 2 * self.half_length + 1

    def centres(self) -> np.ndarray:
        return np.geomspace(self.f_min, self.f_max, self.n_bands)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "centres_hz": [round(float(c), 4) for c in self.centres()]}


def band_responses(cfg: FilterbankConfig, freqs: np.ndarray) -> np.ndarray:
    """Ideal real responses ``W_k(f)`` ``[n_bands, len(freqs)]`` (0 for f <= 0)."""
    out = np.zeros((cfg.n_bands, freqs.size))
    pos = freqs > 0
    logf = np.log(freqs[pos])
    for k, c in enumerate(cfg.centres()):
        u = (logf - math.log(c)) / math.log(cfg.ratio)
        out[k, pos] = np.where(np.abs(u) < 1, np.cos(np.pi / 2 * u) ** 2, 0.0)
    return out


def design_taps(cfg: FilterbankConfig) -> np.ndarray:
    """Complex analytic taps ``[n_bands, 2 * half_length + 1]``, index ``j`` at lag ``j - half_length``."""
    freqs = np.fft.fftfreq(cfg.design_fft, d=1.0 / cfg.sample_rate)
    # one-sided, doubled: Re(x * h_k) then has the real response W_k at +f and -f
    impulse = np.fft.ifft(2.0 * band_responses(cfg, freqs), axis=-1)
    lags = np.arange(-cfg.half_length, cfg.half_length + 1)
    window = np.hanning(cfg.taps + 2)[1:-1]  # no zero end taps
    return impulse[:, lags % cfg.design_fft] * window


class FilterbankAnalysis(torch.nn.Module):
    """``wave [batch, 1, samples]`` -> complex band signals ``[batch, n_bands, samples]`` (zero-phase)."""

    taps_real: torch.Tensor  # buffer [n_bands, taps], registered in __init__
    taps_imag: torch.Tensor  # buffer [n_bands, taps]

    def __init__(self, cfg: FilterbankConfig) -> None:
        super().__init__()
        self.half_length = cfg.half_length
        taps = design_taps(cfg)
        self.register_buffer("taps_real", torch.from_numpy(taps.real.astype(np.float32)))
        self.register_buffer("taps_imag", torch.from_numpy(taps.imag.astype(np.float32)))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        n = wave.shape[-1]
        # at least as long as the full linear convolution: no circular wrap, so a sample's
        # value does not depend on how much zero padding follows it
        n_fft = fft_size(n + self.taps_real.shape[-1] - 1)
        spectrum = torch.fft.fft(wave.to(torch.complex64), n_fft) * self._taps_spectrum(n_fft)
        full = torch.fft.ifft(spectrum)  # [batch, n_bands, n_fft], lag 0 at index half_length
        return full[..., self.half_length : self.half_length + n]

    def _taps_spectrum(self, n_fft: int) -> torch.Tensor:
        """FFT of the taps at ``n_fft`` points, kept for the last size asked (batches of a run
        share their length, so a sweep computes it once)."""
        key = (n_fft, self.taps_real.device)
        if getattr(self, "_cached", (None,))[0] != key:
            self._cached = (key, torch.fft.fft(torch.complex(self.taps_real, self.taps_imag), n_fft))
        return self._cached[1]


def fft_size(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n``: sizes the FFT handles fast, at most 1.25 x ``n``
    for the lengths met here (a power of two alone can cost up to 2 x)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


class FilterbankModel(AudioModel):
    """The positive control: partials inside its band are steerable at ``bands`` by construction."""

    family = "filterbank"
    channels = 1
    hop = 1
    centres_hz: torch.Tensor  # buffer [n_bands] (Hz, float64), registered in __init__
    causal = False
    paths = ("continuous",)
    default_path = "continuous"

    def __init__(self, cfg: FilterbankConfig = FilterbankConfig()) -> None:
        super().__init__()
        self.name = MODEL_NAME
        self.cfg = cfg
        self.config = cfg.to_json()
        self.sample_rate = cfg.sample_rate
        self.right_context = cfg.half_length
        self.encoder = FilterbankAnalysis(cfg)
        self.bands = torch.nn.Identity()
        self.register_buffer("centres_hz", torch.from_numpy(cfg.centres()))
        self.eval()

    def carriers(self, n: int) -> torch.Tensor:
        """``exp(i 2 pi c_k t)`` ``[n_bands, n]`` from t = 0; phases in float64 so long inputs stay exact."""
        t = torch.arange(n, dtype=torch.float64, device=self.centres_hz.device)
        phase = torch.remainder(2 * math.pi * self.centres_hz[:, None] * t[None] / self.sample_rate, 2 * math.pi)
        return torch.polar(torch.ones_like(phase), phase).to(torch.complex64)

    def forward(self, wave: torch.Tensor, path: str = "continuous") -> torch.Tensor:
        """``wave [batch, 1, samples]`` -> decode ``[batch, 1, samples]``."""
        self.check_path(path)
        z = self.encoder(wave)
        mag = z.abs()
        patched = self.bands(mag)
        # (in place only on tensors made here, never on mag or patched, which hooks may hold:
        # at [batch, 64, samples] every copy counts)
        # what a patch added on top, synthesised at the band's centre ...
        excess = (patched - mag).clamp_min_(0.0).mul_(self.carriers(wave.shape[-1]).real)
        # ... and how much of each band's own content is kept (1 unpatched or raised, 0 ablated);
        # where |z_k| = 0, Re z_k = 0 too and the clamp keeps the product 0
        kept = patched.div(mag.clamp_min(1e-30)).clamp_max_(1.0)
        return kept.mul_(torch.view_as_real(z)[..., 0]).add_(excess).sum(1, keepdim=True)

    def band_of(self, hz: float) -> int:
        """Index of the band whose centre is nearest ``hz`` on a log scale."""
        return int(np.argmin(np.abs(np.log(self.cfg.centres() / hz))))


def load(options: LoadOptions) -> FilterbankModel:
    """Build the model from its config (``options.extra`` overrides fields of
    :class:`FilterbankConfig`). There are no learned weights, so ``random_init`` gives
    the same filters; a checkpoint is refused."""
    return FilterbankModel(options.computed_config(MODEL_NAME, FilterbankConfig, "its filters are")).to(options.device)


def register_layers(model: FilterbankModel, registry: LayerRegistry) -> None:
    cfg = model.cfg
    registry.add(
        LayerInfo(
            name="bands",
            kind="filterbank",
            module_path="bands",
            channels=cfg.n_bands,
            stride=1,
            hop=1,
            sample_rate=cfg.sample_rate,
            receptive_field=cfg.taps,
            kernel_size=cfg.taps,
            side="encoder",
        )
    )
