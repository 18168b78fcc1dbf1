"""The classification task: which kind of synthetic clip is this?

Labels are the clip kinds of :mod:`steerlab.synth` (tone, harmonic, chord, melody,
noise_burst, percussion, mixture). Telling them apart needs exactly the variables
the partial-steering research asks about: how many partials there are (tone vs
harmonic vs chord), whether they are harmonic or noise-like, and how they change
over time (harmonic vs melody, noise burst vs percussion). Every clip is a pure
function of its :class:`~steerlab.synth.ClipSpec`, so any split is reproducible
from seeds alone.

Seeds: training batches come from ``default_rng([seed, step])``, validation from
``synth.corpus(n, seed + 10000)`` and the held-out test set from
``synth.corpus(n, 12345)``; :func:`training_specs` regenerates the training
specs so an evaluation can count clips shared with training (a collision of two
31-bit seeds of the same kind).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from steerlab import synth
from steerlab.errors import ConfigError

VAL_SEED_OFFSET = 10_000
TEST_SEED = 12_345


def step_specs(
    seed: int, step: int, batch_size: int, labels: Sequence[str], sample_rate: int, seconds: float
) -> tuple[list[synth.ClipSpec], np.random.Generator]:
    """The clips of one training step (balanced in expectation) and the step's generator,
    a pure function of ``(seed, step)`` so a resumed run sees the same data."""
    rng = np.random.default_rng([seed, step])
    kinds = rng.integers(0, len(labels), batch_size)
    seeds = rng.integers(0, 2**31, batch_size)
    return [synth.ClipSpec(labels[k], int(s), sample_rate, seconds) for k, s in zip(kinds, seeds)], rng


def training_specs(
    seed: int, steps: int, batch_size: int, labels: Sequence[str], sample_rate: int, seconds: float
) -> Iterable[synth.ClipSpec]:
    for step in range(steps):
        yield from step_specs(seed, step, batch_size, labels, sample_rate, seconds)[0]


def held_out_specs(n: int, seed: int, sample_rate: int, seconds: float) -> list[synth.ClipSpec]:
    """``n`` clips cycling through every kind (so classes are balanced within one clip per kind)."""
    return synth.corpus(n, seed, sample_rate, seconds)


def render(specs: Sequence[synth.ClipSpec], labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Waves ``[n, 1, samples]`` and integer targets ``[n]`` of ``specs``."""
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted({s.kind for s in specs} - set(index))
    if unknown:
        raise ConfigError(f"clip kinds {unknown} are not labels of this model ({', '.join(labels)})")
    waves = torch.from_numpy(np.stack([synth.synthesize(s) for s in specs]))[:, None]
    targets = torch.tensor([index[s.kind] for s in specs], dtype=torch.long)
    return waves, targets
