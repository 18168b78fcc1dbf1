"""Training recipe for the toy SampleCNN (``steerlab train samplecnn``).

Fresh synthetic clips every step (a pure function of seed and step, so a resumed
run sees exactly the data an uninterrupted one would), random gain and polarity
so the classifier cannot key on level, cross-entropy, Adam with cosine decay.
Every ``val_every`` steps: accuracy and loss on a fixed validation set (a row of
``curve.jsonl``), a checkpoint (``checkpoint.pt``, model + optimizer + step) and
the shippable artifact (``model.safetensors`` + ``config.json``). Running again
into the same folder resumes from the checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from steerlab.artifacts import atomic_save_safetensors, atomic_write_json, versions
from steerlab import resumable
from steerlab.schedules import cosine_lr

from . import task
from .model import SampleCNN, SampleCNNConfig

FORMAT = "steerlab-samplecnn"
VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch_size: int = 16
    clip_seconds: float = 1.0
    lr: float = 3e-3
    min_lr: float = 1e-4
    weight_decay: float = 1e-4
    gain_low: float = 0.3
    gain_high: float = 1.5
    val_clips: int = 140
    val_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or self.val_clips <= 0 or self.val_every <= 0:
            raise ValueError("steps, batch_size, val_clips and val_every must be positive")
        if self.clip_seconds <= 0:
            raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds}")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"need 0 < min_lr <= lr, got min_lr {self.min_lr} and lr {self.lr}")
        if not 0 < self.gain_low <= self.gain_high:
            raise ValueError(f"need 0 < gain_low <= gain_high, got {self.gain_low} and {self.gain_high}")


@torch.no_grad()
def evaluate(model: SampleCNN, waves: torch.Tensor, targets: torch.Tensor, batch: int = 32) -> dict:
    """Accuracy, mean cross-entropy and per-label accuracy of ``model`` (put in eval mode)."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(waves[i : i + batch]) for i in range(0, len(waves), batch)])
    model.train(was_training)
    pred = logits.argmax(1)
    per_label = {
        name: float((pred[targets == i] == i).float().mean()) if bool((targets == i).any()) else None
        for i, name in enumerate(model.labels)
    }
    return {
        "accuracy": float((pred == targets).float().mean()),
        "loss": float(F.cross_entropy(logits, targets)),
        "accuracy_by_label": per_label,
        "n_clips": len(targets),
    }


def train_samplecnn(model_cfg: SampleCNNConfig, cfg: TrainConfig, out_dir: Path, name: str = "samplecnn_24khz",
                    log: Callable[[str], None] = print) -> dict:
    """Train (or resume) into ``out_dir``; returns the last validation row."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = SampleCNN(name, model_cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    identity = {"architecture": model_cfg.to_json()}
    step = resumable.resume(out_dir, model, opt, identity, log)["step"]
    val_x, val_y = task.render(
        task.held_out_specs(cfg.val_clips, cfg.seed + task.VAL_SEED_OFFSET, model_cfg.sample_rate, cfg.clip_seconds),
        model_cfg.labels,
    )
    n_params = sum(p.numel() for p in model.parameters())
    t0 = time.time()
    losses: list[float] = []
    row: dict = {}
    while step < cfg.steps:
        specs, rng = task.step_specs(cfg.seed, step, cfg.batch_size, model_cfg.labels, model_cfg.sample_rate,
                                     cfg.clip_seconds)
        x, y = task.render(specs, model_cfg.labels)
        gain = rng.uniform(cfg.gain_low, cfg.gain_high, (len(x), 1, 1)) * rng.choice([-1.0, 1.0], (len(x), 1, 1))
        x = x * torch.from_numpy(gain.astype(np.float32))
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # nothing random in the model today; keeps resume exact if added
        lr = cosine_lr(step, cfg.steps, cfg.lr, cfg.min_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % cfg.val_every == 0 or step == cfg.steps:
            ev = evaluate(model, val_x, val_y)
            row = {"step": step, "lr": lr, "train_loss": float(np.mean(losses)), "seconds": round(time.time() - t0, 2),
                   "val_accuracy": ev["accuracy"], "val_loss": ev["loss"], "val_accuracy_by_label": ev["accuracy_by_label"]}
            losses = []
            resumable.save(out_dir, model, opt, step, row, identity)
            export(model, model_cfg, cfg, out_dir, row, step, n_params)
            log(f"step {step}: train loss {row['train_loss']:.3f}, val loss {ev['loss']:.3f}, "
                f"val accuracy {ev['accuracy']:.3f}")
    return row


def export(model: SampleCNN, model_cfg: SampleCNNConfig, cfg: TrainConfig, out_dir: Path, row: dict, step: int,
           n_params: int) -> None:
    """Write ``model.safetensors`` and ``config.json`` (the shippable artifact)."""
    was_training = model.training
    model.eval()
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_save_safetensors(state, out_dir / "model.safetensors")
    atomic_write_json(
        {
            "format": FORMAT,
            "version": VERSION,
            "name": model.name,
            "samplecnn": model_cfg.to_json(),
            "config_hash": model_cfg.config_hash(),
            "parameters": n_params,
            "weights_sha256": model.weights_hash(),
            "training": {**asdict(cfg), "step": step, "task": "clip kind of steerlab.synth"},
            "validation": row,
            "versions": versions(),
        },
        out_dir / "config.json",
    )
    model.train(was_training)
