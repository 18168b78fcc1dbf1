"""Learning-rate schedules shared by the training recipes the plugins ship."""

from __future__ import annotations

import math


def cosine_lr(step: int, steps: int, lr: float, min_lr: float, warmup: int = 0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``lr`` to ``min_lr`` at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))
