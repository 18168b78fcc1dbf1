"""Dictionaries resolved for a model, and the learned directions they hold.

:func:`resolve_dictionary` finds a dictionary (a folder, or the name of one shipped with
the model's weights) and checks it belongs to the model; :func:`check_dictionary_fits` is
THE check that a dictionary fits a model (and a layer and target, when given), used by every
command that reads a dictionary (``intervene --feature``, ``feature-clamp``, ``analyze``);
:func:`learned_direction` gives a latent's decoder direction as a
:class:`~steerlab.interventions.Direction`.

The policy, one for all: the dictionary must have been learned on the same model (name) and
the same weights (its recorded weights hash equals the model's; a dictionary that records no
weights hash is refused too), its layer must be one of the model's (and the requested one),
its target (features or archetypes) the requested one, and its width that layer's channel count. ``analyze`` and
``intervene`` offer a way round the weights check (``allow_weights_mismatch``, ``--allow-weights-mismatch``), and say
so in their messages; a dictionary imported from SAELens records no weights hash and why (its ``weights_note``), and the
message says that too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from steerlab.errors import DirectionError, SteerlabError
from steerlab.interventions import Direction
from steerlab.loading import layers
from steerlab.model import AudioModel, LayerInfo

if TYPE_CHECKING:
    from steerlab.dictionary import Dictionary


@dataclass(frozen=True)
class DictionaryRef:
    """A dictionary resolved for a model: where it came from and what it holds."""

    spec: str
    path: Path
    dictionary: Dictionary
    config_sha256: str
    #: resolved with ``allow_weights_mismatch``: later checks of this ref let its weights pass too
    weights_mismatch_allowed: bool = False

    def to_json(self) -> dict[str, Any]:
        d = self.dictionary
        return {
            "spec": self.spec,
            "path": str(self.path),
            "config_sha256": self.config_sha256,
            "kind": d.target,
            "model": d.model,
            "model_weights_hash": d.weights_hash,
            "layer": d.layer,
            "size": d.config.size,
            **({"weights_mismatch_allowed": True} if self.weights_mismatch_allowed else {}),
        }


def _named(label: str) -> str:
    return f"dictionary {label}" if label else "the dictionary"


def check_model_name(d: Dictionary, name: str, label: str = "") -> None:
    """The first part of :func:`check_dictionary_fits`, usable before a model is loaded:
    :class:`~steerlab.dictionary.DictionaryError` when ``d`` was learned on another model than
    ``name``. ``label``: how messages name the dictionary (its spec or folder)."""
    from steerlab.dictionary import DictionaryError

    if d.model != name:
        raise DictionaryError(
            f"{_named(label)} was learned on {d.model!r}, not {name!r}; "
            f"use model {d.model} or a dictionary learned on {name} (`steerlab learn`)",
            parameter="model",
        )


def _check_belongs(d: Dictionary, model: AudioModel, label: str, allow_weights_mismatch: bool | None) -> None:
    """The model-level part of :func:`check_dictionary_fits`: same model name, same weights."""
    from steerlab.dictionary import DictionaryError

    check_model_name(d, model.name, label)
    ours = model.weights_hash()
    if d.weights_hash != ours and not allow_weights_mismatch:
        escape = "" if allow_weights_mismatch is None else ", or pass allow_weights_mismatch"
        parameter = ("checkpoint",) if allow_weights_mismatch is None else ("checkpoint", "allow_weights_mismatch")
        if d.weights_hash is None and d.weights_note:
            how = (
                "; pass allow_weights_mismatch if you know it was trained on these weights"
                if allow_weights_mismatch is not None
                else "; re-learn it on these weights (`steerlab learn`)"
            )
            raise DictionaryError(
                f"{_named(label)} was {d.weights_note} ({model.name} has weights {ours[:12]}){how}",
                parameter=parameter[1:],
            )
        theirs = "no weights hash" if d.weights_hash is None else f"weights {d.weights_hash[:12]}"
        raise DictionaryError(
            f"{_named(label)} has {theirs} but {model.name} has weights {ours[:12]}; re-learn it on these weights "
            f"(`steerlab learn`) or load the weights it was learned on (checkpoint){escape}",
            parameter=parameter,
        )


def check_dictionary_fits(
    dictionary: DictionaryRef | Dictionary,
    model: AudioModel,
    layer: LayerInfo | None = None,
    target: str | None = None,
    *,
    allow_weights_mismatch: bool | None = None,
    label: str | None = None,
) -> LayerInfo:
    """Check that a dictionary (a :class:`DictionaryRef` or a loaded ``Dictionary``) fits
    ``model``, and ``layer`` and ``target`` (``feature`` or ``archetype``) when given; return the
    model's layer it describes.

    Refused, with one line (:class:`~steerlab.dictionary.DictionaryError`), in this order: another
    model; other weights or no recorded weights hash (unless ``allow_weights_mismatch`` is True;
    False says in the message that it may be, None offers no way round); a layer the model does
    not have or other than ``layer``; another target; a width other than the layer's channels.
    ``label``: how messages name the dictionary (default: the ref's spec)."""
    from steerlab.dictionary import DictionaryError

    ref = dictionary if isinstance(dictionary, DictionaryRef) else None
    d = dictionary.dictionary if isinstance(dictionary, DictionaryRef) else dictionary
    label = label if label is not None else (ref.spec if ref is not None else "")
    if ref is not None and ref.weights_mismatch_allowed:
        allow_weights_mismatch = True
    _check_belongs(d, model, label, allow_weights_mismatch)
    try:
        info: LayerInfo | None = layers(model).get(d.layer)
    except SteerlabError:
        info = None
    if layer is not None and (info is None or info.name != layer.name):
        raise DictionaryError(
            f"{_named(label)} describes {d.layer!r}, not {layer.name!r}; "
            f"use layer {d.layer} or a dictionary of {layer.name}",
            parameter="layer",
        )
    if info is None:
        raise DictionaryError(
            f"{_named(label)} describes layer {d.layer!r}, which {model.name} does not have; see `steerlab layers`"
        )
    if target is not None and d.target != target:
        raise DictionaryError(
            f"{_named(label)} holds {d.target}s, not {target}s; use it with target={d.target!r}", parameter="target"
        )
    if d.config.width != info.channels:
        raise DictionaryError(
            f"{_named(label)} has width {d.config.width} but layer {info.name!r} has "
            f"{info.channels} channels; it is damaged or from another model"
        )
    return info


def resolve_dictionary(
    spec: str | Path | DictionaryRef, model: AudioModel, *, allow_weights_mismatch: bool | None = None
) -> DictionaryRef:
    """A dictionary for ``model`` from ``spec``: a folder written by ``steerlab learn``, or
    the name of a dictionary shipped with the model's weights (``model.shipped_dictionaries()``,
    listed by ``steerlab dictionaries``), checked to belong to ``model`` (same model, same
    weights: the first checks of :func:`check_dictionary_fits`, which the caller then runs with
    its layer and target). ``allow_weights_mismatch``: as in :func:`check_dictionary_fits`; True
    is remembered by the ref (a ref resolved with it passes later checks)."""
    from dataclasses import replace

    from steerlab import dictionary
    from steerlab.artifacts import file_sha256

    if isinstance(spec, DictionaryRef):
        ref = spec
    else:
        folder = dictionary.locate(spec, model.shipped_dictionaries(), model.name)  # the one name resolver
        d = dictionary.load(folder)
        ref = DictionaryRef(str(spec), folder.resolve(), d, file_sha256(folder / dictionary.CONFIG_FILE))
    allowed = ref.weights_mismatch_allowed or bool(allow_weights_mismatch)
    _check_belongs(ref.dictionary, model, ref.spec, True if allowed else allow_weights_mismatch)
    if allowed and not ref.weights_mismatch_allowed and ref.dictionary.weights_hash != model.weights_hash():
        ref = replace(ref, weights_mismatch_allowed=True)
    return ref


def parse_learned(value: str) -> tuple[str, int]:
    """``DICT:ID`` -> ``(DICT, ID)``."""
    spec, sep, index = str(value).rpartition(":")
    try:
        j = int(index)
    except ValueError:
        j = -1
    if not sep or not spec or j < 0:
        raise DirectionError(
            f"{value!r} is not DICT:ID; give a dictionary folder and a latent number, e.g. dicts/feat:3"
        )
    return spec, j


class LearnedDirection(NamedTuple):
    """A dictionary latent's decoder direction: the dictionary it came from, the latent's
    number, and the direction (unpacks as ``ref, latent, direction``)."""

    ref: DictionaryRef
    latent: int
    direction: Direction


def learned_direction(
    value: str | tuple[str | Path | DictionaryRef, int],
    model: AudioModel,
    layer: str,
    target: str = "feature",
    *,
    allow_weights_mismatch: bool | None = None,
) -> LearnedDirection:
    """The decoder direction of latent ``ID`` of dictionary ``DICT`` (``"DICT:ID"`` or a pair),
    in the layer's activation units (unit norm), checked against the model, layer and target
    (:func:`check_dictionary_fits`; ``allow_weights_mismatch`` as there: ``intervene
    --allow-weights-mismatch``). Raises :class:`~steerlab.errors.DirectionError` for a
    latent out of range."""
    spec, j = parse_learned(value) if isinstance(value, str) else value
    ref = resolve_dictionary(spec, model, allow_weights_mismatch=allow_weights_mismatch)
    check_dictionary_fits(ref, model, layers(model).get(layer), target, allow_weights_mismatch=allow_weights_mismatch)
    size = ref.dictionary.config.size
    if not 0 <= j < size:
        raise DirectionError(
            f"{target} {j} is out of range: dictionary {ref.spec} has {size} {target}s (0..{size - 1})"
        )
    vec = ref.dictionary.directions[j].detach().double().numpy()
    provenance = {"source": target, "id": j, "dictionary": ref.to_json()}
    return LearnedDirection(ref, j, Direction(vec, provenance))
