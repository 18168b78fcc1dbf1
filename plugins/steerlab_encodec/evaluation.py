"""Reconstruction quality of a codec on held-out synthetic music, beside the same
architecture at random initialisation (the figures the README reports).

SI-SDR (dB) and the multi-resolution STFT distance of the decode against the
input, on both decode paths, overall (mean and median over clips) and per clip
kind of the synthetic corpus (median), since waveform fidelity on noise bursts
means something different from fidelity on tones.
"""

from __future__ import annotations

import numpy as np
import torch

from steerlab import metrics, synth

from .loaders import random_codec
from .model import EncodecAudioModel


@torch.no_grad()
def _scores(model: EncodecAudioModel, clips: torch.Tensor, kinds: list[str]) -> dict:
    out: dict = {}
    for path in ("continuous", "quantized"):
        sdr, dist = [], []
        for i in range(0, len(clips), 16):
            x = clips[i : i + 16]
            y = model(x, path=path)
            sdr += metrics.si_sdr(y, x).mean(1).tolist()
            dist += metrics.multires_stft_distance(y, x).mean(1).tolist()
        out[path] = {
            "si_sdr_median": float(np.median(sdr)),
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
