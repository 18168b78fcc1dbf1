"""Reconstruction quality of a codec on held-out synthetic music, beside the same
architecture at random initialisation (the figures the README reports).

SI-SDR (dB) and the multi-resolution STFT distance of the decode against the
input, on both decode paths, overall (mean and median over clips) and per clip
kind of the synthetic corpus (median), since waveform fidelity on noise bursts
means something different from fidelity on tones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from steerlab import devices, metrics, synth

from .loaders import random_codec
from .model import EncodecAudioModel


@torch.no_grad()
def clip_metrics(
    decode: Callable[[torch.Tensor], torch.Tensor], clips: torch.Tensor, batch: int = 16, device: Any = None
):
    """Per-clip SI-SDR (dB) and MR-STFT distance of ``decode(x)`` against ``x [clips, channels, samples]``
    (each batch moved to ``device``, where the metrics are computed; the lists are plain floats)."""
    sdr: list[float] = []
    dist: list[float] = []
    for i in range(0, len(clips), batch):
        x = clips[i : i + batch] if device is None else clips[i : i + batch].to(device)
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
        by: dict[str, list[float]] = {k: [] for k in synth.KINDS}
        sdr, dist = clip_metrics(functools.partial(model, path=path), clips, device=devices.of(model))
        for value, kind in zip(sdr, kinds):
            by[kind].append(value)
        out[path] = {
            "si_sdr_median": float(np.median(sdr)),
            "si_sdr_median_ci95": median_ci(sdr),
            "si_sdr_mean": float(np.mean(sdr)),
            "mrstft_mean": float(np.mean(dist)),
            "si_sdr_median_by_kind": {
                **{k: float(np.median(by[k])) if by[k] else None for k in synth.KINDS},
                **{  # a null, never a NaN, and why (K_reason beside K)
                    f"{k}_reason": f"no clip of kind {k!r} among the {len(kinds)} clips drawn (give more clips)"
                    for k in synth.KINDS
                    if not by[k]
                },
            },
        }
    return out


def evaluate_model(model: EncodecAudioModel, clips: int = 70, seed: int = 12_345) -> dict[str, dict]:
    """Both decode paths of ``model`` and of its architecture at random initialisation on ``clips``
    synthetic clips, run where ``model`` is (the clips are made there)."""
    specs = synth.corpus(clips, seed, model.sample_rate, 1.0)
    length = model.sample_rate - model.sample_rate % model.hop
    dev = devices.of(model)
    data = torch.as_tensor(np.stack([synth.synthesize(s)[:length] for s in specs]), device=dev)[:, None].repeat(
        1, model.channels, 1
    )
    kinds = [s.kind for s in specs]
    random = random_codec(f"{model.name} (random init)", model.cfg).to(dev)
    return {model.name: _scores(model, data, kinds), random.name: _scores(random, data, kinds)}


# --- fidelity on the user's own audio and on pure tones (``steerlab eval codec --data/--tones``) ---

# Octave bands (ISO 266 nominal centres, edges at centre / sqrt 2 and centre * sqrt 2).
OCTAVE_CENTRES_HZ = (63, 125, 250, 500, 1000, 2000, 4000, 8000)
# A band whose input energy is this far below the clip's loudest band is not measured there:
# its error would be the codec's noise floor over next to nothing (null, with the reason).
BAND_FLOOR_DB = -50.0
DEFAULT_TONES_HZ = (50, 100, 200, 440, 700, 1000, 1500, 2000, 3000, 4000, 6000, 8000)


def octave_energy_db(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Energy (dB, arbitrary reference) of ``x [samples]`` in each band of :data:`OCTAVE_CENTRES_HZ`,
    from the power spectrum of the whole clip (Hann window); ``-inf`` for an empty band."""
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sample_rate)
    out = []
    for fc in OCTAVE_CENTRES_HZ:
        band = power[(freqs >= fc / np.sqrt(2)) & (freqs < fc * np.sqrt(2))].sum()
        out.append(10 * np.log10(band) if band > 0 else -np.inf)
    return np.array(out)


def octave_errors(decoded: np.ndarray, reference: np.ndarray, sample_rate: int) -> list[float | None]:
    """Per octave band, decoded minus reference energy in dB (``[samples]`` each); ``None`` where the
    reference band lies more than :data:`BAND_FLOOR_DB` below the reference's loudest band or above Nyquist."""
    e_ref, e_dec = octave_energy_db(reference, sample_rate), octave_energy_db(decoded, sample_rate)
    top = np.max(e_ref[np.isfinite(e_ref)]) if np.isfinite(e_ref).any() else -np.inf
    return [
        float(d - r)
        if np.isfinite(r) and r >= top + BAND_FLOOR_DB and fc * np.sqrt(2) <= sample_rate / 2 and np.isfinite(d)
        else None
        for fc, r, d in zip(OCTAVE_CENTRES_HZ, e_ref, e_dec)
    ]


@torch.no_grad()
def fidelity(model: EncodecAudioModel, clips: torch.Tensor) -> dict:
    """Per decode path: SI-SDR (dB) median with its bootstrap 95% interval and mean, MR-STFT distance,
    and the median octave-band energy error (dB) over the clips where the band is measured (with the
    count), or ``None`` with the reason. ``clips``: ``[n, channels, samples]`` at the model's rate,
    moved to where the model is (the octave bands are measured on the CPU)."""
    out: dict = {}
    clips = clips.to(devices.of(model))
    for path in ("continuous", "quantized"):
        decoded = torch.cat([model(clips[i : i + 16], path=path) for i in range(0, len(clips), 16)])
        sdr = metrics.si_sdr(decoded, clips).mean(1).tolist()
        dist = metrics.multires_stft_distance(decoded, clips).mean(1).tolist()
        errors = [
            octave_errors(d.mean(0).cpu().numpy(), c.mean(0).cpu().numpy(), model.sample_rate)
            for d, c in zip(decoded, clips)
        ]
        bands = {}
        for b, fc in enumerate(OCTAVE_CENTRES_HZ):
            vals = [v for v in (e[b] for e in errors) if v is not None]
            bands[str(fc)] = (
                {"median_db": float(np.median(vals)), "clips": len(vals)}
                if vals
                else {
                    "median_db": None,
                    "clips": 0,
                    "reason": f"no clip has energy within {-BAND_FLOOR_DB:.0f} dB of its loudest band here",
                }
            )
        out[path] = {
            "clips": len(sdr),
            "si_sdr_median": float(np.median(sdr)),
            "si_sdr_median_ci95": median_ci(sdr),
            "si_sdr_mean": float(np.mean(sdr)),
            "mrstft_mean": float(np.mean(dist)),
            "octave_error_db": bands,
        }
    return out


def folder_windows(
    folder: str, model: EncodecAudioModel, windows: int, seconds: float = 1.0, skip_bad_files: bool = False
) -> tuple[torch.Tensor, list[dict], list[dict]]:
    """Up to ``windows`` non-overlapping windows of ``seconds`` spread evenly over the audio files under
    ``folder`` (decoded at the model's rate and channels), windows below -45 dBFS skipped; also the
    per-file record (path, SHA-256, decoded seconds) and the skipped bad files (``{path, reason}``).

    Every file is checked first (:func:`steerlab.capture.check_audio_files`): an unreadable, empty or
    NaN file raises :class:`steerlab.capture.BadFilesError` (one line) unless ``skip_bad_files``.
    Raises :class:`SteerlabError` when no window is usable."""
    from steerlab.artifacts import file_sha256
    from steerlab.audio import load
    from steerlab.capture import check_audio_files
    from steerlab.corpus import _expand, loud_windows
    from steerlab.errors import SteerlabError

    n = int(seconds * model.sample_rate)
    n -= n % model.hop
    paths, bad = check_audio_files(_expand([folder]), skip_bad_files, f"folder {folder}", "folder")
    files, signals = [], []
    for path in paths:
        x = load(path, model.sample_rate, model.channels)[0]
        files.append(
            {"path": str(path), "sha256": file_sha256(path), "decoded_seconds": x.shape[-1] / model.sample_rate}
        )
        signals.append(x)
    picked = loud_windows(signals, windows, n)
    if not picked:
        raise SteerlabError(f"{folder}: no {seconds:g} s window of its audio is above -45 dBFS; nothing to evaluate")
    return torch.from_numpy(np.stack(picked)), files, bad


@torch.no_grad()
def tone_fidelity(model: EncodecAudioModel, freqs_hz=DEFAULT_TONES_HZ, amplitude: float = 0.5) -> dict[str, dict]:
    """SI-SDR (dB) of each decode path on a 1 s pure tone at each frequency (10 ms raised-cosine fades)."""
    n = model.sample_rate - model.sample_rate % model.hop
    t = np.arange(n) / model.sample_rate
    fade = np.minimum(1, np.minimum(t, t[::-1]) / 0.01)
    tones = np.stack([amplitude * fade * np.sin(2 * np.pi * f * t) for f in freqs_hz]).astype(np.float32)
    x = torch.as_tensor(tones, device=devices.of(model))[:, None].repeat(1, model.channels, 1)
    return {
        path: {str(f): float(v) for f, v in zip(freqs_hz, metrics.si_sdr(model(x, path=path), x).mean(1).tolist())}
        for path in ("continuous", "quantized")
    }
