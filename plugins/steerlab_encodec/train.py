"""Training recipe for the embedded codec (``steerlab train codec``).

A real training job: fresh synthetic batches every step, a held-out validation
set scored with SI-SDR and a multi-resolution STFT distance on both decode paths,
a learning curve (``curve.jsonl``), periodic checkpoints, and resume from the last
checkpoint when run again with the same output folder.

Loss: L1 on the waveform, multi-resolution spectral convergence, a small
log-magnitude term (at full weight it pushes the output towards silence early on)
and the quantizer's commitment penalty. Half of the steps decode the quantized
latent and half the continuous one, so both decode paths are trained.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from steerlab import metrics, synth
from steerlab.artifacts import atomic_write_json, atomic_save_safetensors
from steerlab import resumable
from steerlab.schedules import cosine_lr

from .codec import CodecConfig, build_codec


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20_000
    batch_size: int = 8
    clip_seconds: float = 0.5
    lr: float = 1e-3
    min_lr: float = 1e-4
    pool_clips: int = 4000
    val_clips: int = 48
    val_every: int = 500
    seed: int = 0
    log_mag_weight: float = 0.1
    wave_weight: float = 1.0
    spectral_weight: float = 1.0
    si_sdr_weight: float = 0.0
    quantized_share: float = 0.5

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or self.clip_seconds <= 0:
            raise ValueError("steps, batch_size and clip_seconds must be positive")
        if not 0.0 <= self.quantized_share <= 1.0:
            raise ValueError("quantized_share must be in [0, 1]")


def _pool(cfg: CodecConfig, n: int, seed: int, seconds: float) -> torch.Tensor:
    specs = synth.corpus(n, seed, cfg.sample_rate, seconds)
    clips = np.stack([synth.synthesize(s) for s in specs])
    return torch.from_numpy(clips).unsqueeze(1).repeat(1, cfg.channels, 1)


def spectral_loss(y: torch.Tensor, x: torch.Tensor, log_weight: float) -> torch.Tensor:
    total = y.new_zeros(())
    for n_fft in metrics.MRSTFT_FFTS:
        e, r = metrics.stft_magnitude(y, n_fft), metrics.stft_magnitude(x, n_fft)
        total = total + (e - r).norm() / (r.norm() + metrics.EPS)
        total = total + log_weight * (torch.log(e + 1e-3) - torch.log(r + 1e-3)).abs().mean()
    return total / len(metrics.MRSTFT_FFTS)


def forward_paths(model: torch.nn.Module, x: torch.Tensor, quantized: bool, n_q: int | None = None):
    """Encode, optionally quantize, decode; trims to the input length. Returns (y, penalty)."""
    z = model.encoder(x)
    penalty = x.new_zeros(())
    if quantized:
        q = model.quantizer
        if n_q is None:
            n_q = q.n_q
        if model.training:
            res = q(z, model.frame_rate, None)
            z, penalty = res.quantized, res.penalty.mean()
        else:
            codes = q.encode(z, model.frame_rate, n_q * model.bits_per_codebook * model.frame_rate / 1000)
            z = q.decode(codes)
    y = model.decoder(z)[..., : x.shape[-1]]
    return y, penalty


def evaluate(model: torch.nn.Module, clips: torch.Tensor, batch: int = 16) -> dict[str, float]:
    """SI-SDR (dB) and MR-STFT distance of both decode paths on ``clips``, medians and means."""
    from .evaluation import clip_metrics

    was_training = model.training
    model.eval()
    out: dict[str, list[float]] = {}
    for path, quant in (("cont", False), ("quant", True)):
        out[f"si_sdr_{path}"], out[f"mrstft_{path}"] = clip_metrics(lambda x: forward_paths(model, x, quant)[0], clips, batch)
    model.train(was_training)
    res = {f"{k}_mean": float(np.mean(v)) for k, v in out.items()}
    res.update({f"{k}_median": float(np.median(v)) for k, v in out.items()})
    return res


def train_codec(
    codec_cfg: CodecConfig, train_cfg: TrainConfig, out_dir: Path, log=print
) -> dict[str, float]:
    """Train (or resume) a codec into ``out_dir``; returns the final validation metrics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(train_cfg.seed)
    random.seed(train_cfg.seed)
    model = build_codec(codec_cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr, betas=(0.8, 0.99))
    identity = {"architecture": codec_cfg.to_json()}
    step = resumable.resume(out_dir, model, opt, identity, log)["step"]
    rng = np.random.default_rng(train_cfg.seed)
    if step:
        rng = np.random.default_rng([train_cfg.seed, step])
        torch.manual_seed(train_cfg.seed + step)
    pool = _pool(codec_cfg, train_cfg.pool_clips, train_cfg.seed, 1.0)
    val = _pool(codec_cfg, train_cfg.val_clips, train_cfg.seed + 10_000, 1.0)
    crop = int(train_cfg.clip_seconds * codec_cfg.sample_rate)
    crop -= crop % codec_cfg.hop_length
    t0 = time.time()
    losses: list[float] = []
    while step < train_cfg.steps:
        idx = rng.integers(0, len(pool), train_cfg.batch_size)
        starts = rng.integers(0, pool.shape[-1] - crop + 1, train_cfg.batch_size)
        x = torch.stack([pool[i, :, s : s + crop] for i, s in zip(idx, starts)])
        x = x * torch.from_numpy(rng.uniform(0.3, 1.5, (len(x), 1, 1)).astype(np.float32))
        quant = bool(rng.random() < train_cfg.quantized_share)
        y, penalty = forward_paths(model, x, quant)
        loss = (
            train_cfg.wave_weight * (y - x).abs().mean()
            + train_cfg.spectral_weight * spectral_loss(y, x, train_cfg.log_mag_weight)
            - train_cfg.si_sdr_weight * metrics.si_sdr(y, x).clamp(max=40).mean()
            + penalty
        )
        lr = cosine_lr(step, train_cfg.steps, train_cfg.lr, train_cfg.min_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % train_cfg.val_every == 0 or step == train_cfg.steps:
            ev = evaluate(model, val)
            row = {"step": step, "lr": lr, "train_loss": float(np.mean(losses)), "seconds": time.time() - t0, **ev}
            losses = []
            resumable.save(out_dir, model, opt, step, row, identity)
            log(
                f"step {step}: loss {row['train_loss']:.4f} val SI-SDR cont {ev['si_sdr_cont_median']:.2f} dB "
                f"quant {ev['si_sdr_quant_median']:.2f} dB"
            )
            export(model.eval(), codec_cfg, train_cfg, out_dir, ev, step)
            model.train()
    return evaluate(model, val)


def export(model, codec_cfg: CodecConfig, train_cfg: TrainConfig, out_dir: Path, ev: dict, step: int) -> None:
    """Write ``model.safetensors`` and ``config.json`` (the shippable artifact)."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_save_safetensors(state, out_dir / "model.safetensors")
    atomic_write_json(
        {
            "format": "steerlab-codec",
            "version": 1,
            "codec": codec_cfg.to_json(),
            "training": {**train_cfg.__dict__, "step": step},
            "validation": ev,
        },
        out_dir / "config.json",
    )
