"""The battery's grid: per concept and model, the layers, paths, pairs and work items.

A :class:`BatteryItem` is one patched decode, named completely (concept, model, layer, pair
spec and which signal of it, direction id, operation, strength, decode path) with the run's
configuration hash, so it can be serialised (:meth:`BatteryItem.to_dict`) and run anywhere given
the directions file; :meth:`BatteryItem.key` is its row's key in ``results.jsonl``. The grid's
shared settings (strengths, seeds, methods, batch size, probe frames, bootstrap) are those of
``steerlab partials`` (:func:`steerlab.partials.config.build`, with ``--quick`` its quick
preset), and so are the layer choice (:func:`steerlab.partials.plan.default_layers`,
``quick_layers``), a control's layer (:func:`~steerlab.partials.plan.control_layer`), the
margins (:func:`~steerlab.partials.plan.margin_for`) and the batches
(:func:`~steerlab.partials.plan.batches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from steerlab import validation as check
from steerlab.artifacts import config_hash
from steerlab.battery.calibrated import CALIBRATED_OPS, CALIBRATED_STRENGTHS
from steerlab.battery.concept import Concept, PairSpec
from steerlab.errors import ConfigError
from steerlab.model import AudioModel, LayerInfo
from steerlab.partials.config import PartialsConfig
from steerlab.partials.plan import (
    MAIN,
    OP_ROLE,
    OPS,
    POSITIVE,
    ROLES,
    KeyedItem,
    ModelPlan,
    check_strength,
)

FORMAT, FORMAT_VERSION = "steerlab-steerability", 1
# partials' operations, and ``reverse``: the add recipe with the direction's sign flipped, on the
# with-signal (strengths as add). Calibrated subtraction measures an item's excess from the
# training pairs' mean without-level, which a create/remove concept has (an empty band) and a
# raise/lower one does not (each pair's level is its own): reverse is the removal that needs no level.
# Then the calibrated raise and lower (steerlab.battery.calibrated): strengths in units of the
# training pairs' own mean projection difference along the direction, on add's span.
BATTERY_OPS = (*OPS, "reverse", *CALIBRATED_OPS)
BATTERY_OP_ROLE = {**OP_ROLE, "reverse": "with", **{op: role for op, (role, _) in CALIBRATED_OPS.items()}}


@dataclass(frozen=True)
class BatteryItem(KeyedItem):
    """One patched decode (module docstring). ``strength``: relative to the layer's RMS norm on
    the input for ``add`` and ``reverse``, to the measured projection excess for ``subtract``, to
    the training pairs' mean projection difference for ``add_calibrated`` and
    ``reverse_calibrated`` (:mod:`steerlab.battery.calibrated`), 0 for ``ablate``."""

    SPEC_FIELD = "pair"
    SPEC_TYPE = PairSpec

    config_hash: str
    concept: str
    model: str
    model_role: str
    layer: str
    pair: PairSpec
    role: str
    method: str
    direction_id: str
    op: str
    strength: float
    path: str
    n_q: int | None = None

    def __post_init__(self) -> None:
        check.choice("role", self.role, ROLES)
        check.choice("op", self.op, BATTERY_OPS)
        if BATTERY_OP_ROLE[self.op] != self.role:
            raise ConfigError(f"op {self.op!r} applies to {BATTERY_OP_ROLE[self.op]!r} signals, not {self.role!r}")
        check_strength(self.op, self.strength)

    @property
    def stimulus(self) -> PairSpec:
        """The pair (named as partials' work items name theirs, so the sweep's edit rules apply)."""
        return self.pair

    @property
    def batch_group(self) -> tuple[str, ...]:
        """Items batched together: one model, path and layer; a calibrated or ``sae_ablate`` item
        never shares a batch with another op's (:func:`work_items`)."""
        group = (self.model, self.path, self.layer)
        if self.op == "sae_ablate":
            return (*group, "sae_ablate")
        return (*group, "calibrated") if self.op in CALIBRATED_OPS else group


@dataclass
class ConceptPlan:
    """One model's part of a concept's run: a partials :class:`ModelPlan` (layers, paths, the
    capture path of each) and the concept's train and test pairs at the model's rate."""

    concept: Concept
    plan: ModelPlan
    train: list[PairSpec] = field(default_factory=list)
    test: list[PairSpec] = field(default_factory=list)

    @property
    def model(self) -> AudioModel:
        return self.plan.model

    @property
    def role(self) -> str:
        return self.plan.role


def concept_pairs(
    concept: Concept, sample_rate: int, seeds: Sequence[int], margin_s: float, quick: bool, variant: str = "synthetic"
) -> list[PairSpec]:
    """``concept.pairs(...)`` of one stimulus ``variant``: ``synthetic`` (every concept) or another
    of ``concept.variants`` (``instrument``: rendered GM notes), asked for by keyword, so a plugin
    whose ``pairs`` knows only the synthetic variant keeps working. Raises ConfigError for a variant
    the concept does not render."""
    if variant == "synthetic":
        return concept.pairs(sample_rate, seeds, margin_s, quick)
    check_variant(concept, variant)
    return concept.pairs(sample_rate, seeds, margin_s, quick, variant=variant)  # type: ignore[call-arg]


def renders(concept: Concept, variant: str) -> bool:
    """Whether the battery runs ``concept`` on stimulus ``variant`` (synthetic: every concept)."""
    if variant == "synthetic":
        return True
    return variant in getattr(concept, "variants", ("synthetic",)) and concept.delegate is None


def own_stimuli(concept: Concept, stimuli: str) -> str | None:
    """What the battery says when ``--stimuli`` asks a concept with a ``delegate`` (``partial``)
    for other than its synthetic pairs: it keeps its own (its ``[grid] families``); else None."""
    if concept.delegate is None or stimuli == "synthetic":
        return None
    return f"concept {concept.name} chooses its own stimuli (its [grid] families), not the {stimuli} ones asked for"


def check_variant(concept: Concept, variant: str) -> None:
    """ConfigError unless ``concept`` renders stimulus ``variant`` in the battery (a concept with
    a ``delegate`` chooses its stimuli itself: ``partial`` by its ``[grid] families``)."""
    if concept.delegate is not None and variant != "synthetic":
        raise ConfigError(
            f"{own_stimuli(concept, variant)}: the battery makes no {variant!r} pairs of it; ask for its "
            "synthetic pairs",
            parameter="stimuli",
        )
    if not renders(concept, variant):
        raise ConfigError(
            f"concept {concept.name!r} has no {variant!r} stimuli in the battery (it renders: "
            f"{', '.join(getattr(concept, 'variants', ('synthetic',)))}); choose the synthetic stimuli",
            parameter="stimuli",
        )


def direction_id(concept: str, model: str, layer: str, method: str, capture_path: str) -> str:
    return config_hash(
        {"concept": concept, "model": model, "layer": layer, "method": method, "capture_path": capture_path}
    )


def _layers(cfg: PartialsConfig, model: AudioModel, role: str, names: Sequence[str], quick: bool) -> list[LayerInfo]:
    from steerlab import api
    from steerlab.partials.plan import control_layer, default_layers, quick_layers

    reg = api.layers(model)
    if role == POSITIVE:
        return [reg.get(control_layer(cfg, model))]
    if names:
        return [reg.get(n) for n in names]
    return quick_layers(list(reg)) if quick else default_layers(list(reg))


def plan_concept(
    concept: Concept,
    cfg: PartialsConfig,
    model: AudioModel,
    role: str,
    quick: bool,
    layer_names: Sequence[str] = (),
    variant: str = "synthetic",
) -> ConceptPlan:
    """The plan of ``concept`` on ``model`` (main model or a positive control), its pairs of
    stimulus ``variant`` (:func:`concept_pairs`). Raises ConfigError for a model without a
    decoder (the concepts score decoded audio), a path it lacks or a variant the concept lacks."""
    from steerlab.partials.plan import margin_for

    if not model.has_decoder:
        raise ConfigError(
            f"steerlab steerability scores decoded audio, and {model.name} has no decoder; choose a model "
            "that decodes audio (steerlab models)"
        )
    layers = _layers(cfg, model, role, layer_names, quick)
    if role == MAIN and cfg.grid.paths:
        bad = [p for p in cfg.grid.paths if p not in model.paths]
        if bad:
            raise ConfigError(
                f"model {model.name} has no decode path {bad[0]!r}; valid paths: {', '.join(model.paths)}"
            )
        paths = list(cfg.grid.paths)
    else:
        paths = list(model.paths)
    methods = cfg.grid.methods if role == MAIN else cfg.controls.methods_for(cfg.grid.methods)
    plan = ModelPlan(model, role, layers, paths, (), (), methods=tuple(methods))
    plan.margin_s = margin = margin_for(cfg, model, layers)
    n_train, n_test = cfg.stimuli.train_seeds, cfg.stimuli.test_seeds
    train = concept_pairs(concept, model.sample_rate, range(n_train), margin, quick, variant)
    test = concept_pairs(concept, model.sample_rate, range(n_train, n_train + n_test), margin, quick, variant)
    return ConceptPlan(concept, plan, train, test)


def work_items(cp: ConceptPlan, cfg: PartialsConfig, config_hash: str, available: set[str]) -> list[BatteryItem]:
    """Every patched decode of ``cp`` whose direction id is in ``available``, in run order (path,
    layer, method, pair, then the settings of one pair together), then the calibrated items
    (:mod:`steerlab.battery.calibrated`) in the same order: the other items keep the order and
    the batches they had before the calibrated operations existed (those have a
    :attr:`~BatteryItem.batch_group` of their own), so their rows are unchanged to the bit; last the
    ``sae`` method's ``sae_ablate`` items (batches of their own too)."""
    settings = [("add", s) for s in cfg.grid.strengths]
    settings += [("subtract", s) for s in cfg.grid.subtract_strengths]
    settings += [("reverse", s) for s in cfg.grid.strengths] + [("ablate", 0.0)]
    calibrated = [(op, s) for op in CALIBRATED_OPS for s in CALIBRATED_STRENGTHS]
    out = _items(cp, cfg, config_hash, available, settings) + _items(cp, cfg, config_hash, available, calibrated)
    # the sae method's removal in the SAE's code space (steerlab.partials.sweep.sae_code_ablation), last
    return out + _items(cp, cfg, config_hash, available, [("sae_ablate", 0.0)], ("sae",))


def _items(
    cp: ConceptPlan,
    cfg: PartialsConfig,
    config_hash: str,
    available: set[str],
    settings: list[tuple[str, float]],
    methods: Sequence[str] | None = None,
) -> list[BatteryItem]:
    out: list[BatteryItem] = []
    plan = cp.plan
    for path in plan.paths:
        for layer in plan.layers:
            if path not in plan.paths_for(layer):
                continue
            for method in plan.methods:
                did = direction_id(cp.concept.name, plan.model.name, layer.name, method, plan.capture_path(layer, path))
                if did not in available or (methods is not None and method not in methods):
                    continue
                for pair in cp.test:
                    for op, strength in settings:
                        out.append(
                            BatteryItem(
                                config_hash,
                                cp.concept.name,
                                plan.model.name,
                                plan.role,
                                layer.name,
                                pair,
                                BATTERY_OP_ROLE[op],
                                method,
                                did,
                                op,
                                strength,
                                path,
                                cfg.grid.n_q,
                            )
                        )
    return out
