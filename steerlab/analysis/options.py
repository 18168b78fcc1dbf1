"""Options of ``steerlab analyze``: one frozen dataclass that validates itself.

Every threshold is here, and the whole object is written into ``report.json``, so a
report says exactly what was measured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from steerlab import validation as check
from steerlab.errors import ConfigError

#: the analyses of issue 3 section 4, in report order (letters a..j)
ANALYSES = (
    "coverage",
    "reconstruction",
    "usage",
    "redundancy",
    "stability",
    "data",
    "weights",
    "locality",
    "fragments",
    "trajectories",
)
LETTERS = dict(zip(ANALYSES, "abcdefghij"))
BY_LETTER = {v: k for k, v in LETTERS.items()}


def resolve_names(names: Any) -> tuple[str, ...]:
    """Analysis names or letters (``"a"``, ``"coverage"``) as names in report order."""
    out = set()
    for n in names:
        n = str(n).strip().lower()
        if n in BY_LETTER:
            out.add(BY_LETTER[n])
        elif n in ANALYSES:
            out.add(n)
        else:
            raise ConfigError(
                f"unknown analysis {n!r}.{check.did_you_mean(n, ANALYSES)} Valid values: "
                f"{', '.join(ANALYSES)} or letters a-j",
                parameter="only",
            )
    return tuple(a for a in ANALYSES if a in out)


@dataclass(frozen=True)
class AnalysisOptions:
    """What ``steerlab analyze`` measures and with which thresholds.

    ``max_vectors``: vectors kept from each capture (seeded random subset);
    ``coverage_threshold``: cosine a vector's nearest direction must reach (a);
    ``active_rel``: a direction is *strongly active* in a vector when its code is at least
    this fraction of the vector's largest code (c, d, e, f, g, i);
    ``usage_floor``: usage share above which a direction counts as used;
    ``top_n``: the most used directions compared (b, d, e, f, h);
    ``seeds``: SAE seeds retrained for stability (e); the first also trains f and g;
    ``epochs``: epochs of those retrainings (None: the dictionary's own);
    ``reference_clips``: clips of ``noise:N`` and ``flat:N`` (f);
    ``random_draws``: draws averaged for every random baseline;
    ``dl_vectors``: vectors the classical dictionary-learning baseline is fitted on (b);
    ``redundancy_threshold``: |cosine| above which two directions count as a redundant pair (d);
    ``fragment_latents`` / ``fragments_per_latent`` / ``fragment_samples`` (None: auto,
    ``max(256, 4 x span)``) / ``band_hz`` (None: 3 x fs / fragment length) (i);
    ``trajectory_frames`` / ``sine_hz`` / ``trajectory_clip`` (j: an audio file of the user's whose
    loudest stretch is the music trajectory; None: a synthetic chord); ``test_share`` (h); ``seed``: subsampling,
    random baselines and the regression split; ``only``: analyses to run.
    """

    max_vectors: int = 100_000
    coverage_threshold: float = 0.7
    active_rel: float = 0.5
    usage_floor: float = 0.01
    top_n: int = 20
    seeds: tuple[int, ...] = (1, 2, 3)
    epochs: int | None = None
    reference_clips: int = 8
    random_draws: int = 5
    dl_vectors: int = 10_000
    redundancy_threshold: float = 0.5
    fragment_latents: int = 2
    fragments_per_latent: int = 16
    fragment_samples: int | None = None
    band_hz: float | None = None
    trajectory_frames: int = 200
    sine_hz: float = 440.0
    test_share: float = 0.25
    seed: int = 0
    only: tuple[str, ...] = ANALYSES
    quick: bool = False
    trajectory_clip: str | None = None

    def __post_init__(self) -> None:
        # checked, not converted: report.json records the options as given
        ints = (
            "max_vectors",
            "top_n",
            "reference_clips",
            "random_draws",
            "dl_vectors",
            "fragment_latents",
            "fragments_per_latent",
            "trajectory_frames",
        )
        for name in ints:
            check.integer(name, getattr(self, name), low=1)
        for name in ("epochs", "fragment_samples"):
            check.integer_or_none(name, getattr(self, name), low=1)
        check.number("coverage_threshold", self.coverage_threshold, low=-1, high=1)
        for name in ("active_rel", "usage_floor", "redundancy_threshold"):
            check.number(name, getattr(self, name), low=0, high=1)
        check.number("test_share", self.test_share, low=0, high=1, low_open=True, high_open=True)
        for name in ("band_hz", "sine_hz"):
            check.number_or_none(name, getattr(self, name), low=0, low_open=True)
        if not isinstance(self.seeds, tuple) or not all(check.is_integer(s) for s in self.seeds):
            raise check.fail("seeds", "a tuple of integers", self.seeds)
        if "stability" in self.only and len(set(self.seeds)) < 3:
            raise ConfigError(
                f"seeds must hold at least three distinct values for seed stability (e), got {list(self.seeds)}",
                parameter="seeds",
            )
        if not self.seeds and any(a in self.only for a in ("data", "weights")):
            raise ConfigError(
                "the data and weights analyses retrain with the first of seeds; give at least one", parameter="seeds"
            )
        object.__setattr__(self, "only", resolve_names(self.only))
        if not self.only:
            raise ConfigError(f"no analyses selected; choose from {', '.join(ANALYSES)}", parameter="only")
        check.integer("seed", self.seed)
        if self.trajectory_clip is not None and not isinstance(self.trajectory_clip, str):
            raise check.fail("trajectory_clip", "a path to an audio file (str) or None", self.trajectory_clip)

    @classmethod
    def quick_preset(cls, **overrides: Any) -> AnalysisOptions:
        """A small, fast run (a smoke test of the whole report, not a measurement to quote)."""
        base = dict(
            max_vectors=6000,
            epochs=2,
            reference_clips=2,
            random_draws=2,
            dl_vectors=1500,
            fragments_per_latent=8,
            trajectory_frames=120,
            quick=True,
        )
        return cls(**{**base, **overrides})

    def to_json(self) -> dict[str, Any]:
        """The options as given; an option left to its automatic value is null with a sibling
        ``NAME_reason`` saying how it is chosen and where the value used is recorded."""
        d = dataclasses.asdict(self)
        d["seeds"], d["only"] = list(self.seeds), list(self.only)
        for name, reason in AUTO_REASONS.items():
            if d[name] is None:
                d[f"{name}_reason"] = reason
        return d


#: why an option is null in ``report.json``: left to its automatic value
AUTO_REASONS = {
    "epochs": "not given: retrained SAEs use the dictionary's own epochs (dictionary.sae.epochs)",
    "fragment_samples": "not given: auto, max(256, 4 x the layer's span in samples); the value used is "
    "analyses.i_fragments.summary.fragment_samples (when i ran)",
    "band_hz": "not given: auto, 3 x sample rate / fragment length; the value used is "
    "analyses.i_fragments.summary.band_hz (when i ran)",
    "trajectory_clip": "not given: the music trajectory (j) is a synthetic chord (steerlab.synth, seed)",
}
