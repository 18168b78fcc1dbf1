"""Training recipe for the toy SampleCNN (``steerlab train samplecnn``).

Fresh synthetic clips every step (a pure function of seed and step, so a resumed
run sees exactly the data an uninterrupted one would), random gain and polarity
so the classifier cannot key on level, cross-entropy, Adam with cosine decay.
Every ``val_every`` steps: accuracy and loss on a fixed validation set (a row of
``curve.jsonl``), a checkpoint (``checkpoint.pt``, model + optimizer + step) and
the shippable artifact (``model.safetensors`` + ``config.json``). Running again
into the same folder resumes from the checkpoint.

Two tasks share the recipe (:class:`KindsData`, the default, and
:class:`InstrumentData`); each makes one step's batch from ``(seed, step)`` alone and
its validation set from a seed, and the instrument task's record (its split) joins
the run's identity and ``config.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from steerlab import provenance, resumable
from steerlab.artifacts import atomic_save_safetensors, atomic_write_json, versions
from steerlab.errors import ConfigError
from steerlab.schedules import cosine_lr

from . import task
from .instruments import InstrumentTask, soundfont_record
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
            raise ConfigError(
                "steps, batch_size, val_clips and val_every must be positive",
                parameter=("steps", "batch_size", "val_clips", "val_every"),
            )
        if self.clip_seconds <= 0:
            raise ConfigError(f"clip_seconds must be positive, got {self.clip_seconds}", parameter="clip_seconds")
        if not 0 < self.min_lr <= self.lr:
            raise ConfigError(
                f"need 0 < min_lr <= lr, got min_lr {self.min_lr} and lr {self.lr}", parameter=("min_lr", "lr")
            )
        if not 0 < self.gain_low <= self.gain_high:
            raise ConfigError(f"need 0 < gain_low <= gain_high, got {self.gain_low} and {self.gain_high}")


class TaskData(Protocol):
    """Where a training run's clips come from: ``batch`` gives waves ``[batch, 1, samples]``, targets
    ``[batch]`` and a generator for augmentation, all a pure function of ``(seed, step)``."""

    description: str

    def batch(
        self, seed: int, step: int, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor, np.random.Generator]: ...

    def validation(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def record(self) -> dict | None: ...


class KindsData:
    """The clip kinds of :mod:`steerlab.synth` (``samplecnn_24khz``'s task)."""

    description = "clip kind of steerlab.synth"

    def __init__(self, labels: tuple[str, ...], sample_rate: int, seconds: float) -> None:
        self.labels, self.sample_rate, self.seconds = labels, sample_rate, seconds

    def batch(self, seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, np.random.Generator]:
        specs, rng = task.step_specs(seed, step, batch_size, self.labels, self.sample_rate, self.seconds)
        return (*task.render(specs, self.labels), rng)

    def validation(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return task.render(task.held_out_specs(n, seed, self.sample_rate, self.seconds), self.labels)

    def record(self) -> None:
        return None  # a config.json without a task record is this task (format version 1 as first shipped)


class InstrumentData:
    """GM instrument families of rendered notes and chords (:mod:`.instruments`)."""

    description = (
        "General MIDI instrument family of rendered notes and chords (steerlab.builtins.samplecnn.instruments)"
    )

    def __init__(self, spec: InstrumentTask, sample_rate: int) -> None:
        self.spec, self.sample_rate = spec, sample_rate

    def batch(self, seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, np.random.Generator]:
        x, y = self.spec.render(self.spec.training_specs(seed, step, batch_size), self.sample_rate)
        return x, y, np.random.default_rng([seed, step, 1])

    def validation(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.spec.render(self.spec.held_out_specs("validation", n, seed), self.sample_rate)

    def record(self) -> dict:
        return {**self.spec.to_json(), "data": soundfont_record()}


@torch.no_grad()
def evaluate(model: SampleCNN, waves: torch.Tensor, targets: torch.Tensor, batch: int = 32) -> dict:
    """Accuracy, mean cross-entropy and per-label accuracy of ``model`` (put in eval mode). Each
    batch runs where the model is; the logits come back to the CPU, where the figures are computed."""
    from steerlab import devices

    was_training = model.training
    model.eval()
    dev = devices.of(model)
    logits = torch.cat([model(waves[i : i + batch].to(dev)).cpu() for i in range(0, len(waves), batch)])
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


def train_samplecnn(
    model_cfg: SampleCNNConfig,
    cfg: TrainConfig,
    out_dir: Path,
    name: str = "samplecnn_24khz",
    log: Callable[[str], None] = print,
    data: TaskData | None = None,
    device: Any = None,
) -> dict:
    """Train (or resume) into ``out_dir`` on ``data`` (default: the synthetic clip kinds); returns the
    last validation row. ``device``: where the model and its batches live
    (:func:`steerlab.devices.resolve`; None: the CPU); the weights are initialised on the CPU
    first, so a seed gives the same start everywhere, and the clips are rendered on the CPU and
    moved. Raises ``ValueError`` when the model's labels are not the task's."""
    from steerlab import devices

    if data is None:
        data = KindsData(model_cfg.labels, model_cfg.sample_rate, cfg.clip_seconds)
    if isinstance(data, InstrumentData) and (
        data.spec.families != model_cfg.labels or data.spec.seconds != cfg.clip_seconds
    ):
        raise ConfigError("the model's labels and clip length must be the instrument task's families and seconds")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    dev = devices.use(devices.resolve(device or "cpu"))
    model = SampleCNN(name, model_cfg).train().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    record = data.record()
    identity = {"architecture": model_cfg.to_json(), **({"task": record} if record else {})}
    step = resumable.resume(out_dir, model, opt, identity, log)["step"]
    val_x, val_y = data.validation(cfg.val_clips, cfg.seed + task.VAL_SEED_OFFSET)
    n_params = sum(p.numel() for p in model.parameters())
    t0 = time.time()
    losses: list[float] = []
    row: dict = {}
    while step < cfg.steps:
        x, y, rng = data.batch(cfg.seed, step, cfg.batch_size)
        gain = rng.uniform(cfg.gain_low, cfg.gain_high, (len(x), 1, 1)) * rng.choice([-1.0, 1.0], (len(x), 1, 1))
        x, y = x.to(dev) * torch.as_tensor(gain.astype(np.float32), device=dev), y.to(dev)
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
            row = {
                "step": step,
                "lr": lr,
                "train_loss": float(np.mean(losses)),
                "seconds": round(time.time() - t0, 2),
                "val_accuracy": ev["accuracy"],
                "val_loss": ev["loss"],
                "val_accuracy_by_label": ev["accuracy_by_label"],
            }
            losses = []
            resumable.save(out_dir, model, opt, step, row, identity)
            export(model, model_cfg, cfg, out_dir, row, step, n_params, data.description, record)
            log(
                f"step {step}: train loss {row['train_loss']:.3f}, val loss {ev['loss']:.3f}, "
                f"val accuracy {ev['accuracy']:.3f}"
            )
    return row


def export(
    model: SampleCNN,
    model_cfg: SampleCNNConfig,
    cfg: TrainConfig,
    out_dir: Path,
    row: dict,
    step: int,
    n_params: int,
    description: str = KindsData.description,
    task_record: dict | None = None,
) -> None:
    """Write ``model.safetensors`` and ``config.json`` (the shippable artifact; ``task_record``, when
    given, is the task's split and data provenance under the key ``task``)."""
    was_training = model.training
    model.eval()
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
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
            "training": {**asdict(cfg), "step": step, "task": description},
            **({"task": task_record} if task_record else {}),
            "validation": row,
            "versions": versions(),
            "provenance": provenance.record(device=model),
        },
        out_dir / "config.json",
    )
    model.train(was_training)
