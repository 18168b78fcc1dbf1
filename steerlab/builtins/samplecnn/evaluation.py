"""Held-out test accuracy of a SampleCNN, beside chance and the same architecture at
random initialisation (the figures docs/samplecnn.md reports).

Synthetic clip kinds (:func:`evaluate_model`): the test clips are
``synth.corpus(clips, seed)`` (every kind in turn, so the classes are balanced and
chance is ``1 / classes``); their seeds share nothing with the training stream by
construction, and when the model carries its training record the report counts the
clips that collide with a training clip anyway (expected: 0).

Instrument families (:func:`evaluate_instruments`): one result per held-out set (by
note, by instrument, by both, and fresh draws of the training programs and pitches
for reference), each with a percentile-bootstrap 95% interval, beside chance and
random initialisation; the training stream is regenerated from the record and every
test clip is checked against the programs and pitch classes it actually used.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from steerlab import devices
from steerlab.errors import ConfigError

from . import instruments, task
from .loaders import random_samplecnn
from .model import SampleCNN
from .train import evaluate


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sound near 0 and 1, unlike the normal one)."""
    if n <= 0:
        raise ConfigError("need at least one clip")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _overlap(model: SampleCNN, specs: list) -> int | None:
    record = getattr(model, "training_record", None)
    training = (record or {}).get("training")
    if not training:
        return None
    test = {(s.kind, s.seed) for s in specs}
    seen = task.training_specs(
        training["seed"],
        training["step"],
        training["batch_size"],
        model.labels,
        model.sample_rate,
        training["clip_seconds"],
    )
    return sum((s.kind, s.seed) in test for s in seen)


@torch.no_grad()
def confusion(model: SampleCNN, waves: torch.Tensor, targets: torch.Tensor) -> list[list[int]]:
    """Rows: true label; columns: predicted label (order of ``model.labels``)."""
    pred = _predict(model, waves)
    k = len(model.labels)
    counts = torch.zeros(k, k, dtype=torch.long)
    counts.index_put_((targets, pred), torch.ones_like(targets), accumulate=True)
    return counts.tolist()


def evaluate_model(
    model: SampleCNN, clips: int = 700, seed: int = task.TEST_SEED, seconds: float = 1.0
) -> dict[str, Any]:
    specs = task.held_out_specs(clips, seed, model.sample_rate, seconds)
    waves, targets = task.render(specs, model.labels)
    trained = evaluate(model, waves, targets)
    random_model = random_samplecnn(f"{model.name} (random init)", model.cfg, seed=0).to(devices.of(model))
    baseline = evaluate(random_model, waves, targets)
    correct = round(trained["accuracy"] * len(targets))
    shares = torch.bincount(targets, minlength=len(model.labels)).float() / len(targets)
    return {
        "model": model.name,
        "weights_sha256": model.weights_hash(),
        "config": model.config,
        "test_set": {
            "generator": "steerlab.synth.corpus",
            "clips": clips,
            "seed": seed,
            "seconds": seconds,
            "clips_shared_with_training": _overlap(model, specs),
        },
        "accuracy": trained["accuracy"],
        "accuracy_ci95": list(wilson_interval(correct, len(targets))),
        "loss": trained["loss"],
        "accuracy_by_label": trained["accuracy_by_label"],
        "confusion": {"labels": list(model.labels), "rows_true_columns_predicted": confusion(model, waves, targets)},
        "chance": 1.0 / len(model.labels),
        "majority_class": float(shares.max()),
        "random_init": {
            "seed": 0,
            "accuracy": baseline["accuracy"],
            "loss": baseline["loss"],
            "weights_sha256": random_model.weights_hash(),
        },
        "compute": devices.record(model),
    }


def bootstrap_interval(
    correct: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval of a mean (Efron & Tibshirani 1993, ch. 13): resample the
    ``[n]`` per-clip scores with replacement ``n_boot`` times; the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the resampled means. Raises ``ValueError`` on an empty array."""
    correct = np.asarray(correct, dtype=np.float64)
    if correct.size == 0:
        raise ConfigError("need at least one clip")
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, correct.size, (n_boot, correct.size))].mean(axis=1)
    return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))


@torch.no_grad()
def _correct(model: SampleCNN, waves: torch.Tensor, targets: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    pred = _predict(model, waves)
    return (pred == targets).numpy(), pred


@torch.no_grad()
def _predict(model: SampleCNN, waves: torch.Tensor) -> torch.Tensor:
    """Predicted labels ``[clips]`` (CPU) of ``waves [clips, channels, samples]`` (CPU), 32 clips per
    batch, each batch run where the model is."""
    dev = devices.of(model)
    return torch.cat([model(waves[i : i + 32].to(dev)).argmax(1).cpu() for i in range(0, len(waves), 32)])


def training_coverage(spec: instruments.InstrumentTask, training: dict) -> dict[str, set]:
    """Programs, pitch classes and (program, keys) pairs the training stream of ``training``
    (a config.json's ``training`` record) actually used, regenerated from its seed."""
    programs: set[int | None] = set()
    pitch_classes: set[int] = set()
    sounds: set[tuple[int | None, tuple[int, ...]]] = set()
    for s in spec.all_training_specs(training["seed"], training["step"], training["batch_size"]):
        programs.add(s.program)
        pitch_classes.update(n.pitch % 12 for n in s.notes)
        sounds.add((s.program, tuple(n.pitch for n in s.notes)))
    return {"programs": programs, "pitch_classes": pitch_classes, "sounds": sounds}


def _shared(specs: list, coverage: dict[str, set] | None) -> dict[str, int] | None:
    if coverage is None:
        return None
    return {
        "program": sum(s.program in coverage["programs"] for s in specs),
        "pitch_class": sum(any(n.pitch % 12 in coverage["pitch_classes"] for n in s.notes) for s in specs),
        "program_and_keys": sum((s.program, tuple(n.pitch for n in s.notes)) in coverage["sounds"] for s in specs),
    }


def evaluate_instruments(
    model: SampleCNN,
    clips: int = 260,
    seed: int = instruments.TEST_SEED,
    splits: tuple[str, ...] = instruments.SPLITS,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """Accuracy of an instrument-family SampleCNN on ``clips`` fresh clips of each held-out set.

    Per set: accuracy with a bootstrap 95% interval, per-family accuracy, the confusion matrix,
    the same for the architecture at random initialisation (seed 0), and how many clips share a
    program, a pitch class, or a program playing the same keys with the regenerated training
    stream (``null`` without a training record). ``validation`` here is fresh draws (this
    ``seed``) of the training programs and pitch classes: the in-distribution reference.
    Raises ``ValueError`` when ``model`` was not trained on the instrument task.
    """
    spec = model.instrument_task
    if spec is None:
        raise ConfigError(f"{model.name} was not trained on the instrument task")
    if clips <= 0:
        raise ConfigError(f"clips must be positive, got {clips}", parameter="clips")
    random_model = random_samplecnn(f"{model.name} (random init)", model.cfg, seed=0).to(devices.of(model))
    training = (model.training_record or {}).get("training")
    coverage = training_coverage(spec, training) if training else None
    out: dict[str, Any] = {}
    for split in splits:
        specs = spec.held_out_specs(split, clips, seed)
        waves, targets = spec.render(specs, model.sample_rate)
        correct, pred = _correct(model, waves, targets)
        base, _ = _correct(random_model, waves, targets)
        counts = torch.zeros(len(model.labels), len(model.labels), dtype=torch.long)
        counts.index_put_((targets, pred), torch.ones_like(targets), accumulate=True)
        t = targets.numpy()
        programs, pcs = spec.split_axes(split)
        out[split] = {
            "clips": clips,
            "programs": sorted(p for v in programs.values() for p in v),
            "pitch_classes": list(pcs),
            "accuracy": float(correct.mean()),
            "accuracy_ci95": list(bootstrap_interval(correct, n_boot)),
            "accuracy_by_label": {name: _mean(correct[t == i]) for i, name in enumerate(model.labels)},
            # null for a kind the set has no clip of (kinds alternate every len(labels) clips)
            "accuracy_by_kind": {k: _mean(correct[[s.kind == k for s in specs]]) for k in instruments.KINDS},
            "by_program": _by_program(specs, correct, pred, model.labels),
            "confusion": counts.tolist(),
            "random_init": {"accuracy": float(base.mean()), "accuracy_ci95": list(bootstrap_interval(base, n_boot))},
            "clips_shared_with_training": _shared(specs, coverage),
        }
    return {
        "model": model.name,
        "weights_sha256": model.weights_hash(),
        "config": model.config,
        "task": spec.to_json(),
        "test_set": {
            "generator": "steerlab.builtins.samplecnn.instruments",
            "clips_per_split": clips,
            "seed": seed,
            "seconds": spec.seconds,
            "bootstrap_resamples": n_boot,
            **instruments.soundfont_record(),
        },
        "soundfont_matches_training": _soundfont_matches(model),
        "chance": 1.0 / len(model.labels),
        "labels": list(model.labels),
        "random_init_weights_sha256": random_model.weights_hash(),
        "splits": out,
        "compute": devices.record(model),
    }


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def _by_program(specs: list, correct: np.ndarray, pred: torch.Tensor, labels: tuple[str, ...]) -> dict[str, dict]:
    """Per GM program: clips, accuracy and the family predicted most often (ties: the first label)."""
    out = {}
    for program in sorted({s.program for s in specs}):
        rows = [i for i, s in enumerate(specs) if s.program == program]
        votes = torch.bincount(pred[rows], minlength=len(labels))
        out[str(program)] = {
            "family": specs[rows[0]].family,
            "clips": len(rows),
            "accuracy": float(correct[rows].mean()),
            "most_predicted": labels[int(votes.argmax())],
        }
    return out


def _soundfont_matches(model: SampleCNN) -> bool | None:
    recorded = ((model.training_record or {}).get("task") or {}).get("data", {}).get("soundfont_sha256")
    return None if recorded is None else recorded == instruments.soundfont_record()["soundfont_sha256"]
