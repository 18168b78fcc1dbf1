"""Signal-level metrics shared by training, evaluation and scoring.

Plain torch functions over ``[..., samples]`` tensors; no model code here.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch

EPS = 1e-8
MRSTFT_FFTS: tuple[int, ...] = (256, 512, 1024, 2048)


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB, per item (last axis is time)."""
    ref = reference - reference.mean(-1, keepdim=True)
    est = estimate - estimate.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + EPS)
    target = scale * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(-1) + EPS) / (noise.pow(2).sum(-1) + EPS))


def stft_magnitude(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Magnitude STFT of ``[..., samples]`` with a Hann window and hop n_fft/4."""
    flat = x.reshape(-1, x.shape[-1])
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(flat, n_fft, hop_length=n_fft // 4, window=window, return_complex=True, center=True)
    return spec.abs().reshape(*x.shape[:-1], spec.shape[-2], spec.shape[-1])


def multires_stft_distance(
    estimate: torch.Tensor, reference: torch.Tensor, ffts: tuple[int, ...] = MRSTFT_FFTS
) -> torch.Tensor:
    """Multi-resolution STFT distance per item: mean over resolutions of
    spectral convergence plus mean absolute log10-magnitude difference.

    Spectral convergence is normalised by the larger of the two spectra's norms,
    so it stays in [0, 2] even against a silent reference."""
    total = torch.zeros(estimate.shape[:-1], dtype=estimate.dtype, device=estimate.device)
    for n_fft in ffts:
        e, r = stft_magnitude(estimate, n_fft), stft_magnitude(reference, n_fft)
        norm = torch.maximum(r.pow(2).sum((-2, -1)), e.pow(2).sum((-2, -1))).sqrt()
        sc = (e - r).pow(2).sum((-2, -1)).sqrt() / (norm + EPS)
        log_mag = (torch.log10(e + 1e-5) - torch.log10(r + 1e-5)).abs().mean((-2, -1))
        total = total + sc + log_mag
    return total / len(ffts)


class SiSdrAccumulator:
    """SI-SDR (dB) of an estimate against a reference that arrive in pieces (chunked inputs).

    Keeps the six sums SI-SDR needs (count, sums and cross sums of both signals, float64), so the
    result over all pieces equals :func:`si_sdr` of the concatenated signals (channels pooled, which
    is the same thing for mono). Vincent et al. / Le Roux et al. 2019, "SDR - half-baked or well done?".
    """

    def __init__(self) -> None:
        self.n = 0
        self.s = self.e = self.ss = self.se = self.ee = 0.0

    def add(self, reference: np.ndarray, estimate: np.ndarray) -> None:
        """Accumulate ``[channels, samples]`` (or ``[samples]``) pieces of equal shape."""
        r, e = np.asarray(reference, np.float64).ravel(), np.asarray(estimate, np.float64).ravel()
        self.n += r.size
        self.s, self.e = self.s + r.sum(), self.e + e.sum()
        # cast: numpy's stubs type a 1-d @ 1-d product as an array; it is a float64 scalar
        self.ss += cast(float, r @ r)
        self.se += cast(float, r @ e)
        self.ee += cast(float, e @ e)

    def result(self) -> float | None:
        """SI-SDR in dB, or ``None`` when the reference has no energy about its mean (nothing to compare)."""
        if self.n == 0:
            return None
        ss = self.ss - self.s * self.s / self.n
        se = self.se - self.s * self.e / self.n
        ee = self.ee - self.e * self.e / self.n
        if ss <= 0:
            return None
        scale = se / (ss + EPS)
        target = scale * scale * ss
        noise = max(ee - 2 * scale * se + target, 0.0)
        return float(10 * np.log10((target + EPS) / (noise + EPS)))
