"""Interventions that replace activations with other activations: ``patch`` (those of a
source audio at the same layer) and ``mean-ablate`` (the mean over a reference set).

Both compute their replacement once per run in ``prepare``, on the run's decode path,
with the same batching and padding as the run itself (``steerlab.tracing.run``), so a
replacement equals what the traced pass would see for that audio. With a direction
``d`` they replace only the component along ``d``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from steerlab.errors import InterventionError


def _replace(act, target, direction, weight):
    """``a_t + w_t (x_t - a_t)``, or along ``d`` only: ``a_t + w_t <x_t - a_t, d> d``."""
    diff = target - act
    if direction is None:
        return act + diff * weight[None, :]
    return act + direction[:, None] * (weight * (direction @ diff))[None, :]


@dataclass(frozen=True)
class PatchState:
    activation: Any  # [channels, frames] of the source at the layer
    source: dict

    @property
    def frames(self) -> int:
        return int(self.activation.shape[-1])

    def to_json(self) -> dict[str, Any]:
        return {**self.source, "source_frames": self.frames}


def _source_wave(source: Any, model) -> tuple[Any, dict]:
    """The source as float32 ``[channels, samples]`` at the model's rate, and its description."""
    import hashlib

    import numpy as np

    from steerlab import audio
    from steerlab.artifacts import file_sha256

    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise InterventionError(
                f"{str(source)!r} not found: source must be an audio file or an array [channels, samples]",
                parameter="source",
            )
        wave, conversion = audio.load(path, model.sample_rate, model.channels)
        return wave, {
            "source": str(path.resolve()),
            "sha256": file_sha256(path),
            "conversion": conversion.describe(),
            "duration_s": wave.shape[-1] / model.sample_rate,
        }
    wave = audio.validate_array(source, "patch source")
    if wave.shape[0] != model.channels:
        raise InterventionError(f"patch source has {wave.shape[0]} channels but {model.name} takes {model.channels}")
    return wave, {
        "source": "array",
        "sha256": hashlib.sha256(np.ascontiguousarray(wave).tobytes()).hexdigest(),
        "duration_s": wave.shape[-1] / model.sample_rate,
    }


@dataclass(frozen=True)
class Patch:
    """Replace the layer's activations on the span with those of a source audio.

    Frame ``t`` of the input gets frame ``t`` of the source (both start at frame 0). A
    span reaching past the source's last frame is refused (:meth:`check`), rather than
    patching some frames and silently leaving others.
    """

    name: str = "patch"
    formula: str = "a_t <- a_t + w_t * (s_t - a_t)  [with d: a_t + w_t * <s_t - a_t, d> * d]"
    description: str = "replace activations on the span with a source audio's at the same layer (frame 0 to frame 0)"
    value_scale: str = "none"
    needs_direction: bool = False
    chunkable: bool = False
    options_help = MappingProxyType(
        {
            "source": "audio file (or array [channels, samples] at the model's rate) whose activations replace the input's",
        }
    )

    def prepare(self, model, layer, direction, options, context=None):
        import torch

        from steerlab import tracing

        if options.get("source") is None:
            raise InterventionError(
                "patch needs the option source: an audio file or an array [channels, samples] "
                "whose activations replace the input's",
                parameter="source",
            )
        wave, description = _source_wave(options["source"], model)
        item = tracing.TraceItem(torch.from_numpy(wave).float(), layer, save_activation=True)
        res = tracing.run(model, [item], context.path if context else None, context.n_q if context else None)[0]
        return PatchState(res.activation.detach().float().clone(), description)

    def check(self, state, n_frames, span_frames):
        first, last = span_frames
        if last > first and last > state.frames:
            raise InterventionError(
                f"the span reaches frame {last} but the patch source ({state.source['source']}) has only "
                f"{state.frames} frames at this layer ({state.source['duration_s']:.3f} s); end the span earlier "
                f"(end_s) or use a source at least as long as the span",
                parameter="end_s",
            )

    def apply(self, act, direction, value, weight, state):
        n = min(act.shape[-1], state.frames)
        target = act.clone()
        # frames past the source keep their own activation; check() guarantees their weight is 0
        target[:, :n] = state.activation[:, :n].to(act.device, act.dtype)
        return _replace(act, target, direction, weight)


@dataclass(frozen=True)
class MeanState:
    mean: Any  # [channels]
    reference: dict

    def to_json(self) -> dict[str, Any]:
        return {**self.reference, "mean_norm": float(self.mean.norm())}


@dataclass(frozen=True)
class MeanAblate:
    """Replace the layer's activations on the span with their mean over a reference set.

    The mean is over every frame of every clip of the reference corpus (``--data`` specs
    of ``steerlab learn``: folders, files, ``synth:N``, ``noise:N``, ``flat:N``,
    ``sines:N``), each clip's frames trimmed to its own length, accumulated in float64.
    """

    name: str = "mean-ablate"
    formula: str = "a_t <- a_t + w_t * (m - a_t),  m = mean over reference frames  [with d: along d only]"
    description: str = "replace activations on the span with their mean over a reference set"
    value_scale: str = "none"
    needs_direction: bool = False
    options_help = MappingProxyType(
        {
            "reference": "reference set: a folder or audio file, synth:N, noise:N, flat:N or sines:N (or a list of them)",
            "seed": "seed of generated reference clips [default 0]",
            "clip_seconds": "length of generated reference clips in seconds [default 1.0]",
        }
    )

    def prepare(self, model, layer, direction, options, context=None):
        import torch

        from steerlab import tracing
        from steerlab.capture import Corpus
        from steerlab.errors import CorpusError

        specs = options.get("reference")
        if specs is None or (isinstance(specs, (list, tuple)) and not specs):
            raise InterventionError(
                "mean-ablate needs the option reference: a folder, an audio file, synth:N, "
                "noise:N, flat:N or sines:N (or a list of them)",
                parameter="reference",
            )
        specs = [specs] if isinstance(specs, (str, Path)) else list(specs)
        try:
            seed = int(options.get("seed", 0))
            clip_seconds = float(options.get("clip_seconds", 1.0))
        except (TypeError, ValueError) as exc:
            raise InterventionError(f"mean-ablate options seed / clip_seconds must be numbers: {exc}") from None
        corpus = Corpus.for_model(model, [str(s) for s in specs], seed=seed, clip_seconds=clip_seconds)
        manifest = corpus.new_manifest()
        path = context.path if context else None
        n_q = context.n_q if context else None
        batch = context.max_batch if context else 16
        total = torch.zeros(layer.channels, dtype=torch.float64)
        frames = 0
        pending: list = []

        def flush() -> None:
            nonlocal total, frames
            items = [tracing.TraceItem(w, layer, save_activation=True) for w in pending]
            for res in tracing.run(model, items, path, n_q, max_batch=batch):
                act = res.activation
                if act is None:  # never: every item asked for its activation
                    raise InterventionError(f"the pass returned no activation of {layer.name}")
                total += act.double().sum(-1).cpu()
                frames += int(act.shape[-1])
            pending.clear()

        for _, wave in corpus.clips(manifest):
            pending.append(torch.as_tensor(wave).float())
            manifest.clips += 1
            manifest.seconds += pending[-1].shape[-1] / model.sample_rate
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
        if frames == 0:
            raise CorpusError(
                f"reference set {', '.join(map(str, specs))} gave no frames at {layer.name}: "
                f"{manifest.files_seen} files seen, {len(manifest.skipped)} skipped"
            )
        manifest.vectors = frames
        reference = {
            "reference": [str(s) for s in specs],
            "seed": seed,
            "clip_seconds": clip_seconds,
            "n_frames": frames,
            "manifest": manifest.to_json(),
        }
        return MeanState((total / frames).float(), reference)

    def apply(self, act, direction, value, weight, state):
        target = state.mean.to(act.device, act.dtype)[:, None].expand_as(act)
        return _replace(act, target, direction, weight)
