"""What steerlab needs to know about a model: the :class:`AudioModel` interface,
its layers (:class:`LayerInfo`) and the options a loader takes.

An ``AudioModel`` is a ``torch.nn.Module`` whose ``forward(wave, path=...)`` maps a
batch of audio ``[batch, channels, samples]`` to its decode ``[batch, channels,
samples]`` (or to logits for a model without a decoder). Plugins subclass it;
the core never imports model-specific code.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from steerlab.errors import ModelLoadError, SteerlabError

if TYPE_CHECKING:
    import numpy as np

    from steerlab.registry import LayerRegistry


@dataclass(frozen=True)
class LoadOptions:
    """Options every model loader receives."""

    checkpoint: Path | None = None
    device: str = "cpu"
    # build the architecture with seeded random weights: enough for layer tables and
    # architecture predictions, and for timing; no weights file is needed
    random_init: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def check_extra(self, model: str, valid: tuple[str, ...] = ()) -> None:
        """Refuse loader options ``model`` does not take (a misspelt option must not be ignored)."""
        unknown = sorted(set(self.extra) - set(valid))
        if unknown:
            takes = f"it takes: {', '.join(valid)}" if valid else "it takes none"
            raise SteerlabError(f"model {model!r} has no option {', '.join(map(repr, unknown))}; {takes}")

    def computed_config(self, model: str, cls: type, computed: str) -> Any:
        """The frozen config dataclass ``cls`` of a model computed from its config alone (no weights
        file): a checkpoint is refused, each loader option must name a field of ``cls``, and the
        values go through ``cls``'s own checks. ``computed`` says what is computed, e.g. "its
        filters are". Raises :class:`ModelLoadError` with one line."""
        from dataclasses import fields

        if self.checkpoint is not None:
            raise ModelLoadError(
                f"{model} has no weights file: {computed} computed from its config; drop checkpoint",
                parameter="checkpoint",
            )
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(self.extra) - set(valid))
        if unknown:
            raise ModelLoadError(
                f"{model} has no option {', '.join(map(repr, unknown))}; valid options: {', '.join(valid)}"
            )
        try:
            return cls(**self.extra)
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(f"{model}: {exc}") from None


@dataclass(frozen=True)
class LayerInfo:
    """One hook point: a module whose output ``[batch, channels, frames]`` can be patched.

    ``hop`` is the cumulative stride in input samples; ``receptive_field`` the span
    of input samples one frame depends on through convolutions (``recurrent``
    marks layers whose true context reaches further to the left: after an LSTM, or in a causal
    transformer). ``context`` says, in one line, what that context is for this layer and what
    ``receptive_field`` counts then (tables print it as the footnote of a recurrent layer's mark,
    :attr:`context_note`); empty means the generic note.
    """

    name: str
    kind: str
    module_path: str
    channels: int
    stride: int
    hop: int
    sample_rate: int
    receptive_field: int
    kernel_size: int | None = None
    recurrent: bool = False
    side: str = "encoder"
    context: str = ""

    @property
    def context_note(self) -> str:
        """The footnote of a ``recurrent`` layer (its ``context``, or a note true of any model);
        ``""`` for a layer whose receptive field is its whole context."""
        if not self.recurrent:
            return ""
        return self.context or "the context to the left reaches past the receptive field; RF counts convolutions only"

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def nyquist_hz(self) -> float:
        return self.frame_rate / 2

    @property
    def receptive_field_ms(self) -> float:
        return 1000.0 * self.receptive_field / self.sample_rate

    def frames_for(self, n_samples: int) -> int:
        """Frames this layer has for an input of ``n_samples`` (padded to whole frames)."""
        return math.ceil(n_samples / self.hop)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "side": self.side,
            "channels": self.channels,
            "stride": self.stride,
            "kernel_size": self.kernel_size,
            "hop_samples": self.hop,
            "frame_rate_hz": self.frame_rate,
            "receptive_field_samples": self.receptive_field,
            "receptive_field_ms": self.receptive_field_ms,
            "recurrent": self.recurrent,
            "nyquist_hz": self.nyquist_hz,
        }


@dataclass(frozen=True)
class TracedOutput:
    """A submodule output, beyond the model's own output, that the tracer may read (read-only).

    ``name``: the key results carry it under (``"codes"`` for a codec's code indices, which
    ``codes_changed_share`` compares); ``module_path``: the module, as a dotted path of
    attribute names and indices from the model (as :attr:`LayerInfo.module_path`); ``paths``:
    the decode paths on which that module runs; ``before``: the name of the layer (in the
    model's layer table) that the forward pass reaches first after the module, so the tracer
    requests the read in forward order. The module's output is ``[batch, ..., frames]`` at the
    model's ``hop``; each item keeps its own ``ceil(samples / hop)`` frames.
    """

    name: str
    module_path: str
    paths: tuple[str, ...]
    before: str


class AudioModel(torch.nn.Module):
    """Base class of steerable audio models.

    Subclasses set the class attributes and implement :meth:`forward`. ``paths``
    lists the decode paths ``forward`` accepts (``"continuous"``, ``"quantized"``);
    ``hop`` is the frame size every input is zero-padded to a multiple of.
    ``causal`` models batch inputs of different lengths exactly by right-padding;
    non-causal ones append ``right_context`` zero samples first (same result
    batched or not). ``ragged_batching=False`` (models whose normalisation spans
    the whole time axis) makes the tracer batch only equal-length inputs.
    """

    name: str = "unnamed"
    family: str = "generic"
    sample_rate: int = 24_000
    channels: int = 1
    hop: int = 1
    causal: bool = True
    right_context: int = 0
    ragged_batching: bool = True
    # every row of a batch is computed from its own input alone (no batch statistics, no state
    # across rows, nothing after a layer reads the input again but its length): a pass whose
    # items share inputs and are all edited at one layer may run the layers before it once per
    # distinct input and repeat rows there (``steerlab.tracing.run(share_inputs=True)``).
    # False (the default) for a model that has not said so.
    rows_independent: bool = False
    paths: tuple[str, ...] = ("continuous",)
    default_path: str = "continuous"
    has_decoder: bool = True
    # what ``forward`` returns when ``has_decoder`` is False: "" for class logits, or the name
    # of an output space (e.g. "pitch_salience") scored by the scorers registered for it
    # (``ScorerSpec.output_kind``)
    output_kind: str = ""
    config: dict[str, Any] = {}
    # a folder of dictionaries (``steerlab learn`` format) learned on these very weights,
    # one subfolder per dictionary, usable by name: ``--feature first_conv-features:3``
    dictionaries_dir: Path | None = None
    # codebooks of the model's quantizer (``--n-q`` is checked against it); None: no quantizer
    n_q: int | None = None
    # without a decoder: one name per logit, used in scores.json; None: ``class0``, ``class1``, ...
    class_names: Sequence[str] | None = None
    # as a positive control of ``steerlab partials`` with several layers: the layer it steers
    control_layer: str | None = None
    # set by ``steerlab.load_model``: the layers the plugins registered for this model
    layer_registry: LayerRegistry | None = None
    # Optional arrays, declared without a class value because a plugin may make them buffers
    # (``register_buffer`` refuses a name the class already has); the core reads them with
    # ``getattr(model, name, None)``.
    # without a decoder, a spectrum-like output: the centre (Hz) of each output bin [bins]
    output_bins_hz: torch.Tensor | np.ndarray
    # a filterbank-like model: the centre (Hz) of each band of its steered layer [channels]
    centres_hz: torch.Tensor | np.ndarray
    # submodule outputs the tracer may read beside the output (``steerlab.tracing.run`` with
    # ``save_traced=True``); the core reads no other submodule of a model than its layers' and these
    traced_outputs: tuple[TracedOutput, ...] = ()

    def shipped_dictionaries(self) -> dict[str, Path]:
        """Dictionaries that ship with this model's weights, by name."""
        if self.dictionaries_dir is None or not Path(self.dictionaries_dir).is_dir():
            return {}
        return {p.name: p for p in sorted(Path(self.dictionaries_dir).iterdir()) if (p / "config.json").is_file()}

    def check_path(self, path: str) -> str:
        if path not in self.paths:
            raise SteerlabError(
                f"model {self.name!r} has no decode path {path!r}; valid paths: {', '.join(self.paths)}"
            )
        return path

    def input_scale(self, wave: torch.Tensor) -> float:
        """Divisor applied to ``wave [channels, samples]`` before encoding (and multiplied back
        onto the decode); 1.0 unless the model normalises its input level."""
        return 1.0

    def padded_length(self, n_samples: int) -> int:
        return math.ceil(n_samples / self.hop) * self.hop + self.right_context

    def layer_calls(self, layer: LayerInfo) -> int:
        """How many times ``layer``'s module runs in one forward pass; tracing patches every
        call. 1 unless ``forward`` loops over it (a generative model: once per generated frame)."""
        return 1

    def output_length(self, n_samples: int) -> int:
        """Samples of the decode that belong to an input of ``n_samples`` (the decode is trimmed
        to them): the input length, unless the model generates audio of a length of its own."""
        return n_samples

    def output_frames(self, n_samples: int) -> int | None:
        """For a model without a decoder whose output has a time axis (last axis, e.g. a
        salience ``[bins, frames]``): the output frames that belong to an input of
        ``n_samples`` (the rest, from batch padding, is trimmed). None: no time axis (logits)."""
        return None

    def weights_hash(self) -> str:
        """sha256 over parameter and buffer names, shapes and bytes (stable across saves).

        Computed once and reused while the weights stay as they are: the cache is keyed on each
        parameter's and buffer's identity, storage address, version counter (bumped by every
        in-place write, ``load_state_dict`` included), shape and dtype, so any change of the
        weights recomputes it. (A run records the hash with every item and chunk.)"""
        state = self.state_dict(keep_vars=True)
        try:
            key: tuple | None = tuple(
                (name, id(t), t.data_ptr(), t._version, tuple(t.shape), t.dtype) for name, t in state.items()
            )
        except RuntimeError:  # inference-mode tensors keep no version counter: no cache
            key = None
        cached = self.__dict__.get("_weights_hash_cache")
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        digest = self._compute_weights_hash(state)
        if key is not None:
            self.__dict__["_weights_hash_cache"] = (key, digest)
        return digest

    def _compute_weights_hash(self, state: dict[str, torch.Tensor]) -> str:
        h = hashlib.sha256()
        for key, tensor in sorted(state.items()):
            t = tensor.detach().cpu().contiguous()
            h.update(key.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "causal": self.causal,
            "paths": list(self.paths),
            "default_path": self.default_path,
            "weights_sha256": self.weights_hash(),
            "config": self.config,
        }
