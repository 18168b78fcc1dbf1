"""What one ``steerlab survey`` run measures, and with how much data: a frozen, self-checking config.

:class:`Settings` holds the sizes (clips, vectors, epochs, seeds, draws of every chance reference);
``--quick`` picks :data:`QUICK`, otherwise :data:`FULL`; tests pass smaller ones. Every number that
shapes a result is in :meth:`SurveyConfig.to_json`, and its hash is the run's config hash.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from steerlab import validation as check


@dataclass(frozen=True)
class Settings:
    """Sizes of a survey. ``clips``: generated clips of ``clip_seconds`` when no ``--data``;
    ``max_vectors``: vectors captured per layer; ``epochs``/``dictionary_seeds``: the SAEs learned
    per layer (one per seed, TopK, ``size_per_channel`` x channels latents, at most ``max_size``);
    ``pairs``: pairs per concept for the probes (the last ``test_share`` of seeds held out);
    ``draws``: draws of every random-direction and shuffled-label reference; ``top_features``:
    features whose fragments are measured, ``fragments`` fragments each, at most
    ``fragment_samples`` long."""

    clips: int = 24
    clip_seconds: float = 1.0
    max_vectors: int = 20_000
    epochs: int = 10
    dictionary_seeds: tuple[int, ...] = (0, 1, 2)
    size_per_channel: int = 4
    max_size: int = 512
    pairs: int = 32
    test_share: float = 0.25
    draws: int = 100
    top_features: int = 5
    fragments: int = 16
    fragment_samples: int = 4096
    coverage_threshold: float = 0.7
    active_rel: float = 0.5

    def __post_init__(self) -> None:
        for name in ("clips", "max_vectors", "epochs", "size_per_channel", "max_size", "top_features", "fragments"):
            check.integer(name, getattr(self, name), low=1)
        check.integer("pairs", self.pairs, low=4)
        check.integer("draws", self.draws, low=2)
        check.integer("fragment_samples", self.fragment_samples, low=64)
        check.number("clip_seconds", self.clip_seconds, low=0, low_open=True, unit="s")
        check.number("test_share", self.test_share, low=0, high=1, low_open=True, high_open=True)
        check.number("coverage_threshold", self.coverage_threshold, low=-1, high=1)
        check.fraction("active_rel", self.active_rel)
        seeds = check.sequence("dictionary_seeds", self.dictionary_seeds, nonempty=True)
        for i, s in enumerate(seeds):
            check.integer(f"dictionary_seeds[{i}]", s)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["dictionary_seeds"] = list(self.dictionary_seeds)
        return d


FULL = Settings()
QUICK = Settings(
    clips=6, max_vectors=3000, epochs=3, dictionary_seeds=(0, 1), pairs=24, draws=30, top_features=3, fragments=8
)


@dataclass(frozen=True)
class SurveyConfig:
    """``models``: registered names (None: the default model); ``data``: corpus specs (folders,
    files, ``synth:N``; empty: ``synth:<clips>``); ``layers``: names or aliases for every model
    (empty: first conv, last conv, latent and quantized codes where the model has them);
    ``battery``: ``steerlab steerability`` run folders to read verdicts from; ``concepts``: which
    registered concepts to probe (empty: all); ``seed``: every draw's seed; ``device``: where the
    models and the SAEs run (:func:`steerlab.devices.resolve`; recorded, not hashed)."""

    models: tuple[str | None, ...] = (None,)
    data: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    battery: tuple[str, ...] = ()
    concepts: tuple[str, ...] = ()
    quick: bool = False
    seed: int = 0
    settings: Settings | None = None
    device: Any = "auto"

    def __post_init__(self) -> None:
        check.sequence("models", self.models, nonempty=True)
        check.integer("seed", self.seed)
        if self.settings is None:
            object.__setattr__(self, "settings", QUICK if self.quick else FULL)

    @property
    def sizes(self) -> Settings:
        return self.settings if self.settings is not None else FULL

    @property
    def corpus_specs(self) -> tuple[str, ...]:
        return self.data or (f"synth:{self.sizes.clips}",)

    def to_json(self) -> dict[str, Any]:
        return {
            "models": [m if m is not None else "default" for m in self.models],
            "data": list(self.corpus_specs),
            "layers": list(self.layers),
            "battery": list(self.battery),
            "concepts": list(self.concepts),
            "quick": self.quick,
            "seed": self.seed,
            "settings": self.sizes.to_json(),
        }
