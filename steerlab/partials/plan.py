"""Work items of ``steerlab partials``: the grid expanded into independent, serialisable units.

A :class:`WorkItem` names everything one patched decode needs (stimulus spec and
which signal of the pair, model, layer, direction, intervention, strength, decode
path) and carries the run's configuration hash, so a distributed engine could run
any item anywhere given the directions file; :meth:`WorkItem.key` identifies its
row in ``results.jsonl``. A :class:`Unit` is one (model, layer, family, target,
density): the place directions are learned (on training seeds) and verdicts are
given (on held-out seeds).

Ordering is deterministic and items are cut into batches (:func:`batches`) from
that order alone, so a resumed run recomputes a half-written batch with exactly
the same companions as the uninterrupted run and gets the same numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, cast

from steerlab import validation as check
from steerlab.artifacts import config_hash
from steerlab.errors import ConfigError, Infeasible, StimulusError
from steerlab.model import AudioModel, LayerInfo
from steerlab.partials.config import PartialsConfig
from steerlab.stimuli import StimulusSpec, partials

ROLES = ("without", "with")
# add creates the partial on without-target stimuli; subtract and ablate delete it from with-target ones;
# sae_ablate (the ``sae`` method only) sets the chosen feature's code to 0 keeping the SAE's error (issue 11)
OPS = ("add", "subtract", "ablate", "sae_ablate")
OP_ROLE = {"add": "without", "subtract": "with", "ablate": "with", "sae_ablate": "with"}
ZERO_STRENGTH_OPS = ("ablate", "sae_ablate")  # one setting each, no strength
MAIN, POSITIVE = "main", "positive_control"


def default_layers(layers: Sequence[LayerInfo]) -> list[LayerInfo]:
    """One layer per frame rate up to the bottleneck: the last encoder-side layer at each
    hop (layers named after a decode path, such as ``quantized``, are left out)."""
    chosen: dict[int, LayerInfo] = {}
    for layer in layers:
        if layer.side in ("encoder", "latent") and layer.name not in ("quantized",):
            chosen[layer.hop] = layer
    return list(chosen.values()) or [list(layers)[-1]]


def quick_layers(layers: Sequence[LayerInfo]) -> list[LayerInfo]:
    """An early layer and the deepest one of :func:`default_layers`: the two ends of the prediction."""
    d = default_layers(layers)
    return [d[1], d[-1]] if len(d) > 2 else d


@dataclass(frozen=True)
class Unit:
    """Where directions are learned and verdicts given (before method and path)."""

    model: str
    role: str
    layer: str
    family: str
    target_hz: float
    density: int

    def label(self) -> str:
        return f"{self.model} {self.layer} {self.family} {self.target_hz:g} Hz d={self.density}"


def check_strength(op: str, strength: float) -> None:
    """A work item's ``strength``: finite and > 0, or exactly 0 for the ops in
    :data:`ZERO_STRENGTH_OPS` (raises :class:`~steerlab.errors.ConfigError` naming ``strength``)."""
    zero = op in ZERO_STRENGTH_OPS
    if not (math.isfinite(strength) and strength >= 0) or zero != (strength == 0):
        raise check.fail("strength", f"> 0 for add/subtract and 0 for ablate/sae_ablate ({op})", strength)


_Item = TypeVar("_Item", bound="KeyedItem")


class KeyedItem:
    """Serialisation and row key of a frozen dataclass work item (:class:`WorkItem`, the battery's
    :class:`~steerlab.battery.plan.BatteryItem`) whose field ``SPEC_FIELD`` holds a spec of type
    ``SPEC_TYPE`` with its own ``to_dict``/``from_dict``."""

    SPEC_FIELD: ClassVar[str]
    SPEC_TYPE: ClassVar[Any]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(cast(Any, self))
        d[self.SPEC_FIELD] = getattr(self, self.SPEC_FIELD).to_dict()
        return d

    @classmethod
    def from_dict(cls: type[_Item], d: dict[str, Any]) -> _Item:
        return cls(**{**d, cls.SPEC_FIELD: cls.SPEC_TYPE.from_dict(d[cls.SPEC_FIELD])})

    def key(self) -> str:
        """The item's row key in ``results.jsonl``: :func:`~steerlab.artifacts.config_hash` of :meth:`to_dict`."""
        cached = self.__dict__.get("_key")  # frozen: computed once per item
        if cached is None:
            cached = config_hash(self.to_dict())
            object.__setattr__(self, "_key", cached)
        return cast(str, cached)


@dataclass(frozen=True)
class WorkItem(KeyedItem):
    """One patched decode: see the module docstring. ``strength`` is relative to the
    layer's RMS activation norm on that input (0 for ablate, which has none)."""

    SPEC_FIELD = "stimulus"
    SPEC_TYPE = StimulusSpec

    config_hash: str
    model: str
    layer: str
    stimulus: StimulusSpec
    role: str
    method: str
    direction_id: str
    op: str
    strength: float
    path: str
    n_q: int | None = None

    def __post_init__(self) -> None:
        check.choice("role", self.role, ROLES)
        check.choice("op", self.op, OPS)
        if OP_ROLE[self.op] != self.role:
            raise ConfigError(
                f"op {self.op!r} applies to {OP_ROLE[self.op]!r} stimuli, not {self.role!r}", parameter=("op", "role")
            )
        check_strength(self.op, self.strength)

    @property
    def batch_group(self) -> tuple[str, ...]:
        """Items batched together; ``sae_ablate`` items in batches of their own, so the batches
        (and the rounding) of every other item are those they had before it existed."""
        group = (self.model, self.path, self.layer)
        return (*group, self.op) if self.op == "sae_ablate" else group


@dataclass
class ModelPlan:
    """The grid of one model: its layers, paths, stimuli per unit and skipped combinations."""

    model: AudioModel
    role: str
    layers: list[LayerInfo]
    paths: list[str]
    targets_hz: tuple[float, ...]
    densities: tuple[int, ...]
    train: dict[Unit, list[StimulusSpec]] = field(default_factory=dict)
    test: dict[Unit, list[StimulusSpec]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    methods: tuple[str, ...] = ()
    margin_s: float = 0.0

    def paths_for(self, layer: LayerInfo) -> list[str]:
        """A layer named after a decode path exists only on that path."""
        if layer.name in self.model.paths:
            return [p for p in self.paths if p == layer.name]
        return list(self.paths)

    def capture_path(self, layer: LayerInfo, path: str) -> str:
        """The path whose activations the directions for ``path`` are learned on: decoder
        activations differ by path; encoder ones do not, so one direction serves both."""
        if layer.name in self.model.paths:
            return layer.name
        return path if layer.side == "decoder" else self.model.default_path


def _check_targets(model: AudioModel, targets: Sequence[float], what: str) -> None:
    nyq = model.sample_rate / 2
    for f in targets:
        if f >= nyq:
            raise ConfigError(
                f"{what} {f:g} Hz is at or above the Nyquist frequency of {model.name} "
                f"({nyq:g} Hz); choose targets below {nyq:g} Hz"
            )
    bins = output_bins(model)
    if bins is not None:
        lo, hi = float(bins[0]), float(bins[-1])
        for f in targets:
            if not lo <= f <= hi:
                raise ConfigError(
                    f"{what} {f:g} Hz is outside the output bins of {model.name} ({lo:.1f} to "
                    f"{hi:.1f} Hz): its scorer cannot see it; choose targets inside that range"
                )


def output_bins(model: AudioModel):
    """The centre frequencies (Hz, float64, increasing) of the output bins of a model whose
    output is a spectrum-like map without a decoder (``output_bins_hz``, e.g. a pitch
    salience), else None."""
    if model.has_decoder or getattr(model, "output_bins_hz", None) is None:
        return None
    import numpy as np

    b = model.output_bins_hz
    return np.sort(np.asarray(b.detach().cpu() if hasattr(b, "detach") else b, dtype=float))


def _centres(model: AudioModel):
    """The band centres a model declares (``centres_hz``, a tensor or array) as sorted float64, or None."""
    centres = getattr(model, "centres_hz", None)
    if centres is None:
        return None
    import numpy as np

    return np.sort(np.asarray(centres.detach().cpu() if hasattr(centres, "detach") else centres, dtype=float))


def _snap_to_bands(model: AudioModel, targets: Sequence[float]) -> tuple[float, ...]:
    """Targets moved to the nearest declared band centre (models that declare ``centres_hz``)."""
    c = _centres(model)
    if c is None:
        return tuple(targets)
    import numpy as np

    return tuple(dict.fromkeys(round(float(c[np.argmin(np.abs(np.log(c / f)))]), 4) for f in targets))


def band_reach_hz(model: AudioModel, target: float) -> float | None:
    """For a model that declares ``centres_hz`` (a bank whose band at centre ``c`` reaches
    its neighbours' centres and is zero there), how far the band holding ``target`` reaches:
    the distance from its centre to the farther neighbouring centre. None for other models."""
    c = _centres(model)
    if c is None:
        return None
    import numpy as np

    k = int(np.argmin(np.abs(np.log(c / target))))
    gaps = [c[k] - c[k - 1]] if k > 0 else []
    gaps += [c[k + 1] - c[k]] if k + 1 < len(c) else []
    return float(max(gaps)) if gaps else None


def margin_for(cfg: PartialsConfig, model: AudioModel, layers: Sequence[LayerInfo]) -> float:
    """Seconds of silence around each sound: ``stimuli.margin_s``, or for ``"auto"`` the
    largest receptive field ``R`` among ``layers`` (``R / 2`` for a non-causal model).

    With that margin, every frame whose receptive field reaches the sound lies inside the
    clip: a causal layer responds up to ``R`` after the sound, a centred one ``R / 2`` before
    and after. The layer's whole response to the sound is then in the clip, and an edit of it
    is never cut off at the clip's edge. (Outside the clip a model sees zeros, which is what
    the margin holds, so its receptive field may reach past the edge.) Measured on the
    positive control (0.68 s filters, 0.25 s sounds, ablating the target's band): 1.5-4 dB
    off-band damage without margins, from the step the cut-off response leaves at the edge;
    0.0 dB with 0.1 s margins or more. For layers after an LSTM the conv-only receptive field
    is a lower bound (see steerlab layers). A model whose decode is audio of its own length (a
    generated continuation) gets no margin.
    """
    if cfg.stimuli.margin_s != "auto":
        return float(cfg.stimuli.margin_s)
    if any(model.output_length(n) != n for n in (model.sample_rate, 3 * model.sample_rate)):
        # a generated continuation (tokenlm_24khz) is not the input's response: no edge to cut it
        return 0.0
    reach = max(layer.receptive_field for layer in layers)
    return (reach if model.causal else math.ceil(reach / 2)) / model.sample_rate


def separation_for(cfg: PartialsConfig, model: AudioModel, role: str, target: float) -> float:
    """``stimuli.min_separation_hz``, widened for the positive control to the reach of the
    target's band (:func:`band_reach_hz`): the control's partials are steerable by construction
    only when alone in their band. Ablating along the band deletes every partial in it (measured
    at 2287 Hz, density 16, 30 Hz separation: concentration 0.55 on the two seeds of five with a
    context partial in the band, 0.996 with the band kept clear; docs/filterbank.md)."""
    reach = band_reach_hz(model, target) if role == POSITIVE else None
    return max(cfg.stimuli.min_separation_hz, reach or 0.0)


def _specs(
    cfg: PartialsConfig,
    model: AudioModel,
    family: str,
    target: float,
    density: int,
    seeds: range,
    margin_s: float,
    min_separation_hz: float,
) -> tuple[list[StimulusSpec], dict[str, int]]:
    """The feasible specs of one unit (as :func:`steerlab.stimuli.design` would build them)."""
    common = {**cfg.stimuli.common(model.sample_rate), "margin_s": margin_s, "min_separation_hz": min_separation_hz}
    f0 = cfg.grid.f0_hz if family in ("harmonic", "chord") else None
    chord = cfg.grid.chord if family == "chord" else None
    specs: list[StimulusSpec] = []
    skipped: dict[str, int] = {}
    for seed in seeds:
        try:
            spec = StimulusSpec(family, target, density, f0, chord, seed=seed, snr_db=cfg.stimuli.snr_db, **common)
            partials(spec)
        except Infeasible as exc:
            skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
            continue
        except StimulusError as exc:
            raise ConfigError(f"stimuli for {model.name}: {exc}") from None
        specs.append(spec)
    return specs, skipped


def plan_model(
    cfg: PartialsConfig,
    model: AudioModel,
    role: str,
    layer_names: Sequence[str],
    targets: Sequence[float],
    densities: Sequence[int],
) -> ModelPlan:
    """Resolve layers and paths and render the train/test splits of every unit (specs only)."""
    from steerlab import api

    if not model.has_decoder and not api.output_scorers(model):
        raise ConfigError(
            f"steerlab partials scores a model's output, and {model.name} has no decoder (its output is "
            f"not a sound) and no scorer registered for its output kind "
            f"{getattr(model, 'output_kind', None)!r}; choose a model that decodes audio or whose plugin "
            f"registers an output scorer (steerlab models)"
        )
    reg = api.layers(model)
    all_layers = list(reg)
    layers = [reg.get(n) for n in layer_names] if layer_names else default_layers(all_layers)
    if len({layer.name for layer in layers}) != len(layers):
        raise ConfigError(f"layers listed twice for {model.name}: {[layer.name for layer in layers]}")
    _check_targets(model, targets, "target")
    if cfg.stimuli.band_high_hz >= model.sample_rate / 2:
        raise ConfigError(
            f"stimuli.band_high_hz {cfg.stimuli.band_high_hz:g} Hz is at or above the Nyquist "
            f"frequency of {model.name} ({model.sample_rate / 2:g} Hz)"
        )
    if role == MAIN and cfg.grid.paths:
        bad = [p for p in cfg.grid.paths if p not in model.paths]
        if bad:
            raise ConfigError(
                f"model {model.name} has no decode path {bad[0]!r}; valid paths: {', '.join(model.paths)}"
            )
        paths = list(cfg.grid.paths)
    else:
        paths = [p for p in (cfg.grid.paths or model.paths) if p in model.paths] or [model.default_path]
    methods = cfg.grid.methods if role == MAIN else cfg.controls.methods_for(cfg.grid.methods)
    plan = ModelPlan(model, role, layers, paths, tuple(targets), tuple(densities), methods=tuple(methods))
    for layer in layers:
        if not plan.paths_for(layer):
            raise ConfigError(
                f"layer {layer.name!r} exists only on path {layer.name!r}, which this run excludes "
                f"(paths: {', '.join(paths)})"
            )
    if "instrument" in cfg.grid.families:
        from steerlab.stimuli import check_renderer

        try:
            check_renderer()
        except StimulusError as exc:
            raise ConfigError(str(exc)) from None
    n_train, n_test = cfg.stimuli.train_seeds, cfg.stimuli.test_seeds
    plan.margin_s = margin = margin_for(cfg, model, layers)
    for family in cfg.grid.families:
        for target in targets:
            for density in (0,) if family == "tone" else densities:
                sep = separation_for(cfg, model, role, target)
                train, s1 = _specs(cfg, model, family, target, density, range(n_train), margin, sep)
                test, s2 = _specs(cfg, model, family, target, density, range(n_train, n_train + n_test), margin, sep)
                for reason, count in (*s1.items(), *s2.items()):
                    plan.skipped[reason] = plan.skipped.get(reason, 0) + count
                if not train or not test:
                    continue
                # the instrument family's target is the nearest MIDI note's fundamental
                used = train[0].target_hz
                for layer in layers:
                    unit = Unit(model.name, role, layer.name, family, float(used), int(density))
                    plan.train[unit], plan.test[unit] = train, test
    if not plan.test:
        reasons = "; ".join(f"{r} ({c})" for r, c in plan.skipped.items()) or "none"
        raise ConfigError(f"no feasible stimuli for {model.name}: every combination was skipped ({reasons})")
    return plan


def control_layer(cfg: PartialsConfig, model: AudioModel) -> str:
    """The layer a positive-control model is steered at: ``controls.positive_layers[model]``,
    else its only layer, else the layer it declares as ``control_layer``."""
    from steerlab import api

    given = cfg.controls.layer_for(model.name)
    if given:
        return given
    names = list(api.layers(model).items)
    declared = getattr(model, "control_layer", None)
    if len(names) == 1:
        return names[0]
    if isinstance(declared, str) and declared:
        return declared
    raise ConfigError(
        f"positive-control model {model.name} has {len(names)} layers and declares no control_layer; "
        f'name one in [controls] positive_layers = {{{model.name} = "LAYER"}} '
        f"(layers: {', '.join(names)})"
    )


def control_targets(cfg: PartialsConfig, model: AudioModel) -> tuple[float, ...]:
    targets = cfg.controls.positive_targets_hz or _snap_to_bands(model, cfg.grid.targets_hz)
    _check_targets(model, targets, "positive-control target")
    return tuple(targets)


@dataclass(frozen=True)
class DirectionRef:
    """Which direction: a unit, a method and the path its activations were captured on."""

    unit: Unit
    method: str
    capture_path: str

    def id(self) -> str:
        return config_hash({**dataclasses.asdict(self.unit), "method": self.method, "capture_path": self.capture_path})


def work_items(
    plan: ModelPlan, cfg: PartialsConfig, config_hash: str, available: dict[DirectionRef, Any]
) -> list[WorkItem]:
    """Every patched decode of ``plan`` whose direction is ``available``, in run order; then the
    ``sae_ablate`` items of the ``sae`` method (removal in the SAE's code space, issue 11) in the
    same order, after every other item, so those keep the order and batches they had before."""
    settings = [("add", s) for s in cfg.grid.strengths]
    settings += [("subtract", s) for s in cfg.grid.subtract_strengths] + [("ablate", 0.0)]
    out = _items(plan, cfg, config_hash, available, settings, plan.methods)
    return out + _items(plan, cfg, config_hash, available, [("sae_ablate", 0.0)], ("sae",))


def _items(
    plan: ModelPlan,
    cfg: PartialsConfig,
    config_hash: str,
    available: dict[DirectionRef, Any],
    settings: list[tuple[str, float]],
    methods: Sequence[str],
) -> list[WorkItem]:
    out: list[WorkItem] = []
    layer_index = {layer.name: i for i, layer in enumerate(plan.layers)}
    units = sorted(plan.test, key=lambda u: (layer_index[u.layer], u.family, u.target_hz, u.density))
    for path in plan.paths:
        for unit in units:
            layer = plan.layers[layer_index[unit.layer]]
            if path not in plan.paths_for(layer):
                continue
            for method in plan.methods:
                ref = DirectionRef(unit, method, plan.capture_path(layer, path))
                if method not in methods or ref not in available:
                    continue
                for spec in plan.test[unit]:
                    for op, strength in settings:
                        out.append(
                            WorkItem(
                                config_hash,
                                plan.model.name,
                                layer.name,
                                spec,
                                OP_ROLE[op],
                                method,
                                ref.id(),
                                op,
                                strength,
                                path,
                                cfg.grid.n_q,
                            )
                        )
    return out


def batches(items: Sequence[WorkItem], max_batch: int) -> list[list[WorkItem]]:
    """Consecutive runs of at most ``max_batch`` items sharing model, path and layer."""
    out: list[list[WorkItem]] = []
    for item in items:
        if out and len(out[-1]) < max_batch and out[-1][0].batch_group == item.batch_group:
            out[-1].append(item)
        else:
            out.append([item])
    return out
