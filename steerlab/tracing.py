"""The one place steerlab touches nnsight: batched, patched forward passes.

:func:`run` takes plain tensors and callables and returns plain tensors. Items are
batched by right-padding every waveform with zeros to the longest one (each input
is already padded to a whole number of frames) and run as one traced forward pass
(one nnsight invoke holding the whole batch), each item's edit applied to its own
row of the layer's output. For causal models this leaves every item's output within
its own length unchanged, so batched and unbatched results agree; models whose
normalisation spans the whole time axis (``ragged_batching=False``) are batched only
with inputs of the same length. A layer whose module runs several times in one
forward (``AudioModel.layer_calls``, e.g. once per generated frame) is edited on every
call, not only on nnsight's default first call. Inputs go to the model's device and
results come back on the CPU.

:func:`capture` is the read-only counterpart: it saves the unpatched outputs of
several layers for a list of waveforms, one batched pass per group of inputs,
and stops the model right after the last requested layer.

The tracer names no model's modules: it reads the layers it is given
(``LayerInfo.module_path``), the model's output, and the submodule outputs the model
declares in ``AudioModel.traced_outputs``. nnsight refuses to read a module once the
forward pass has run past it, so reads are requested in forward order, which the
caller passes (``order``: the model's layer names in forward order, e.g.
``steerlab.api.layers(model).names()``) whenever a pass reads more than one place.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from nnsight import NNsight

from steerlab.errors import SteerlabError
from steerlab.model import AudioModel, LayerInfo, TracedOutput

# edit(activation [1, channels, frames], valid_frames) -> patched activation (same shape)
Edit = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass
class TraceItem:
    """One input of a batched pass; ``wave`` is ``[channels, samples]`` at the model's rate."""

    wave: torch.Tensor
    layer: LayerInfo | None = None
    edit: Edit | None = None
    save_activation: bool = False


@dataclass
class TraceResult:
    output: torch.Tensor  # [channels, samples] (decode) or [classes] for models without a decoder
    activation: torch.Tensor | None = None  # unpatched layer output [channels, frames]
    patched_activation: torch.Tensor | None = None
    # the model's declared traced outputs read on this pass, by name: [..., frames]
    traced: dict[str, torch.Tensor] = field(default_factory=dict)


class _EnvoySlot:
    """A model's nnsight wrapper, kept on the model itself.

    A global table keyed by the model (even a ``WeakKeyDictionary``) would keep every traced
    model alive: the wrapper refers to its model, so the table's value would hold its own key.
    On the model the two form a cycle that the garbage collector frees with the model. A copy
    of the model starts with an empty slot (a wrapper belongs to the model it wraps)."""

    __slots__ = ("envoy",)

    def __init__(self, envoy: NNsight | None = None) -> None:
        self.envoy = envoy

    def __copy__(self) -> _EnvoySlot:
        return _EnvoySlot()

    def __deepcopy__(self, memo: dict) -> _EnvoySlot:
        return _EnvoySlot()

    def __reduce__(self) -> tuple:
        return (_EnvoySlot, ())


_ENVOY_ATTR = "_steerlab_envoy"


def envoy_for(model: AudioModel) -> NNsight:
    """The (cached) nnsight wrapper of ``model``; the cache lives and dies with the model."""
    slot = model.__dict__.get(_ENVOY_ATTR)
    if slot is None or slot.envoy is None or slot.envoy._module is not model:
        slot = _EnvoySlot(NNsight(model))
        model.__dict__[_ENVOY_ATTR] = slot
    return slot.envoy


def resolve(envoy: NNsight, module_path: str):
    """The envoy at a dotted path of attribute names and integer indices."""
    node = envoy
    for part in module_path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _device(model: AudioModel) -> torch.device:
    """Where ``model``'s weights live (its first parameter or buffer; the CPU if it has none)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def _pad_to_frames(model: AudioModel, wave: torch.Tensor) -> torch.Tensor:
    return F.pad(wave, (0, model.padded_length(wave.shape[-1]) - wave.shape[-1]))


def _groups(model: AudioModel, items: list[TraceItem], max_batch: int) -> list[list[int]]:
    """Indices of items that share one forward pass."""
    if model.ragged_batching:
        order = sorted(range(len(items)), key=lambda i: items[i].wave.shape[-1])
        return [order[i : i + max_batch] for i in range(0, len(order), max_batch)]
    by_len: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        by_len.setdefault(item.wave.shape[-1], []).append(i)
    return [g[i : i + max_batch] for g in by_len.values() for i in range(0, len(g), max_batch)]


def _layer_groups(model: AudioModel, items: list[TraceItem], group: list[int]) -> list[list[int]]:
    """``group`` split so that a pass that edits a layer whose module runs several times edits
    no other layer (its calls are walked with ``tracer.iter``, which cannot interleave with
    other layers): one part per such layer, one for the single-call layers, one for items
    without a layer."""
    placed = [(i, layer) for i, layer in ((i, items[i].layer) for i in group) if layer is not None]
    multi = {i: layer.name for i, layer in placed if model.layer_calls(layer) > 1}
    edited = {layer.name for _, layer in placed}
    if not multi or len(edited) == 1:
        return [group]
    parts: dict[str | None, list[int]] = {}
    for i in group:
        key = multi.get(i, "" if items[i].layer is not None else None)  # "": the single-call layers
        parts.setdefault(key, []).append(i)
    return list(parts.values())


def _batch(model: AudioModel, waves: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """``[batch, channels, samples]`` on ``device``: each wave padded to whole frames, then all
    right-padded with zeros to the longest."""
    inputs = [_pad_to_frames(model, w) for w in waves]
    longest = max(x.shape[-1] for x in inputs)
    return torch.stack([F.pad(x, (0, longest - x.shape[-1])) for x in inputs]).to(device)


def _forward_order(
    model: AudioModel, layers: list[LayerInfo], order: Sequence[str] | None, reads: Sequence[TracedOutput] = ()
) -> list[LayerInfo]:
    """``layers`` without duplicates, in the forward order ``order`` (the model's layer names).

    ``order`` may be None when there is nothing to order: one layer and no traced output."""
    unique = list({layer.name: layer for layer in layers}.values())
    if len(unique) + (len(reads) if unique else 0) <= 1:
        return unique
    if order is None:
        places = ", ".join([layer.name for layer in unique] + [t.name for t in reads])
        raise SteerlabError(
            f"a pass over several places of {model.name!r} ({places}) needs their forward order: "
            "pass order=<the model's layer names in forward order>",
            parameter="order",
        )
    names = list(order)
    unknown = [layer.name for layer in unique if layer.name not in names]
    unknown += [t.before for t in reads if t.before not in names]
    if unknown:
        raise SteerlabError(
            f"layer(s) {', '.join(unknown)} not in the layer table of {model.name!r}; see steerlab layers"
        )
    return sorted(unique, key=lambda layer: names.index(layer.name))


def _read_at(layers: list[LayerInfo], reads: Sequence[TracedOutput], order: Sequence[str] | None) -> list[int]:
    """For each traced output, the index of the first of ``layers`` (in forward order) that the
    forward pass reaches after it: its read is requested just before that layer's."""
    if not layers:
        return [0 for _ in reads]
    names = list(order or ())
    return [
        next((k for k, layer in enumerate(layers) if names.index(layer.name) >= names.index(t.before)), len(layers))
        for t in reads
    ]


def _edit_rows(
    target, rows: list[tuple[int, TraceItem, int]], slot: dict, name: str, first: bool, repeat: Any = None
) -> None:
    """Read ``target``'s output for the whole batch and apply each row's edit to its own row;
    the unpatched and patched batch are saved from the first call. ``repeat`` (a pass over
    distinct inputs, :func:`_shared_inputs`): the index of each item's input row, by which the
    output is first repeated into one row per item."""
    act = target.output
    if repeat is not None:
        act = act.index_select(0, repeat)
    if first and any(item.save_activation for _, item, _ in rows):
        slot[("act", name)] = act.clone().save()
    edited = [(row, item.edit, n_frames) for row, item, n_frames in rows if item.edit is not None]
    if not edited:
        if repeat is not None:
            target.output = act
        return
    new = list(act.split(1))
    for row, edit, n_frames in edited:
        new[row] = edit(act[row : row + 1], n_frames)
    patched: Any = torch.cat(new, 0)  # an nnsight proxy inside the trace (it has .save())
    target.output = patched
    if first:
        slot[("patched", name)] = patched.save()


def _shared_inputs(
    model: AudioModel, items: list[TraceItem], group: list[int], read_at: list[int]
) -> tuple[list[int], list[int]] | None:
    """For a pass that may run each distinct input once up to its one edited layer: the
    positions in ``group`` of the inputs that go into the batch (the first of each distinct
    wave, equal by value) and, per position, its input's row; None where it may not (a model
    that has not declared ``rows_independent``, items at several layers or none, a layer run
    several times per forward, a traced output read before the layer, or no input shared)."""
    if not model.rows_independent or any(r == 0 for r in read_at):
        return None
    layers = {layer.name if layer is not None else None for layer in (items[i].layer for i in group)}
    if len(layers) != 1 or None in layers:
        return None
    if model.layer_calls(cast(LayerInfo, items[group[0]].layer)) != 1:
        return None
    first: dict[tuple, int] = {}
    inputs: list[int] = []
    index = []
    for pos, i in enumerate(group):
        w = items[i].wave.detach().cpu().contiguous()
        key = (tuple(w.shape), str(w.dtype), hashlib.sha256(w.numpy().tobytes()).digest())
        if key not in first:
            first[key] = len(inputs)
            inputs.append(pos)
        index.append(first[key])
    return (inputs, index) if len(inputs) < len(group) else None


def _cpu_copy(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy of ``t`` that holds only its own elements (not the batch it was sliced from)."""
    return t.clone() if t.device.type == "cpu" else t.cpu()


@torch.no_grad()
def run(
    model: AudioModel,
    items: list[TraceItem],
    path: str | None = None,
    n_q: int | None = None,
    save_traced: bool = False,
    max_batch: int = 16,
    order: Sequence[str] | None = None,
    share_inputs: bool = False,
) -> list[TraceResult]:
    """Run ``items`` through ``model`` in batched traced passes, applying each item's edit.

    ``save_traced``: also read the model's declared ``traced_outputs`` that run on ``path``
    (into ``TraceResult.traced``). ``order``: the model's layer names in forward order, needed
    when a pass reads more than one place (several layers, or a layer and a traced output);
    a :class:`SteerlabError` says so when it is missing. Inputs are moved to the model's device;
    results are CPU tensors.

    ``share_inputs``: a pass whose items are all edited at one layer (run once per forward),
    of a model that declares ``rows_independent``, with no traced output read before that
    layer, runs each distinct input (equal by value) once up to the layer and repeats its row
    there, one per item, before the edits: the layers before it cost a pass of the distinct
    inputs instead of all items. The results equal those of the unshared pass up to the last
    bits of a float (a convolution's result depends on the batch's size), so a caller whose
    outputs are pinned bit for bit leaves it False.

    Each pass is ONE nnsight invoke holding the whole batch: an invoke per item cost about a
    millisecond each of tracing machinery (measured: 13% of a bare forward at 16 items per
    pass), so the edits are applied row by row inside a single intervention per layer.
    """
    path = model.check_path(path or model.default_path)
    envoy = envoy_for(model)
    kwargs: dict[str, Any] = {"path": path} if model.has_decoder else {}
    if n_q is not None:
        kwargs["n_q"] = n_q
    reads = [t for t in model.traced_outputs if path in t.paths] if save_traced else []
    device = _device(model)
    results: list[TraceResult | None] = [None] * len(items)
    groups = [part for g in _groups(model, items, max_batch) for part in _layer_groups(model, items, g)]
    for group in groups:
        scales = [model.input_scale(items[i].wave) for i in group]
        placed = [
            (r, item, at)
            for r, item, at in ((r, items[i], items[i].layer) for r, i in enumerate(group))
            if at is not None
        ]
        layers = _forward_order(model, [at for _, _, at in placed], order, reads)
        rows = {
            layer.name: [
                (r, item, at.frames_for(item.wave.shape[-1])) for r, item, at in placed if at.name == layer.name
            ]
            for layer in layers
        }
        read_at = _read_at(layers, reads, order)
        shared = _shared_inputs(model, items, group, read_at) if share_inputs else None
        reference = None
        if shared is None:
            batch = _batch(model, [items[i].wave / s for i, s in zip(group, scales)], device)
            repeat = None
        else:  # one row per distinct input up to the layer, repeated there into one row per item
            inputs, index = shared
            batch = _batch(model, [items[group[r]].wave / scales[r] for r in inputs], device)
            repeat = torch.tensor(index, device=device)
            place = _sharing_place(model, layers[0].name, path, n_q)
            if place not in _SHARING_CHECKED:  # the first shared pass at this place in this process: checked
                _SHARING_CHECKED.add(place)
                sub = [items[i] for i in group]
                reference = run(model, sub, path, n_q, save_traced, len(sub), order, share_inputs=False)
        slot: dict = {}
        with (
            _sharing_failure(model, layers[0].name if repeat is not None else None),
            envoy.trace(batch, **kwargs) as tracer,
        ):
            for k, layer in enumerate(layers + [None]):
                for t, at in zip(reads, read_at):
                    if at == k:
                        slot[("traced", t.name)] = resolve(envoy, t.module_path).output.save()
                if layer is None:
                    break
                target = resolve(envoy, layer.module_path)
                calls = model.layer_calls(layer)
                if calls == 1:
                    _edit_rows(target, rows[layer.name], slot, layer.name, first=True, repeat=repeat)
                else:
                    # nnsight binds a module's first call by default; a module run several
                    # times per forward (a generation loop) is patched on each of its calls,
                    # each pass of this loop binding the next one
                    for step in tracer.iter[:calls]:
                        _edit_rows(target, rows[layer.name], slot, layer.name, first=step == 0)
            slot["out"] = envoy.output.save()
        for row, (i, s) in enumerate(zip(group, scales)):
            n = items[i].wave.shape[-1]
            layer = items[i].layer
            frames = layer.frames_for(n) if layer is not None else 0
            act = slot.get(("act", layer.name)) if layer is not None and items[i].save_activation else None
            patched = slot.get(("patched", layer.name)) if layer is not None and items[i].edit is not None else None
            out = slot["out"][row]
            results[i] = TraceResult(
                # (copies: one item's result must not keep the whole batch alive)
                output=(out[..., : model.output_length(n)] * s).cpu()
                if model.has_decoder
                else _trim_output(model, out, n),
                activation=_cpu_copy(act[row, :, :frames]) if act is not None else None,
                patched_activation=_cpu_copy(patched[row, :, :frames]) if patched is not None else None,
                traced={t.name: _cpu_copy(slot[("traced", t.name)][row][..., : -(-n // model.hop)]) for t in reads},
            )
        if reference is not None:
            _check_shared(model, layers[0].name, [cast(TraceResult, results[i]) for i in group], reference)
        del slot, tracer, batch
        gc.collect(1)  # see capture(): nnsight's cycles would keep each batch alive
    return results  # type: ignore[return-value]  # no None left: the groups cover every item


# the places (model name and configuration, layer, path, n_q) whose first shared pass was checked in
# this process: rows' independence belongs to the architecture, so one check serves every loaded copy
_SHARING_CHECKED: set[tuple] = set()
SHARING_TOLERANCE = 1e-3  # of the outputs' largest magnitude; measured differences: 1e-7 to 2e-5


def _sharing_place(model: AudioModel, layer: str, path: str, n_q: int | None) -> tuple:
    return (model.name, repr(sorted((str(k), repr(v)) for k, v in dict(model.config).items())), layer, path, n_q)


def _check_shared(model: AudioModel, layer: str, shared: list[TraceResult], reference: list[TraceResult]) -> None:
    """The first pass with shared inputs at a place of ``model`` against the same items unshared:
    a model that declares ``rows_independent`` wrongly (a batch statistic, rows mixed before the
    layer) changes its outputs by more than a float's last bits, and the run stops here."""
    scale = max((float(r.output.abs().max()) for r in reference if r.output.numel()), default=0.0)
    diff = max(
        float((a.output.float() - b.output.float()).abs().max()) if a.output.shape == b.output.shape else float("inf")
        for a, b in zip(shared, reference)
    )
    if not diff <= SHARING_TOLERANCE * max(scale, 1e-12):
        raise SteerlabError(
            f"model {model.name!r} declares rows_independent, but running equal inputs once up to {layer} "
            f"changes its output by {diff:.3g} (largest output {scale:.3g}); its rows are not independent: "
            "set rows_independent = False in the model's plugin"
        )


@contextmanager
def _sharing_failure(model: AudioModel, layer: str | None) -> Iterator[None]:
    """A forward pass with shared inputs (``layer`` not None) that fails names the likely cause."""
    try:
        yield
    except SteerlabError:
        raise
    except Exception as exc:
        if layer is None:
            raise
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SteerlabError(
            f"model {model.name!r} declares rows_independent, but its forward failed on inputs shared up to "
            f"{layer} ({first}); its rows are not independent: set rows_independent = False in the model's plugin"
        ) from exc


def _trim_output(model: AudioModel, out: torch.Tensor, n_samples: int) -> torch.Tensor:
    """A copy of one item's output without a decoder: frame-wise outputs lose the frames of
    the batch's padding (``AudioModel.output_frames``), logits stay whole."""
    frames = model.output_frames(n_samples)
    return _cpu_copy(out) if frames is None else _cpu_copy(out[..., :frames])


def _capture_path(model: AudioModel, layers: list[LayerInfo], path: str | None) -> str:
    """The decode path that reaches every layer: a layer named after a decode path exists only
    on that path."""
    if path is not None:
        return model.check_path(path)
    on_path = {layer.name for layer in layers if layer.name in model.paths and layer.name != model.default_path}
    if len(on_path) > 1:
        raise SteerlabError(
            f"layers {', '.join(sorted(on_path))} lie on different decode paths; capture them separately"
        )
    return on_path.pop() if on_path else model.default_path


@torch.no_grad()
def capture(
    model: AudioModel,
    waves: list[torch.Tensor],
    layers: list[LayerInfo],
    max_batch: int = 16,
    path: str | None = None,
    order: Sequence[str] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Unpatched outputs of ``layers`` for each wave, in batched traced passes.

    ``waves``: float tensors ``[channels, samples]`` at the model's rate. Returns, per
    wave, ``{layer.name: float32 [channels, frames]}`` trimmed to the wave's own
    ``layer.frames_for(samples)`` frames (padding frames of the batch are dropped) and
    copied out of the batch to the CPU, so holding one item does not keep the batch alive.
    Inputs are grouped and zero-padded exactly as in :func:`run` (so a capture equals
    the activation :func:`run` sees), every layer is read in the same pass, and the
    model stops after the last requested layer (the decoder is skipped when only
    encoder layers are asked for). ``path`` defaults to the one that reaches every
    layer. ``order`` (the model's layer names in forward order) is needed for more than
    one layer.
    """
    ordered = _forward_order(model, list(layers), order)
    if not ordered or not waves:
        return [{} for _ in waves]
    path = _capture_path(model, ordered, path)
    envoy = envoy_for(model)
    kwargs = {"path": path} if model.has_decoder else {}
    items = [TraceItem(w) for w in waves]
    device = _device(model)
    results: list[dict[str, torch.Tensor]] = [{} for _ in waves]
    for group in _groups(model, items, max_batch):
        batch = _batch(model, [waves[i] / model.input_scale(waves[i]) for i in group], device)
        saved: dict[str, torch.Tensor] = {}
        with envoy.trace(batch, **kwargs) as tracer:
            for layer in ordered:
                # a copy: later modules may write into their input in place
                saved[layer.name] = resolve(envoy, layer.module_path).output.clone().save()
            tracer.stop()
        for row, i in enumerate(group):
            n = waves[i].shape[-1]
            results[i] = {
                layer.name: saved[layer.name][row, :, : layer.frames_for(n)].float().cpu().clone() for layer in ordered
            }
        # nnsight's trace objects form reference cycles that keep the batch's
        # activations alive until the cyclic collector happens to run; on long
        # captures that let resident memory climb past 2 GB (issue 3 benchmark)
        del saved, tracer, batch
        gc.collect(1)
    return results
