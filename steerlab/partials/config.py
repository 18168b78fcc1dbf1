"""Configuration of ``steerlab partials``: grids, stimuli, thresholds, controls.

A run is fully described by a :class:`PartialsConfig` (frozen dataclasses, one per
TOML table, each validating itself), plus the model weights it met. Layering:
built-in defaults, then the ``--quick`` preset, then the TOML file given with
``--config``, then command-line options. Unknown tables or keys are an error that
lists the valid ones, so a misspelled threshold can never be silently ignored.

:meth:`PartialsConfig.measurement_dict` is the part that decides the measured
numbers (everything but the verdict thresholds and the bootstrap size): a rerun
that changes only thresholds reuses every row of a run folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steerlab import validation as check
from steerlab.errors import ConfigError
from steerlab.stimuli import CHORDS, CONTEXT_RULES, FAMILIES, PHASES

METHODS: tuple[str, ...] = ("diffmeans", "sae", "probe", "random")
# Where the ``sae`` method's dictionaries come from (``grid.sae_data``, ``--sae-data``):
# "corpus": the measured model's ``--dictionary`` (learned on a corpus, e.g. the shipped ones on
# synth:768) and, on each control, one learned on the synthetic corpus (synth:N);
# "stimuli": every model (measured and controls alike) learns one per swept layer on the run's own
# stimuli (training stimuli and further draws of the same units, never held-out ones), with the
# same settings (steerlab.partials.sae_data);
# "independent": as "stimuli", but each clip is one unit's context with every target of the
# layer's units present independently with a fixed probability, and the dictionary complete
# (as many latents as the layer has channels; steerlab.partials.sae_data).
SAE_DATA: tuple[str, ...] = ("corpus", "stimuli", "independent")
# The null: a direction of the same norm as the difference of means, drawn at random.
NULL_METHOD = "random"
FORMAT_VERSION = 2  # 2: calibrated subtraction, separate removal verdicts, several controls


def _put(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # frozen dataclasses normalise their own fields


@dataclass(frozen=True)
class GridConfig:
    """What is swept. Empty ``layers``: one layer per encoder frame rate (the last at
    each rate), see :func:`steerlab.partials.plan.default_layers`; empty ``paths``:
    every decode path of the model."""

    layers: tuple[str, ...] = ()
    targets_hz: tuple[float, ...] = (150.0, 500.0, 1500.0, 4000.0)
    densities: tuple[int, ...] = (1, 2, 4, 8, 16)
    families: tuple[str, ...] = ("inharmonic",)
    f0_hz: float = 110.0
    chord: str = "major"
    methods: tuple[str, ...] = METHODS
    strengths: tuple[float, ...] = (0.1, 0.3, 1.0)
    # removal by subtraction, in units of the item's own projection excess along the direction
    # (see steerlab.partials.sweep.projection_excess): 1.0 removes exactly what was measured
    subtract_strengths: tuple[float, ...] = (0.5, 1.0, 2.0)
    paths: tuple[str, ...] = ()
    n_q: int | None = None
    sae_data: str = "corpus"

    def __post_init__(self) -> None:
        check.choice("grid.sae_data", self.sae_data, SAE_DATA)
        _put(self, "layers", tuple(str(x) for x in check.sequence("grid.layers", self.layers)))
        targets = check.sequence("grid.targets_hz", self.targets_hz, nonempty=True)
        _put(
            self,
            "targets_hz",
            check.distinct("grid.targets_hz", (check.positive("grid.targets_hz", t) for t in targets)),
        )
        dens = check.sequence("grid.densities", self.densities, nonempty=True)
        _put(self, "densities", tuple(check.integer("grid.densities", d, low=1) for d in dens))
        _put(self, "families", check.choices("grid.families", self.families, FAMILIES, nonempty=True))
        _put(self, "f0_hz", check.positive("grid.f0_hz", self.f0_hz))
        check.choice("grid.chord", self.chord, tuple(CHORDS))
        methods = check.choices("grid.methods", self.methods, METHODS, nonempty=True)
        if NULL_METHOD not in methods:
            # the null is a control: a run without it has verdicts nobody should trust
            methods = (*methods, NULL_METHOD)
        _put(self, "methods", methods)
        for name in ("strengths", "subtract_strengths"):
            values = check.sequence(f"grid.{name}", getattr(self, name), nonempty=True)
            _put(self, name, check.distinct(f"grid.{name}", sorted(check.positive(f"grid.{name}", v) for v in values)))
        _put(self, "paths", check.choices("grid.paths", self.paths, ("continuous", "quantized")))
        _put(self, "n_q", check.integer_or_none("grid.n_q", self.n_q, low=1))


@dataclass(frozen=True)
class StimuliConfig:
    """How the matched pairs are rendered (see :class:`steerlab.stimuli.StimulusSpec`) and split:
    seeds ``0..train_seeds-1`` learn directions, the next ``test_seeds`` are held out.

    ``margin_s``: silence before and after each sound, in seconds, or ``"auto"``: per model,
    the largest receptive field among its tested layers (see :func:`steerlab.partials.plan.margin_for`).
    """

    duration_s: float = 0.5
    amplitude: float = 0.1
    context_amplitude: Any = "match"
    phase: str = "random"
    fade_ms: float = 10.0
    min_separation_hz: float = 30.0
    band_low_hz: float = 50.0
    band_high_hz: float = 8000.0
    snr_db: float | None = None
    margin_s: Any = "auto"
    train_seeds: int = 4
    test_seeds: int = 5

    def __post_init__(self) -> None:
        _put(self, "duration_s", check.number("stimuli.duration_s", self.duration_s, low=0.05))
        _put(self, "amplitude", check.number("stimuli.amplitude", self.amplitude, low=0, low_open=True, high=0.9))
        if isinstance(self.context_amplitude, str):
            check.choice(
                "stimuli.context_amplitude",
                self.context_amplitude,
                CONTEXT_RULES,
                what="stimuli.context_amplitude rule",
            )
        else:
            _put(self, "context_amplitude", check.positive("stimuli.context_amplitude", self.context_amplitude))
        check.choice("stimuli.phase", self.phase, PHASES)
        _put(self, "fade_ms", check.non_negative("stimuli.fade_ms", self.fade_ms))
        for name in ("min_separation_hz", "band_low_hz", "band_high_hz"):
            _put(self, name, check.positive(f"stimuli.{name}", getattr(self, name)))
        if self.band_low_hz >= self.band_high_hz:
            raise ConfigError(
                f"stimuli.band_low_hz {self.band_low_hz:g} must be below band_high_hz {self.band_high_hz:g}",
                parameter=("stimuli.band_low_hz", "stimuli.band_high_hz"),
            )
        _put(self, "snr_db", check.number_or_none("stimuli.snr_db", self.snr_db))
        if self.margin_s != "auto":
            if isinstance(self.margin_s, str):
                raise check.fail("stimuli.margin_s", 'a number of seconds >= 0 or "auto"', self.margin_s)
            _put(self, "margin_s", check.non_negative("stimuli.margin_s", self.margin_s))
        _put(self, "train_seeds", check.integer("stimuli.train_seeds", self.train_seeds, low=1))
        _put(self, "test_seeds", check.integer("stimuli.test_seeds", self.test_seeds, low=1))

    def common(self, sample_rate: int) -> dict[str, Any]:
        """The StimulusSpec fields shared by every stimulus of a model."""
        return {
            "sample_rate": sample_rate,
            "duration_s": self.duration_s,
            "amplitude": self.amplitude,
            "context_amplitude": self.context_amplitude,
            "phase": self.phase,
            "fade_ms": self.fade_ms,
            "min_separation_hz": self.min_separation_hz,
            "band_low_hz": self.band_low_hz,
            "band_high_hz": self.band_high_hz,
        }


@dataclass(frozen=True)
class Thresholds:
    """The verdict rule (SCIENCE.md step 5); written into summary.csv and the report."""

    min_gain_db: float = 6.0
    min_loss_db: float = 6.0
    min_concentration: float = 0.5
    max_offband_db: float = 1.0
    min_share: float = 0.8

    def __post_init__(self) -> None:
        _put(self, "min_gain_db", check.positive("thresholds.min_gain_db", self.min_gain_db))
        _put(self, "min_loss_db", check.positive("thresholds.min_loss_db", self.min_loss_db))
        _put(
            self,
            "min_concentration",
            check.number("thresholds.min_concentration", self.min_concentration, low=0, high=1),
        )
        _put(self, "max_offband_db", check.non_negative("thresholds.max_offband_db", self.max_offband_db))
        _put(self, "min_share", check.fraction("thresholds.min_share", self.min_share))


@dataclass(frozen=True)
class ScoringConfig:
    """Options of :func:`steerlab.scoring.score` (band full width and FFT size) and of the note-partials
    rule that scores ``instrument`` pairs on audio (:class:`steerlab.scoring.NoteRule`: the ideal
    binary mask's local criterion and the off-band guard's tolerance; docs/partials.md). The note
    options change numbers only where an instrument pair is scored, so only a run with the
    ``instrument`` family hashes them (:meth:`PartialsConfig.measurement_dict`)."""

    band_hz: float = 50.0
    n_fft: int = 4096
    note_local_criterion_db: float = 0.0
    note_tolerance_db: float = 1.0

    def __post_init__(self) -> None:
        _put(self, "band_hz", check.positive("scoring.band_hz", self.band_hz))
        if check.integer("scoring.n_fft", self.n_fft, low=16) % 4:
            raise check.fail("scoring.n_fft", "a multiple of 4", self.n_fft)
        _put(
            self,
            "note_local_criterion_db",
            check.number("scoring.note_local_criterion_db", self.note_local_criterion_db, low=-60, high=60),
        )
        _put(self, "note_tolerance_db", check.positive("scoring.note_tolerance_db", self.note_tolerance_db))

    def options(self) -> dict[str, float]:
        """What the scorers read (``sweep.score_output``'s ``scoring``)."""
        return dataclasses.asdict(self)


# Positive-control models steerlab knows of; "auto" runs those of them that are registered.
KNOWN_CONTROLS: tuple[str, ...] = ("filterbank_24khz", "stft_24khz")


@dataclass(frozen=True)
class ControlsConfig:
    """The positive controls: models whose partials are steerable by construction, each run
    beside every measurement on its control layer. ``positive_models``: a list of registered
    model names, or ``"auto"``: those of :data:`KNOWN_CONTROLS` that are registered; ``[]``
    switches the controls off (the report then marks every verdict unchecked).
    ``positive_layers``: ``{model: layer}``; a model left out uses its only layer, else the
    layer it declares as ``control_layer``. Empty ``positive_targets_hz``: the grid targets,
    moved to the nearest band centre when the model declares ``centres_hz``; empty
    ``positive_densities``: the grid densities. ``positive_methods``: ``"auto"`` (every
    method of ``grid.methods``: a method is validated only where its control ran) or a list.
    ``dictionary_*``: the recipe of the SAE dictionary each control learns for itself when the
    run uses ``sae`` (see :func:`steerlab.partials.directions.control_dictionary`)."""

    positive_models: Any = "auto"
    positive_layers: Any = ()
    positive_targets_hz: tuple[float, ...] = ()
    positive_densities: tuple[int, ...] = ()
    positive_methods: Any = "auto"
    # the SAE dictionary learned on each control when the run uses ``sae`` (a --dictionary):
    # ``steerlab learn``'s defaults (TopK, 128 latents, k = 8, lr 1e-3, batch 256) on
    # ``dictionary_clips`` 1 s clips of the synthetic corpus, about ``dictionary_vectors`` frames
    # (seeded subsample), about ``dictionary_steps`` steps; seed = run seed
    dictionary_size: int = 128
    dictionary_k: int = 8
    dictionary_clips: int = 64
    dictionary_vectors: int = 16384
    dictionary_steps: int = 3000

    def __post_init__(self) -> None:
        for name in ("dictionary_size", "dictionary_k", "dictionary_clips", "dictionary_vectors", "dictionary_steps"):
            _put(self, name, check.integer(f"controls.{name}", getattr(self, name), low=1))
        if self.dictionary_k > self.dictionary_size:
            raise ConfigError(
                f"controls.dictionary_k ({self.dictionary_k}) must be <= controls.dictionary_size "
                f"({self.dictionary_size})",
                parameter=("controls.dictionary_k", "controls.dictionary_size"),
            )
        if self.positive_models != "auto":
            if isinstance(self.positive_models, str):
                raise check.fail("controls.positive_models", 'a list of model names or "auto"', self.positive_models)
            names = check.sequence("controls.positive_models", self.positive_models)
            if not all(isinstance(n, str) and n for n in names):
                raise check.fail("controls.positive_models", "a list of model names", list(names))
            _put(self, "positive_models", check.distinct("controls.positive_models", names))
        layers = self.positive_layers
        if isinstance(layers, Mapping):
            layers = tuple(sorted(layers.items()))
        if (
            isinstance(layers, (str, bytes))
            or not isinstance(layers, (list, tuple))
            or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in layers
            )
        ):
            raise check.fail("controls.positive_layers", "a table of model = layer", self.positive_layers)
        _put(self, "positive_layers", tuple(tuple(p) for p in layers))
        if self.positive_methods != "auto":
            if isinstance(self.positive_methods, str):
                raise check.fail("controls.positive_methods", 'a list or "auto"', self.positive_methods)
            methods = check.choices("controls.positive_methods", self.positive_methods, METHODS, nonempty=True)
            _put(self, "positive_methods", methods if NULL_METHOD in methods else (*methods, NULL_METHOD))
        t = check.sequence("controls.positive_targets_hz", self.positive_targets_hz)
        _put(self, "positive_targets_hz", tuple(check.positive("controls.positive_targets_hz", x) for x in t))
        d = check.sequence("controls.positive_densities", self.positive_densities)
        _put(self, "positive_densities", tuple(check.integer("controls.positive_densities", x, low=1) for x in d))

    def layer_for(self, model: str) -> str | None:
        """The layer given for ``model`` in ``positive_layers``, or None."""
        return dict(self.positive_layers).get(model)

    def methods_for(self, grid_methods: tuple[str, ...]) -> tuple[str, ...]:
        """The methods run on each control: ``"auto"`` means those of the grid."""
        return tuple(grid_methods) if self.positive_methods == "auto" else tuple(self.positive_methods)


@dataclass(frozen=True)
class RunConfig:
    """Seeds and execution: ``max_batch`` items share one traced pass; ``probe_frames``
    frames per training clip fit the probe; ``examples`` audio pairs per model go into
    the report; ``bootstrap`` resamples per confidence interval."""

    model: str | None = None
    seed: int = 0
    max_batch: int = 16
    probe_frames: int = 256
    bootstrap: int = 1000
    examples: int = 4

    def __post_init__(self) -> None:
        if self.model is not None and not isinstance(self.model, str):
            raise check.fail("run.model", "a model name", self.model)
        for name, low in (("seed", 0), ("max_batch", 1), ("probe_frames", 8), ("bootstrap", 100), ("examples", 0)):
            _put(self, name, check.integer(f"run.{name}", getattr(self, name), low=low))


SECTIONS: dict[str, type] = {
    "grid": GridConfig,
    "stimuli": StimuliConfig,
    "thresholds": Thresholds,
    "scoring": ScoringConfig,
    "controls": ControlsConfig,
    "run": RunConfig,
}


@dataclass(frozen=True)
class PartialsConfig:
    grid: GridConfig = field(default_factory=GridConfig)
    stimuli: StimuliConfig = field(default_factory=StimuliConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise check.fail(name, f"a {cls.__name__}", getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def measurement_dict(self) -> dict[str, Any]:
        """Everything that changes a measured number (not thresholds, bootstrap or examples)."""
        d = self.to_dict()
        del d["thresholds"]
        d["run"] = {k: v for k, v in d["run"].items() if k not in ("bootstrap", "examples")}
        # the control dictionaries' recipe changes numbers only where one is learned (a run using
        # ``sae``); the runner adds it to the hash there (runner.prepare)
        d["controls"] = {k: v for k, v in d["controls"].items() if not k.startswith("dictionary_")}
        if "instrument" not in self.grid.families:  # the note rule scores nothing else
            d["scoring"] = {k: v for k, v in d["scoring"].items() if not k.startswith("note_")}
        if d["grid"]["sae_data"] == "corpus":  # the default before the key existed: hashes stay as they were
            del d["grid"]["sae_data"]
        return d

    def replace(self, section: str, **changes: Any) -> PartialsConfig:
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})

    def merged(self, overrides: Mapping[str, Mapping[str, Any]]) -> PartialsConfig:
        """This config with ``{section: {key: value}}`` applied (keys checked)."""
        check_keys(overrides, "overrides")
        cfg = self
        for section, values in overrides.items():
            if values:
                try:
                    cfg = cfg.replace(section, **dict(values))
                except TypeError as exc:  # a bad type that a constructor could not even take
                    raise ConfigError(f"[{section}]: {exc}") from None
        return cfg


def check_keys(doc: Mapping[str, Any], where: str) -> None:
    """Unknown tables or keys: an error naming the valid ones (and the nearest match)."""
    for section, values in doc.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{where}: unknown table [{section}].{check.did_you_mean(section, SECTIONS)} "
                f"Valid tables: {', '.join(SECTIONS)}"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: [{section}] must be a table of keys")
        valid = tuple(f.name for f in dataclasses.fields(SECTIONS[section]))
        for key in values:
            if key not in valid:
                raise ConfigError(
                    f"{where}: unknown key {key!r} in [{section}].{check.did_you_mean(key, valid)} "
                    f"Valid keys: {', '.join(valid)}"
                )


def read_toml(path: str | Path) -> dict[str, dict[str, Any]]:
    """The tables of a TOML config file, keys checked (values are checked by the dataclasses)."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        doc = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot parse {p}: {str(exc).splitlines()[0]}") from None
    check_keys(doc, str(p))
    return doc


# A grid small enough for 60 s on two cores: two targets, two densities, two strengths,
# short clips; the layers are chosen by plan.quick_layers (an early layer and the bottleneck,
# so the architecture prediction has something to rank).
QUICK: dict[str, dict[str, Any]] = {
    "grid": {"targets_hz": (300.0, 1200.0), "densities": (1, 4), "strengths": (0.3, 1.0)},
    "stimuli": {"duration_s": 0.25, "train_seeds": 3, "test_seeds": 4},
    "run": {"probe_frames": 128, "examples": 2},
}


def build(
    config_file: str | Path | None = None, quick: bool = False, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> PartialsConfig:
    """Defaults, then the quick preset, then the file, then ``overrides`` (the CLI's options)."""
    cfg = PartialsConfig()
    if quick:
        cfg = cfg.merged(QUICK)
    if config_file is not None:
        cfg = cfg.merged(read_toml(config_file))
    if overrides:
        cfg = cfg.merged({k: v for k, v in overrides.items() if v})
    return cfg
