"""Held-out test accuracy of a SampleCNN, beside chance and the same architecture at
random initialisation (the figures docs/samplecnn.md reports).

The test clips are ``synth.corpus(clips, seed)`` (every kind in turn, so the classes
are balanced and chance is ``1 / classes``); their seeds share nothing with the
training stream by construction, and when the model carries its training record the
report counts the clips that collide with a training clip anyway (expected: 0).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import task
from .loaders import random_samplecnn
from .model import SampleCNN
from .train import evaluate


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sound near 0 and 1, unlike the normal one)."""
    if n <= 0:
        raise ValueError("need at least one clip")
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
    seen = task.training_specs(training["seed"], training["step"], training["batch_size"], model.labels,
                               model.sample_rate, training["clip_seconds"])
    return sum((s.kind, s.seed) in test for s in seen)


@torch.no_grad()
def confusion(model: SampleCNN, waves: torch.Tensor, targets: torch.Tensor) -> list[list[int]]:
    """Rows: true label; columns: predicted label (order of ``model.labels``)."""
    pred = torch.cat([model(waves[i : i + 32]).argmax(1) for i in range(0, len(waves), 32)])
    k = len(model.labels)
    counts = torch.zeros(k, k, dtype=torch.long)
    counts.index_put_((targets, pred), torch.ones_like(targets), accumulate=True)
    return counts.tolist()


def evaluate_model(model: SampleCNN, clips: int = 700, seed: int = task.TEST_SEED, seconds: float = 1.0) -> dict[str, Any]:
    specs = task.held_out_specs(clips, seed, model.sample_rate, seconds)
    waves, targets = task.render(specs, model.labels)
    trained = evaluate(model, waves, targets)
    random_model = random_samplecnn(f"{model.name} (random init)", model.cfg, seed=0)
    baseline = evaluate(random_model, waves, targets)
    correct = round(trained["accuracy"] * len(targets))
    shares = torch.bincount(targets, minlength=len(model.labels)).float() / len(targets)
    return {
        "model": model.name,
        "weights_sha256": model.weights_hash(),
        "config": model.config,
        "test_set": {"generator": "steerlab.synth.corpus", "clips": clips, "seed": seed, "seconds": seconds,
                     "clips_shared_with_training": _overlap(model, specs)},
        "accuracy": trained["accuracy"],
        "accuracy_ci95": list(wilson_interval(correct, len(targets))),
        "loss": trained["loss"],
        "accuracy_by_label": trained["accuracy_by_label"],
        "confusion": {"labels": list(model.labels), "rows_true_columns_predicted": confusion(model, waves, targets)},
        "chance": 1.0 / len(model.labels),
        "majority_class": float(shares.max()),
        "random_init": {"seed": 0, "accuracy": baseline["accuracy"], "loss": baseline["loss"],
                        "weights_sha256": random_model.weights_hash()},
    }
