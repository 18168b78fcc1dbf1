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
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from steerlab.errors import SteerlabError
from steerlab.stimuli import CHORDS, CONTEXT_RULES, FAMILIES, PHASES

METHODS: tuple[str, ...] = ("diffmeans", "sae", "probe", "random")
# Where the ``sae`` method's dictionaries come from (``grid.sae_data``, ``--sae-data``):
# "corpus": the measured model's ``--dictionary`` (learned on a corpus, e.g. the shipped ones on
# synth:768) and, on each control, one learned on the synthetic corpus (synth:N);
# "stimuli": every model (measured and controls alike) learns one per swept layer on the run's own
# training stimuli, with the same settings (steerlab.partials.sae_data).
SAE_DATA: tuple[str, ...] = ("corpus", "stimuli")
# The null: a direction of the same norm as the difference of means, drawn at random.
NULL_METHOD = "random"
FORMAT_VERSION = 2  # 2: calibrated subtraction, separate removal verdicts, several controls


class ConfigError(SteerlabError, ValueError):
    """An invalid ``steerlab partials`` configuration (also a ValueError, as configs raise)."""


def _suggest(value: str, valid: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(value, list(valid), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _num(where: str, v: Any, *, lo: float | None = None, lo_open: bool = False, hi: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{where} must be a finite number, got {v!r}")
    v = float(v)
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ConfigError(f"{where} must be {'>' if lo_open else '>='} {lo:g}, got {v:g}")
    if hi is not None and v > hi:
        raise ConfigError(f"{where} must be <= {hi:g}, got {v:g}")
    return v


def _int(where: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{where} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _tuple(where: str, v: Any, *, allow_empty: bool = True) -> tuple:
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)):
        raise ConfigError(f"{where} must be a list, got {v!r}")
    if not v and not allow_empty:
        raise ConfigError(f"{where} must not be empty")
    return tuple(v)


def _choices(where: str, values: tuple, valid: tuple[str, ...]) -> tuple[str, ...]:
    for v in values:
        if v not in valid:
            raise ConfigError(f"unknown {where} {v!r}.{_suggest(str(v), valid)} Valid: {', '.join(valid)}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where} lists a value twice: {list(values)}")
    return tuple(values)


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
    n_q: Optional[int] = None
    sae_data: str = "corpus"

    def __post_init__(self) -> None:
        _choices("grid.sae_data", (self.sae_data,), SAE_DATA)
        _put(self, "layers", tuple(str(x) for x in _tuple("grid.layers", self.layers)))
        targets = _tuple("grid.targets_hz", self.targets_hz, allow_empty=False)
        _put(self, "targets_hz", tuple(_num("grid.targets_hz", t, lo=0, lo_open=True) for t in targets))
        if len(set(self.targets_hz)) != len(self.targets_hz):
            raise ConfigError(f"grid.targets_hz lists a frequency twice: {list(self.targets_hz)}")
        dens = _tuple("grid.densities", self.densities, allow_empty=False)
        _put(self, "densities", tuple(_int("grid.densities", d, 1) for d in dens))
        _put(self, "families", _choices("grid.families", _tuple("grid.families", self.families, allow_empty=False), FAMILIES))
        _put(self, "f0_hz", _num("grid.f0_hz", self.f0_hz, lo=0, lo_open=True))
        _choices("grid.chord", (self.chord,), tuple(CHORDS))
        methods = _choices("grid.methods", _tuple("grid.methods", self.methods, allow_empty=False), METHODS)
        if NULL_METHOD not in methods:
            # the null is a control: a run without it has verdicts nobody should trust
            methods = (*methods, NULL_METHOD)
        _put(self, "methods", methods)
        strengths = _tuple("grid.strengths", self.strengths, allow_empty=False)
        _put(self, "strengths", tuple(sorted(_num("grid.strengths", s, lo=0, lo_open=True) for s in strengths)))
        if len(set(self.strengths)) != len(self.strengths):
            raise ConfigError(f"grid.strengths lists a value twice: {list(self.strengths)}")
        sub = _tuple("grid.subtract_strengths", self.subtract_strengths, allow_empty=False)
        _put(self, "subtract_strengths", tuple(sorted(_num("grid.subtract_strengths", s, lo=0, lo_open=True)
                                                      for s in sub)))
        if len(set(self.subtract_strengths)) != len(self.subtract_strengths):
            raise ConfigError(f"grid.subtract_strengths lists a value twice: {list(self.subtract_strengths)}")
        _put(self, "paths", _choices("grid.paths", _tuple("grid.paths", self.paths), ("continuous", "quantized")))
        if self.n_q is not None:
            _put(self, "n_q", _int("grid.n_q", self.n_q, 1))


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
    snr_db: Optional[float] = None
    margin_s: Any = "auto"
    train_seeds: int = 4
    test_seeds: int = 5

    def __post_init__(self) -> None:
        _put(self, "duration_s", _num("stimuli.duration_s", self.duration_s, lo=0.05))
        _put(self, "amplitude", _num("stimuli.amplitude", self.amplitude, lo=0, lo_open=True, hi=0.9))
        if isinstance(self.context_amplitude, str):
            _choices("stimuli.context_amplitude rule", (self.context_amplitude,), CONTEXT_RULES)
        else:
            _put(self, "context_amplitude", _num("stimuli.context_amplitude", self.context_amplitude, lo=0, lo_open=True))
        _choices("stimuli.phase", (self.phase,), PHASES)
        _put(self, "fade_ms", _num("stimuli.fade_ms", self.fade_ms, lo=0))
        _put(self, "min_separation_hz", _num("stimuli.min_separation_hz", self.min_separation_hz, lo=0, lo_open=True))
        _put(self, "band_low_hz", _num("stimuli.band_low_hz", self.band_low_hz, lo=0, lo_open=True))
        _put(self, "band_high_hz", _num("stimuli.band_high_hz", self.band_high_hz, lo=0, lo_open=True))
        if self.band_low_hz >= self.band_high_hz:
            raise ConfigError(f"stimuli.band_low_hz {self.band_low_hz:g} must be below band_high_hz {self.band_high_hz:g}")
        if self.snr_db is not None:
            _put(self, "snr_db", _num("stimuli.snr_db", self.snr_db))
        if self.margin_s != "auto":
            if isinstance(self.margin_s, str):
                raise ConfigError(f"stimuli.margin_s must be a number of seconds >= 0 or \"auto\", got {self.margin_s!r}")
            _put(self, "margin_s", _num("stimuli.margin_s", self.margin_s, lo=0))
        _put(self, "train_seeds", _int("stimuli.train_seeds", self.train_seeds, 1))
        _put(self, "test_seeds", _int("stimuli.test_seeds", self.test_seeds, 1))

    def common(self, sample_rate: int) -> dict[str, Any]:
        """The StimulusSpec fields shared by every stimulus of a model."""
        return {"sample_rate": sample_rate, "duration_s": self.duration_s, "amplitude": self.amplitude,
                "context_amplitude": self.context_amplitude, "phase": self.phase, "fade_ms": self.fade_ms,
                "min_separation_hz": self.min_separation_hz, "band_low_hz": self.band_low_hz,
                "band_high_hz": self.band_high_hz}


@dataclass(frozen=True)
class Thresholds:
    """The verdict rule (SCIENCE.md step 5); written into summary.csv and the report."""

    min_gain_db: float = 6.0
    min_loss_db: float = 6.0
    min_concentration: float = 0.5
    max_offband_db: float = 1.0
    min_share: float = 0.8

    def __post_init__(self) -> None:
        _put(self, "min_gain_db", _num("thresholds.min_gain_db", self.min_gain_db, lo=0, lo_open=True))
        _put(self, "min_loss_db", _num("thresholds.min_loss_db", self.min_loss_db, lo=0, lo_open=True))
        _put(self, "min_concentration", _num("thresholds.min_concentration", self.min_concentration, lo=0, hi=1))
        _put(self, "max_offband_db", _num("thresholds.max_offband_db", self.max_offband_db, lo=0))
        _put(self, "min_share", _num("thresholds.min_share", self.min_share, lo=0, lo_open=True, hi=1))


@dataclass(frozen=True)
class ScoringConfig:
    """Options of :func:`steerlab.scoring.score` (band full width and FFT size)."""

    band_hz: float = 50.0
    n_fft: int = 4096

    def __post_init__(self) -> None:
        _put(self, "band_hz", _num("scoring.band_hz", self.band_hz, lo=0, lo_open=True))
        n = _int("scoring.n_fft", self.n_fft, 16)
        if n % 4:
            raise ConfigError(f"scoring.n_fft must be a multiple of 4, got {n}")


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
            _put(self, name, _int(f"controls.{name}", getattr(self, name), 1))
        if self.dictionary_k > self.dictionary_size:
            raise ConfigError(f"controls.dictionary_k ({self.dictionary_k}) must be <= controls.dictionary_size "
                              f"({self.dictionary_size})")
        if self.positive_models != "auto":
            if isinstance(self.positive_models, str):
                raise ConfigError(f'controls.positive_models must be a list of model names or "auto", '
                                  f"got {self.positive_models!r}")
            names = _tuple("controls.positive_models", self.positive_models)
            if not all(isinstance(n, str) and n for n in names):
                raise ConfigError(f"controls.positive_models must list model names, got {list(names)}")
            if len(set(names)) != len(names):
                raise ConfigError(f"controls.positive_models lists a model twice: {list(names)}")
            _put(self, "positive_models", names)
        layers = self.positive_layers
        if isinstance(layers, Mapping):
            layers = tuple(sorted(layers.items()))
        if isinstance(layers, (str, bytes)) or not isinstance(layers, (list, tuple)) or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in layers):
            raise ConfigError(f"controls.positive_layers must be a table of model = layer, got {self.positive_layers!r}")
        _put(self, "positive_layers", tuple(tuple(p) for p in layers))
        if self.positive_methods != "auto":
            if isinstance(self.positive_methods, str):
                raise ConfigError(f'controls.positive_methods must be a list or "auto", got {self.positive_methods!r}')
            methods = _choices("controls.positive_methods", _tuple("controls.positive_methods",
                                                                   self.positive_methods, allow_empty=False), METHODS)
            _put(self, "positive_methods", methods if NULL_METHOD in methods else (*methods, NULL_METHOD))
        t = _tuple("controls.positive_targets_hz", self.positive_targets_hz)
        _put(self, "positive_targets_hz", tuple(_num("controls.positive_targets_hz", x, lo=0, lo_open=True) for x in t))
        d = _tuple("controls.positive_densities", self.positive_densities)
        _put(self, "positive_densities", tuple(_int("controls.positive_densities", x, 1) for x in d))

    def layer_for(self, model: str) -> Optional[str]:
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

    model: Optional[str] = None
    seed: int = 0
    max_batch: int = 16
    probe_frames: int = 256
    bootstrap: int = 1000
    examples: int = 4

    def __post_init__(self) -> None:
        if self.model is not None and not isinstance(self.model, str):
            raise ConfigError(f"run.model must be a model name, got {self.model!r}")
        _put(self, "seed", _int("run.seed", self.seed, 0))
        _put(self, "max_batch", _int("run.max_batch", self.max_batch, 1))
        _put(self, "probe_frames", _int("run.probe_frames", self.probe_frames, 8))
        _put(self, "bootstrap", _int("run.bootstrap", self.bootstrap, 100))
        _put(self, "examples", _int("run.examples", self.examples, 0))


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
                raise ConfigError(f"{name} must be a {cls.__name__}")

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
        if d["grid"]["sae_data"] == "corpus":  # the default before the key existed: hashes stay as they were
            del d["grid"]["sae_data"]
        return d

    def replace(self, section: str, **changes: Any) -> "PartialsConfig":
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})

    def merged(self, overrides: Mapping[str, Mapping[str, Any]]) -> "PartialsConfig":
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
            raise ConfigError(f"{where}: unknown table [{section}].{_suggest(section, tuple(SECTIONS))} "
                              f"Valid tables: {', '.join(SECTIONS)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: [{section}] must be a table of keys")
        valid = tuple(f.name for f in dataclasses.fields(SECTIONS[section]))
        for key in values:
            if key not in valid:
                raise ConfigError(f"{where}: unknown key {key!r} in [{section}].{_suggest(key, valid)} "
                                  f"Valid keys: {', '.join(valid)}")


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


def build(config_file: str | Path | None = None, quick: bool = False,
          overrides: Optional[Mapping[str, Mapping[str, Any]]] = None) -> PartialsConfig:
    """Defaults, then the quick preset, then the file, then ``overrides`` (the CLI's options)."""
    cfg = PartialsConfig()
    if quick:
        cfg = cfg.merged(QUICK)
    if config_file is not None:
        cfg = cfg.merged(read_toml(config_file))
    if overrides:
        cfg = cfg.merged({k: v for k, v in overrides.items() if v})
    return cfg


def digest(obj: Any, n: int = 16) -> str:
    """``n`` hex digits of sha256 over the canonical JSON of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]
