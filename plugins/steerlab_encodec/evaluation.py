"""Reconstruction quality of a codec on held-out synthetic music, beside the same
architecture at random initialisation (the figures the README reports).

SI-SDR (dB) and the multi-resolution STFT distance of the decode against the
input, on both decode paths, overall (mean and median over clips) and per clip
kind of the synthetic corpus (median), since waveform fidelity on noise bursts
means something different from fidelity on tones.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from steerlab import metrics, synth

from .loaders import random_codec
from .model import EncodecAudioModel


@torch.no_grad()
def clip_metrics(decode: Callable[[torch.Tensor], torch.Tensor], clips: torch.Tensor, batch: int = 16):
    """Per-clip SI-SDR (dB) and MR-STFT distance of ``decode(x)`` against ``x [clips, channels, samples]``."""
    sdr: list[float] = []
    dist: list[float] = []
    for i in range(0, len(clips), batch):
        x = clips[i : i + batch]
        y = decode(x)
        sdr += metrics.si_sdr(y, x).mean(1).tolist()
        dist += metrics.multires_stft_distance(y, x).mean(1).tolist()
    return sdr, dist


def median_ci(values: list[float], seed: int = 0, n_boot: int = 2000) -> list[float]:
    """Percentile bootstrap 95% interval of the median."""
    v = np.asarray(values)
    idx = np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))
    return [float(q) for q in np.percentile(np.median(v[idx], axis=1), [2.5, 97.5])]


@torch.no_grad()
def _scores(model: EncodecAudioModel, clips: torch.Tensor, kinds: list[str]) -> dict:
    out: dict = {}
    for path in ("continuous", "quantized"):
        sdr, dist = clip_metrics(lambda x: model(x, path=path), clips)
        out[path] = {
            "si_sdr_median": float(np.median(sdr)),
            "si_sdr_median_ci95": median_ci(sdr),
            "si_sdr_mean": float(np.mean(sdr)),
            "mrstft_mean": float(np.mean(dist)),
            "si_sdr_median_by_kind": {k: float(np.median([s for s, kk in zip(sdr, kinds) if kk == k])) for k in synth.KINDS},
        }
    return out


def evaluate_model(model: EncodecAudioModel, clips: int = 70, seed: int = 12_345) -> dict[str, dict]:
    specs = synth.corpus(clips, seed, model.sample_rate, 1.0)
    length = model.sample_rate - model.sample_rate % model.hop
    data = torch.from_numpy(np.stack([synth.synthesize(s)[:length] for s in specs]))[:, None].repeat(1, model.channels, 1)
    kinds = [s.kind for s in specs]
    random = random_codec(f"{model.name} (random init)", model.cfg)
    return {model.name: _scores(model, data, kinds), random.name: _scores(random, data, kinds)}
