"""Training recipe for the token transformer (``steerlab train tokenlm``).

Data: clips of the synthetic corpus (:mod:`steerlab.synth`), encoded once by the
embedded codec into ``[n_q, frames]`` token sequences and cached in the run
folder (``tokens.safetensors``, stamped with the codec's weights hash). Loss:
cross-entropy of the next frame's codes, summed over the ``n_q`` parallel heads.
Validation on held-out clips reports per-codebook cross-entropy, accuracy and
perplexity beside two baselines computed on the same held-out targets: the
unigram code frequencies of the training tokens, and copying the previous frame.

Resumable like ``steerlab train codec``: rerunning with the same ``-o`` folder
continues from ``checkpoint.pt``; the artifact (``model.safetensors``,
``config.json``) is re-exported whenever the validation loss improves.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from steerlab import provenance, resumable, synth
from steerlab.artifacts import atomic_save_safetensors, atomic_write_json
from steerlab.errors import ConfigError, SteerlabError
from steerlab.schedules import cosine_lr

from .loaders import FORMAT, NAME, VERSION
from .model import Sampling
from .transformer import TokenLMConfig, TokenTransformer


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1200
    batch_size: int = 16
    lr: float = 3e-3
    min_lr: float = 1e-4
    warmup: int = 50
    weight_decay: float = 0.05
    train_clips: int = 400
    val_clips: int = 40
    clip_seconds: float = 3.0
    val_every: int = 100
    seed: int = 1  # the codec was trained on corpus seeds 0 and 10000

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "train_clips", "val_clips", "val_every"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)}", parameter=key)
        if not self.lr > 0 or not self.clip_seconds > 0:
            raise ConfigError("lr and clip_seconds must be positive", parameter=("lr", "clip_seconds"))

    @property
    def val_seed(self) -> int:
        return self.seed + 10_000


@torch.no_grad()
def encode_clips(model_codec, clips: np.ndarray, n_q: int, batch: int = 16) -> torch.Tensor:
    """Float clips ``[n, samples]`` -> codes ``[n, n_q, frames]`` (int64, CPU) through the codec,
    on the codec's device."""
    from steerlab import devices

    hop = model_codec.hop
    x = torch.as_tensor(clips, dtype=torch.float32, device=devices.of(model_codec))[:, None]
    x = F.pad(x, (0, -x.shape[-1] % hop))
    out = []
    for i in range(0, len(x), batch):
        z = model_codec.encoder(x[i : i + batch])
        codes = model_codec.quantizer.encode(z, model_codec.cfg.frame_rate, model_codec.bandwidth_for(n_q))
        out.append(codes.transpose(0, 1).cpu())
    return torch.cat(out).long()


def corpus_tokens(codec, n_clips: int, seed: int, seconds: float, n_q: int) -> torch.Tensor:
    specs = synth.corpus(n_clips, seed, codec.sample_rate, seconds)
    clips = np.stack([synth.synthesize(s) for s in specs])
    return encode_clips(codec, clips, n_q)


def _tokens(
    codec, codec_hash: str, cfg: TokenLMConfig, tc: TrainConfig, out_dir: Path, log
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation tokens, encoded once per run folder."""
    path = out_dir / "tokens.safetensors"
    if path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
        except Exception as exc:  # noqa: BLE001 - a torn file: one line naming it (issue 10)
            raise SteerlabError(
                f"cannot read {path}: {str(exc).strip()[:160] or type(exc).__name__}; delete it to "
                "encode the tokens again"
            ) from None
        if meta.get("codec_sha256") != codec_hash:
            raise SteerlabError(
                f"{out_dir} holds tokens of codec {meta.get('codec_sha256', '?')[:12]}, not of the installed "
                f"codec {codec_hash[:12]}; train into a new -o folder"
            )
        from steerlab import schema

        t = schema.read_tensors(path, SteerlabError)
        if "train" not in t or "val" not in t or t["train"].dim() != 3 or t["val"].dim() != 3:
            raise SteerlabError(f"{path} lacks 3-D tensors 'train' and 'val'; delete it to encode the tokens again")
        return t["train"].long(), t["val"].long()
    t0 = time.time()
    train = corpus_tokens(codec, tc.train_clips, tc.seed, tc.clip_seconds, cfg.n_q)
    val = corpus_tokens(codec, tc.val_clips, tc.val_seed, tc.clip_seconds, cfg.n_q)
    atomic_save_safetensors({"train": train.short(), "val": val.short()}, path, {"codec_sha256": codec_hash})
    log(f"encoded {len(train)} + {len(val)} clips into tokens {tuple(train.shape[1:])} in {time.time() - t0:.0f} s")
    return train, val


def baselines(train: torch.Tensor, val: torch.Tensor, bins: int) -> dict[str, float | list[float]]:
    """Unigram (add-one code frequencies of the training tokens) and copy-previous-frame
    scores on the held-out next-frame targets ``val[:, :, 1:]``."""
    n_q = train.shape[1]
    target = val[:, :, 1:]
    ce, acc = [], []
    for k in range(n_q):
        counts = torch.bincount(train[:, k].reshape(-1), minlength=bins).double() + 1.0
        logp = (counts / counts.sum()).log()
        ce.append(float(-logp[target[:, k]].mean()))
        acc.append(float((target[:, k] == logp.argmax()).double().mean()))
    copy = (val[:, :, 1:] == val[:, :, :-1]).double().mean((0, 2))
    return {
        "unigram_loss": float(np.mean(ce)),
        "unigram_perplexity": math.exp(float(np.mean(ce))),
        "unigram_accuracy": float(np.mean(acc)),
        "unigram_loss_per_codebook": ce,
        "copy_previous_accuracy": float(copy.mean()),
        "copy_previous_accuracy_per_codebook": copy.tolist(),
    }


@torch.no_grad()
def evaluate(model: TokenTransformer, tokens: torch.Tensor, batch: int = 32) -> dict:
    """Mean next-frame cross-entropy (nats per code), perplexity and accuracy, overall and per codebook.
    ``tokens`` (CPU) are moved a batch at a time to where the model is; the sums stay there in float64."""
    from steerlab import devices

    was = model.training
    model.eval()
    n_q = model.cfg.n_q
    dev = devices.of(model)
    ce_sum = torch.zeros(n_q, dtype=torch.float64, device=dev)
    hit_sum, count = torch.zeros(n_q, dtype=torch.float64, device=dev), 0
    for i in range(0, len(tokens), batch):
        x = tokens[i : i + batch].to(dev)
        logits = model(x[:, :, :-1])  # [b, t, n_q, bins]
        target = x[:, :, 1:].transpose(1, 2)  # [b, t, n_q]
        ce = F.cross_entropy(logits.permute(0, 3, 1, 2), target, reduction="none")  # [b, t, n_q]
        ce_sum += ce.double().sum((0, 1))
        hit_sum += (logits.argmax(-1) == target).double().sum((0, 1))
        count += target.shape[0] * target.shape[1]
    model.train(was)
    ce_k, acc_k = (ce_sum / count).tolist(), (hit_sum / count).tolist()
    loss = float(np.mean(ce_k))
    return {
        "val_loss": loss,
        "val_perplexity": math.exp(loss),
        "val_accuracy": float(np.mean(acc_k)),
        "val_loss_per_codebook": ce_k,
        "val_accuracy_per_codebook": acc_k,
    }


def export(model: TokenTransformer, meta: dict, out_dir: Path) -> None:
    atomic_save_safetensors(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, out_dir / "model.safetensors"
    )
    atomic_write_json({**meta, "provenance": provenance.record(device=model)}, out_dir / "config.json")


def train_tokenlm(cfg: TokenLMConfig, tc: TrainConfig, out_dir: Path, codec, log=print, device: Any = None) -> dict:
    """Train (or resume) into ``out_dir``; returns the best validation metrics and the baselines.
    ``device``: where the codec encodes and the transformer trains (:func:`steerlab.devices.resolve`;
    None: the CPU); the weights are initialised on the CPU first (the same start everywhere), the
    tokens are kept on the CPU and each batch is moved."""
    from steerlab import devices

    out_dir.mkdir(parents=True, exist_ok=True)
    if codec.cfg.bins != cfg.bins:
        raise SteerlabError(f"the codec has {codec.cfg.bins} codes per codebook but the config says {cfg.bins}")
    if cfg.n_q > codec.n_q:
        raise SteerlabError(f"the codec has {codec.n_q} codebooks; n_q {cfg.n_q} is too many", parameter="n_q")
    dev = devices.place(codec, device or "cpu")
    codec_hash = codec.weights_hash()
    train, val = _tokens(codec, codec_hash, cfg, tc, out_dir, log)
    if train.shape[-1] > cfg.max_frames + 1:
        raise SteerlabError(f"clips of {train.shape[-1]} frames exceed the context of {cfg.max_frames} (+1) frames")
    base = baselines(train, val, cfg.bins)
    torch.manual_seed(tc.seed)
    model = TokenTransformer(cfg).train().to(dev)
    decay = [p for p in model.parameters() if p.dim() > 1]
    other = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=tc.lr,
        betas=(0.9, 0.98),
    )
    identity = {"architecture": cfg.to_json(), "codec weights": codec_hash}
    state = resumable.resume(out_dir, model, opt, identity, log)
    step, best, best_row = state["step"], state.get("best", float("inf")), state.get("best_row")
    rng = np.random.default_rng([tc.seed, step])
    torch.manual_seed(tc.seed + step)
    meta_base = {
        "format": FORMAT,
        "version": VERSION,
        "name": NAME,
        "transformer": cfg.to_json(),
        "codec": {
            "name": codec.name,
            "weights_sha256": codec_hash,
            "n_q": cfg.n_q,
            "hop": codec.hop,
            "frame_rate_hz": codec.sample_rate / codec.hop,
            "sample_rate": codec.sample_rate,
        },
        "sampling": {
            k: v for k, v in Sampling().to_json().items() if k in ("n_frames", "temperature", "top_k", "seed")
        },
        "training": {
            **asdict(tc),
            "data": "steerlab.synth.corpus(train_clips, seed, 24000, clip_seconds); "
            "validation: corpus(val_clips, seed + 10000, ...)",
            "threads": torch.get_num_threads(),
        },
        "baselines": base,
    }
    t0 = time.time()
    losses: list[float] = []
    while step < tc.steps:
        x = train[torch.as_tensor(rng.integers(0, len(train), tc.batch_size), device=train.device)].to(dev)
        logits = model(x[:, :, :-1])
        loss = F.cross_entropy(logits.reshape(-1, cfg.bins), x[:, :, 1:].transpose(1, 2).reshape(-1))
        lr = cosine_lr(step, tc.steps, tc.lr, tc.min_lr, tc.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % tc.val_every == 0 or step == tc.steps:
            ev = evaluate(model, val)
            row = {"step": step, "lr": lr, "train_loss": float(np.mean(losses)), "seconds": time.time() - t0, **ev}
            losses = []
            log(
                f"step {step}: train {row['train_loss']:.3f} val {ev['val_loss']:.3f} nats "
                f"(ppl {ev['val_perplexity']:.1f}, acc {ev['val_accuracy']:.3f}); "
                f"unigram ppl {base['unigram_perplexity']:.1f}"
            )
            if ev["val_loss"] < best:
                best, best_row = ev["val_loss"], row
                export(model, {**meta_base, "step": step, "validation": row}, out_dir)
            resumable.save(out_dir, model, opt, step, row, identity, {"best": best, "best_row": best_row})
    return {"best": best_row, "baselines": base}
