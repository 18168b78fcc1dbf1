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

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from steerlab import metrics, provenance, resumable, synth
from steerlab.artifacts import atomic_save_safetensors, atomic_write_json
from steerlab.errors import ConfigError, CorpusBuildError
from steerlab.schedules import cosine_lr

from .codec import CodecConfig, build_codec

if TYPE_CHECKING:
    from encodec.model import EncodecModel


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
    # Audio files or folders of them (real music, rendered instruments): each is one source,
    # mixed with the synthetic corpus; batch items draw the synthetic corpus with probability
    # ``synth_share`` and each data source equally often otherwise.
    data: tuple[str, ...] = ()
    synth_share: float = 1.0
    # Held-out audio files or folders, each validated separately (1 s windows, quiet ones skipped).
    val_data: tuple[str, ...] = ()
    val_windows: int = 48
    # unreadable, empty or NaN files under data / val_data: skipped (and logged) instead of failing
    skip_bad_files: bool = False
    device: str = "cpu"
    amp: str = "none"  # "bf16": encoder and decoder under bfloat16 autocast; quantizer and losses in float32
    # Wall-clock budget: after ``rate_probe_steps`` the step rate is measured and the total number of
    # steps (and so the cosine schedule) is set to what fits; recorded as ``planned_steps``.
    time_budget_s: float | None = None
    rate_probe_steps: int = 100
    export_dtype: str = "float32"  # "float16" halves the shipped file; loading casts back to float32

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or self.clip_seconds <= 0:
            raise ConfigError(
                "steps, batch_size and clip_seconds must be positive", parameter=("steps", "batch_size", "clip_seconds")
            )
        if not 0.0 <= self.quantized_share <= 1.0:
            raise ConfigError("quantized_share must be in [0, 1]", parameter="quantized_share")
        if not 0.0 <= self.synth_share <= 1.0 or (not self.data and self.synth_share < 1.0):
            raise ConfigError("synth_share must be in [0, 1], and 1 when no data is given", parameter="synth_share")
        if self.amp not in ("none", "bf16"):
            raise ConfigError(f"amp must be 'none' or 'bf16', got {self.amp!r}", parameter="amp")
        if self.export_dtype not in ("float32", "float16"):
            raise ConfigError(f"export_dtype must be 'float32' or 'float16', got {self.export_dtype!r}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError("time_budget_s must be positive", parameter="time_budget_s")
        # every other number a flag sets (issue 10: --lr -1 reached torch's optimiser as a traceback)
        for name in ("pool_clips", "val_clips", "val_every", "val_windows", "rate_probe_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}", parameter=name)
        if not (math.isfinite(self.lr) and math.isfinite(self.min_lr) and 0 < self.min_lr <= self.lr):
            raise ConfigError(
                f"need 0 < min_lr <= lr, got min_lr {self.min_lr} and lr {self.lr}", parameter=("min_lr", "lr")
            )
        for name in ("log_mag_weight", "wave_weight", "spectral_weight", "si_sdr_weight"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}", parameter=name)
        if not math.isfinite(self.clip_seconds):
            raise ConfigError(f"clip_seconds must be finite, got {self.clip_seconds!r}", parameter="clip_seconds")

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["data"], d["val_data"] = list(self.data), list(self.val_data)
        return d


# settings a resume must not change: each shapes the weights or the validation curve. ``steps`` may
# grow (a larger value resumes and stretches the cosine schedule, docs/embedded-model.md); where the
# run is checked and exported (device, val_every, export_dtype, skip_bad_files) may change.
FIXED_ON_RESUME = (
    "batch_size", "clip_seconds", "lr", "min_lr", "pool_clips", "val_clips", "seed", "log_mag_weight",
    "wave_weight", "spectral_weight", "si_sdr_weight", "quantized_share", "data", "synth_share", "val_data",
    "val_windows", "amp", "time_budget_s", "rate_probe_steps",
)  # fmt: skip


def _recorded_settings(out_dir: Path) -> tuple[dict[str, Any] | None, str]:
    """The training settings the run folder's checkpoint was made with, and where they were read:
    the checkpoint's own record, else (runs before it kept one) ``config.json``'s ``training``;
    ``(None, why)`` when neither holds them."""
    state = resumable.read_checkpoint(out_dir / resumable.CHECKPOINT)
    if isinstance(state["extra"].get("training"), dict):
        return state["extra"]["training"], "the checkpoint"
    config = out_dir / "config.json"
    try:
        recorded = json.loads(config.read_text()).get("training")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, dict) and recorded.get("step") == state["step"]:
        return recorded, str(config)
    return None, "neither the checkpoint nor config.json (at the checkpoint's step) records them"


def check_resume(out_dir: Path, train_cfg: TrainConfig, log=print) -> None:
    """Refuse to resume ``out_dir`` with other training settings than it was started with.

    Raises :class:`ConfigError` (one line naming every setting that differs, recorded and now)
    when a :data:`FIXED_ON_RESUME` setting differs or ``steps`` shrinks; does nothing for a folder
    without a checkpoint. Settings the run did not record are logged as unchecked."""
    if not (out_dir / resumable.CHECKPOINT).exists():
        return
    recorded, where = _recorded_settings(out_dir)
    if recorded is None:
        log(f"{out_dir}: cannot check the training settings on resume: {where}")
        return
    now = train_cfg.to_json()
    differ = [k for k in FIXED_ON_RESUME if k in recorded and recorded[k] != now[k]]
    changes = [f"{k} {recorded[k]!r} -> {now[k]!r}" for k in differ]
    if isinstance(recorded.get("steps"), int) and train_cfg.steps < recorded["steps"]:
        differ.insert(0, "steps")
        changes.insert(0, f"steps {recorded['steps']} -> {train_cfg.steps} (on resume steps may only grow)")
    if changes:
        raise ConfigError(
            f"{out_dir} was trained with other settings ({where}): {'; '.join(changes)}; rerun with the "
            "recorded values or train into a new -o folder",
            parameter=tuple(differ),
        )
    unrecorded = [k for k in FIXED_ON_RESUME if k not in recorded]
    if unrecorded:
        log(f"{out_dir}: the run did not record {', '.join(unrecorded)}: not checked on resume")


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


class FileSource:
    """Decoded audio files as one pool of random crops: a file is drawn in proportion to its number of
    valid crop starts, then a start uniformly (so every sample of the source is equally likely)."""

    def __init__(
        self,
        spec: str,
        sample_rate: int,
        channels: int,
        device: str,
        skip_bad_files: bool = False,
        parameter: str = "data",
    ) -> None:
        """Every file is checked first (:func:`steerlab.capture.check_audio_files`): an unreadable,
        empty or NaN file raises :class:`steerlab.capture.BadFilesError` (one line) unless
        ``skip_bad_files``, which skips it (listed in :attr:`skipped`). ``parameter``: the
        :class:`TrainConfig` field ``spec`` came from (``data`` or ``val_data``), which errors name."""
        from steerlab.audio import load
        from steerlab.capture import check_audio_files
        from steerlab.corpus import _expand

        self.name = Path(spec).name
        self.paths, self.skipped = check_audio_files(_expand([spec]), skip_bad_files, f"{parameter} {spec}", parameter)
        if not self.paths:
            raise CorpusBuildError(
                f"{parameter} {spec}: no usable audio file (all {len(self.skipped)} skipped)", parameter=parameter
            )
        self.files = [torch.from_numpy(load(p, sample_rate, channels)[0]).to(device) for p in self.paths]
        self.seconds = sum(f.shape[-1] for f in self.files) / sample_rate

    def crops(self, rng: np.random.Generator, n: int, crop: int) -> list[torch.Tensor]:
        valid = np.array([max(0, f.shape[-1] - crop + 1) for f in self.files], dtype=float)
        if valid.sum() == 0:
            raise CorpusBuildError(
                f"no file of data source {self.name} is longer than a {crop}-sample crop; "
                "pass longer audio or a smaller clip_seconds",
                parameter="clip_seconds",
            )
        which = rng.choice(len(self.files), size=n, p=valid / valid.sum())
        return [self.files[i][:, s : s + crop] for i, s in ((i, int(rng.integers(0, valid[i]))) for i in which)]

    def windows(self, count: int, length: int) -> torch.Tensor:
        """Up to ``count`` 1 s windows spread evenly over the files, quiet ones (< -45 dBFS) skipped."""
        from steerlab.corpus import loud_windows

        windows = loud_windows([f.cpu() for f in self.files], count, length)
        if not windows:
            raise CorpusBuildError(
                f"validation source {self.name} has no 1 s window above -45 dBFS; give val_data a folder holding music",
                parameter="val_data",
            )
        return torch.stack(windows).to(self.files[0].device)


def _autocast(device: str, amp: str):
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp == "bf16")


def forward_paths(model: EncodecModel, x: torch.Tensor, quantized: bool, n_q: int | None = None, amp: str = "none"):
    """Encode, optionally quantize, decode; trims to the input length. Returns (y, penalty).

    With ``amp="bf16"`` the encoder and decoder run under bfloat16 autocast; the quantizer's
    nearest-codeword search and the returned output stay in float32."""
    with _autocast(str(x.device), amp):
        z = model.encoder(x)
    z = z.float()
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
    with _autocast(str(x.device), amp):
        y = model.decoder(z)[..., : x.shape[-1]]
    return y.float(), penalty


def evaluate(model: EncodecModel, clips: torch.Tensor, batch: int = 16, amp: str = "none") -> dict[str, float]:
    """SI-SDR (dB) and MR-STFT distance of both decode paths on ``clips``, medians and means."""
    from .evaluation import clip_metrics

    was_training = model.training
    model.eval()
    out: dict[str, list[float]] = {}
    for path, quant in (("cont", False), ("quant", True)):

        def decode(x: torch.Tensor, quant: bool = quant) -> torch.Tensor:
            return forward_paths(model, x, quant, amp=amp)[0]

        out[f"si_sdr_{path}"], out[f"mrstft_{path}"] = clip_metrics(decode, clips, batch)
    model.train(was_training)
    res = {f"{k}_mean": float(np.mean(v)) for k, v in out.items()}
    res.update({f"{k}_median": float(np.median(v)) for k, v in out.items()})
    return res


def _validate(model, val_sets: dict[str, torch.Tensor], amp: str) -> dict[str, float]:
    """Synthetic validation under the historical keys, each held-out data source under ``key@source``."""
    ev = evaluate(model, val_sets["synth"], amp=amp)
    for name, clips in val_sets.items():
        if name != "synth":
            ev.update({f"{k}@{name}": v for k, v in evaluate(model, clips, amp=amp).items() if "median" in k})
    return ev


def _batch(
    train_cfg: TrainConfig, rng: np.random.Generator, pool: torch.Tensor, sources: list[FileSource], crop: int
) -> torch.Tensor:
    """A batch of crops: each item from the synthetic pool with probability ``synth_share``, else from a
    data source drawn uniformly; then one random gain per item (0.3 to 1.5)."""
    n = train_cfg.batch_size
    from_synth = rng.random(n) < train_cfg.synth_share if sources else np.ones(n, dtype=bool)
    items: list[torch.Tensor] = []
    k = int(from_synth.sum())
    if k:
        idx = rng.integers(0, len(pool), k)
        starts = rng.integers(0, pool.shape[-1] - crop + 1, k)
        items += [pool[i, :, s : s + crop] for i, s in zip(idx, starts)]
    which = rng.integers(0, max(1, len(sources)), n - k)
    for j in range(len(sources)):
        m = int((which == j).sum())
        if m:
            items += sources[j].crops(rng, m, crop)
    x = torch.stack(items)
    return x * torch.from_numpy(rng.uniform(0.3, 1.5, (n, 1, 1)).astype(np.float32)).to(x.device)


def train_codec(codec_cfg: CodecConfig, train_cfg: TrainConfig, out_dir: Path, log=print) -> dict[str, float]:
    """Train (or resume) a codec into ``out_dir``; returns the final validation metrics.

    The ``data`` and ``val_data`` files are checked and decoded before anything is written: a bad
    file is one :class:`steerlab.capture.BadFilesError` line and no run folder (unless
    ``skip_bad_files``)."""
    sources = [
        FileSource(d, codec_cfg.sample_rate, codec_cfg.channels, train_cfg.device, train_cfg.skip_bad_files)
        for d in train_cfg.data
    ]
    length = codec_cfg.sample_rate - codec_cfg.sample_rate % codec_cfg.hop_length
    val_data = {
        Path(d).name: FileSource(
            d, codec_cfg.sample_rate, codec_cfg.channels, train_cfg.device, train_cfg.skip_bad_files, "val_data"
        ).windows(train_cfg.val_windows, length)
        for d in train_cfg.val_data
    }
    for src in sources:
        log(
            f"data source {src.name}: {len(src.files)} files, {src.seconds / 60:.1f} min"
            + (f"; {len(src.skipped)} bad files skipped (first: {src.skipped[0]['reason']})" if src.skipped else "")
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    device = train_cfg.device
    torch.manual_seed(train_cfg.seed)
    random.seed(train_cfg.seed)
    model = build_codec(codec_cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr, betas=(0.8, 0.99))
    identity = {"architecture": codec_cfg.to_json()}
    check_resume(out_dir, train_cfg, log)
    state = resumable.resume(out_dir, model, opt, identity, log)
    step = state["step"]
    # a schedule fitted to a time budget is kept on resume; otherwise --steps decides (a larger value
    # resumes and stretches the cosine schedule, as before)
    planned = int(state["planned_steps"]) if train_cfg.time_budget_s and "planned_steps" in state else train_cfg.steps
    rng = np.random.default_rng(train_cfg.seed)
    if step:
        rng = np.random.default_rng([train_cfg.seed, step])
        torch.manual_seed(train_cfg.seed + step)
    pool = _pool(codec_cfg, train_cfg.pool_clips, train_cfg.seed, 1.0).to(device)
    val_sets = {"synth": _pool(codec_cfg, train_cfg.val_clips, train_cfg.seed + 10_000, 1.0).to(device), **val_data}
    crop = int(train_cfg.clip_seconds * codec_cfg.sample_rate)
    crop -= crop % codec_cfg.hop_length
    t0 = time.time()
    probe_at = step + train_cfg.rate_probe_steps if train_cfg.time_budget_s and not state.get("planned_steps") else None
    losses: list[float] = []
    while step < planned:
        x = _batch(train_cfg, rng, pool, sources, crop)
        quant = bool(rng.random() < train_cfg.quantized_share)
        y, penalty = forward_paths(model, x, quant, amp=train_cfg.amp)
        loss = (
            train_cfg.wave_weight * (y - x).abs().mean()
            + train_cfg.spectral_weight * spectral_loss(y, x, train_cfg.log_mag_weight)
            - train_cfg.si_sdr_weight * metrics.si_sdr(y, x).clamp(max=40).mean()
            + penalty
        )
        lr = cosine_lr(step, planned, train_cfg.lr, train_cfg.min_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step == probe_at and train_cfg.time_budget_s:  # (probe_at is set only with a budget)
            rate = train_cfg.rate_probe_steps / (time.time() - t0)
            planned = min(train_cfg.steps, step + int(rate * (train_cfg.time_budget_s - (time.time() - t0))))
            log(f"{rate:.1f} steps/s: {planned} steps fit the {train_cfg.time_budget_s:.0f} s budget")
        if step % train_cfg.val_every == 0 or step == planned:
            ev = _validate(model, val_sets, train_cfg.amp)
            row = {"step": step, "lr": lr, "train_loss": float(np.mean(losses)), "seconds": time.time() - t0, **ev}
            losses = []
            resumable.save(
                out_dir, model, opt, step, row, identity, {"planned_steps": planned, "training": train_cfg.to_json()}
            )
            log(
                f"step {step}: loss {row['train_loss']:.4f} val SI-SDR cont {ev['si_sdr_cont_median']:.2f} dB "
                f"quant {ev['si_sdr_quant_median']:.2f} dB"
                + "".join(
                    f"; {k.split('@')[1]} {v:.2f} dB" for k, v in ev.items() if k.startswith("si_sdr_cont_median@")
                )
            )
            export(model.eval(), codec_cfg, train_cfg, out_dir, ev, step, planned)
            model.train()
    return _validate(model, val_sets, train_cfg.amp)


def export(
    model,
    codec_cfg: CodecConfig,
    train_cfg: TrainConfig,
    out_dir: Path,
    ev: dict,
    step: int,
    planned_steps: int | None = None,
) -> None:
    """Write ``model.safetensors`` and ``config.json`` (the shippable artifact)."""
    dtype = getattr(torch, train_cfg.export_dtype)
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    atomic_save_safetensors(state, out_dir / "model.safetensors")
    atomic_write_json(
        {
            "format": "steerlab-codec",
            "version": 1,
            "codec": codec_cfg.to_json(),
            "training": {**train_cfg.to_json(), "step": step, "planned_steps": planned_steps or train_cfg.steps},
            "validation": ev,
            "provenance": provenance.record(device=train_cfg.device),
        },
        out_dir / "config.json",
    )
