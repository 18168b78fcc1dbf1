"""How much of a model's output a dictionary keeps: the audio analogue of the field's "loss recovered".

The SAE's reconstruction is spliced into the layer it was learned at (the layer's output
replaced, frame by frame, by ``decode(encode(r_t))``; for an archetype dictionary, which reads
``g_t = r_{t+1} - r_t``, frame ``t + 1`` becomes ``r_t + decode(encode(g_t))`` and frame 0 stays)
in a traced pass (:func:`steerlab.tracing.run`, the patching every intervention uses), and the
spliced output is compared with the unspliced one. Two references bracket it: zero ablation (the
layer's output set to 0) and mean ablation (set to each channel's mean over the clips' frames).

With ``D`` a distance to the unspliced output (0 for the output itself), the share recovered is
``recovered = 1 - D(spliced) / D(ablated)`` (as the field's ``(L_ablated - L_spliced) /
(L_ablated - L_clean)`` with ``L_clean = 0``): 1 for a perfect reconstruction, 0 for one no better
than the ablation, negative when worse. ``D`` by the model's output:

- decoders (codecs): the multi-resolution STFT distance (:func:`steerlab.metrics.multires_stft_distance`);
  the SI-SDR of each decode against the unspliced one is reported beside it (dB);
- classifiers (logits): ``KL(p_clean || p_spliced)`` in nats, mean over clips; the top-1
  agreement with the unspliced prediction is reported beside it (1 - the accuracy change when the
  unspliced prediction is taken as the label);
- other outputs (``output_kind``, e.g. CREPE's pitch salience ``[frames, bins]``): the mean absolute
  change of the output (salience change).

Reference: Bricken et al. 2023 and Gao et al. 2024 ("loss recovered" / "downstream loss").

:func:`held_out` splits a corpus into the clips a dictionary is learned on and a few clips kept
out of it for this measurement; :func:`measure` runs both and returns the record
``steerlab learn`` stores under the dictionary's ``metrics["fidelity"]`` (and ``steerlab
analyze`` reports).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from steerlab import plugins
from steerlab.dictionary import Dictionary
from steerlab.errors import DictionaryError
from steerlab.loading import layers
from steerlab.model import AudioModel

__all__ = ["held_out", "measure", "splice_fidelity"]

Edit = Callable[[torch.Tensor, int], torch.Tensor]


def _reconstruct(d: Dictionary, r: torch.Tensor) -> torch.Tensor:
    """The dictionary's reconstruction of one clip's layer output ``r [channels, frames]``."""
    on = next(d.sae.parameters()).device  # the SAE may sit on the CPU while the model runs elsewhere

    def sae(x: torch.Tensor) -> torch.Tensor:
        return d.sae(x.T.float().to(on))[0].T.to(r.device, r.dtype)

    with torch.no_grad():
        if d.target != "archetype":
            return sae(r)
        if r.shape[1] < 2:
            return r
        return torch.cat([r[:, :1], r[:, :-1] + sae(r[:, 1:] - r[:, :-1])], 1)


def _edit(replace: Callable[[torch.Tensor], torch.Tensor]) -> Edit:
    """An edit replacing the clip's first ``n_frames`` frames of ``act [1, channels, frames]``."""

    def edit(act: torch.Tensor, n_frames: int) -> torch.Tensor:
        a = act[0]
        new = replace(a[:, :n_frames])
        return torch.cat([new, a[:, n_frames:]], 1)[None]

    return edit


def _run(model: AudioModel, waves: Sequence[torch.Tensor], layer: Any, edit: Edit | None) -> list[torch.Tensor]:
    from steerlab import tracing

    items = [tracing.TraceItem(w, layer if edit is not None else None, edit) for w in waves]
    owner = plugins.models().owners.get(model.name, f"model {model.name}")
    results = plugins.guarded(
        owner, f"the forward pass of {model.name!r}", tracing.run, model, items, order=layers(model).names()
    )
    return [r.output for r in results]


def _distance(model: AudioModel, clean: torch.Tensor, other: torch.Tensor) -> dict[str, float | None]:
    from steerlab import metrics, scoring

    if model.has_decoder:
        resolved = scoring.resolution(clean.shape[-1], model.sample_rate)["mrstft_resolved"]
        return {
            "mrstft": scoring.mrstft(clean.double().numpy(), other.double().numpy()) if resolved else None,
            "si_sdr_db": float(metrics.si_sdr(other.double(), clean.double()).mean()),
        }
    if model.output_kind == "":
        p, q = torch.log_softmax(clean.double(), -1), torch.log_softmax(other.double(), -1)
        return {
            "kl": float((p.exp() * (p - q)).sum(-1).mean()),
            "agreement": float(clean.argmax(-1) == other.argmax(-1)),
        }
    return {"mean_abs_change": float((clean.double() - other.double()).abs().mean())}


def _mean(rows: list[dict[str, float | None]], reasons: dict[str, str]) -> dict[str, Any]:
    """Means over clips; a distance some clip cannot resolve is None with ``<key>_reason`` (``reasons``)."""
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if any(v is None for v in values):
            out[key], out[f"{key}_reason"] = None, reasons[key]
        else:
            out[key] = float(np.mean([float(v) for v in values if v is not None]))
    return out


def _unresolved(model: AudioModel, clean: list[torch.Tensor]) -> dict[str, str]:
    """Why a decoder's MR-STFT distance is None: the shortest clean output, by the rules of
    :func:`steerlab.scoring.resolution` (one full window of the longest resolution, 2048 samples)."""
    from steerlab import scoring

    i = min(range(len(clean)), key=lambda j: clean[j].shape[-1])
    reason = scoring.resolution(clean[i].shape[-1], model.sample_rate)["mrstft_reason"]
    return {"mrstft": f"clip {i}: {reason}"} if reason else {}


#: the distance each kind of output's "recovered" share is computed from
PRIMARY = {"decoder": "mrstft", "logits": "kl", "other": "mean_abs_change"}


def splice_fidelity(model: AudioModel, d: Dictionary, waves: Sequence[np.ndarray]) -> dict[str, Any]:
    """Splice ``d``'s reconstruction into its layer of ``model`` on held-out clips ``waves``
    (each ``[channels, samples]`` at the model's rate) and measure what of the output it keeps.

    Returns ``{"output": "decoder" | "logits" | "other", "distance": <primary distance name>,
    "spliced": {...}, "zero_ablation": {...}, "mean_ablation": {...}, "recovered_vs_zero",
    "recovered_vs_mean", "n_clips"}``; each block holds the distances of :func:`_distance`
    (means over clips: ``mrstft`` and ``si_sdr_db`` for decoders, ``kl`` (nats) and ``agreement``
    for logits, ``mean_abs_change`` otherwise). A decoder's ``mrstft`` is None, with
    ``mrstft_reason``, when a clip's output is shorter than the longest MR-STFT window (2048
    samples: the rule of :func:`steerlab.scoring.resolution` that ``intervene`` applies; zero
    padding would measure the window, not the audio). A recovered share is None, with
    ``recovered_vs_*_reason``, when its distance is not measured or the ablation leaves the
    output unchanged. ``waves`` are checked as :func:`steerlab.capture.check_waves` checks
    them (a 1-D wave is mono). Raises :class:`DictionaryError` when ``d`` was learned on another
    model or its width does not fit the layer, or there are no clips;
    :class:`~steerlab.errors.ConfigError` for a wave whose channel count is not the model's;
    :class:`~steerlab.errors.AudioError` for a wave that is not finite float audio.
    """
    from steerlab.capture import check_waves
    from steerlab.learned import check_dictionary_fits

    layer = check_dictionary_fits(d, model, allow_weights_mismatch=True)
    arrays = check_waves(model, waves)  # [model.channels, samples] each; 1-D is mono; finite
    if not arrays:
        raise DictionaryError("splice_fidelity needs at least one clip")
    ws = [torch.from_numpy(w) for w in arrays]
    from steerlab import tracing

    captured = tracing.run(model, [tracing.TraceItem(w, layer, None, save_activation=True) for w in ws])
    acts = torch.cat([r.activation for r in captured if r.activation is not None], 1)
    mean = acts.double().mean(1).to(acts.dtype)[:, None]
    clean = _run(model, ws, None, None)
    edits = {
        "spliced": _edit(lambda r: _reconstruct(d, r)),
        "zero_ablation": _edit(torch.zeros_like),
        "mean_ablation": _edit(lambda r: mean.to(r.device, r.dtype).expand_as(r).clone()),
    }
    kind = "decoder" if model.has_decoder else ("logits" if model.output_kind == "" else "other")
    out: dict[str, Any] = {"output": kind, "distance": PRIMARY[kind], "n_clips": len(ws)}
    reasons = _unresolved(model, clean) if model.has_decoder else {}
    for name, edit in edits.items():
        outs = _run(model, ws, layer, edit)
        out[name] = _mean([_distance(model, c, o) for c, o in zip(clean, outs)], reasons)
    key = PRIMARY[kind]
    for ref, label in (("zero_ablation", "recovered_vs_zero"), ("mean_ablation", "recovered_vs_mean")):
        base, spliced = out[ref][key], out["spliced"][key]
        out[label] = 1.0 - spliced / base if base is not None and spliced is not None and base > 0 else None
        if out[label] is None:
            out[f"{label}_reason"] = (
                f"the {key} distance is not measured: {out[ref][f'{key}_reason']}"
                if base is None
                else f"{ref.split('_')[0]} ablation leaves the output unchanged on these clips (D(ablated) = 0)"
            )
    return out


#: mixed into the seed so the held-out draw is independent of every draw the training makes
HOLDOUT_SALT = 0xF1DE
FORMULA = (
    "recovered = 1 - D(spliced) / D(ablated), D the distance of an output to the unspliced one "
    "(decoders: multi-resolution STFT distance; classifiers: KL(p_clean || p_spliced) in nats; other outputs: "
    "mean absolute change); ablated: the layer's output set to 0 (zero) or to each channel's mean over the "
    "held-out clips' frames (mean)"
)
REFERENCES = (
    "Bricken et al. 2023, Towards Monosemanticity (loss recovered); Gao et al. 2024, Scaling and evaluating "
    "sparse autoencoders (downstream loss)"
)


@dataclass
class HeldOut:
    """A corpus split for :func:`measure`: ``train`` (what the dictionary is learned on), ``waves``
    (the held-out clips, float32 ``[channels, samples]`` at the corpus's rate) and ``record`` (what
    was held out and how, for the dictionary's metrics; ``reason`` when nothing could be)."""

    train: Any
    waves: list[np.ndarray]
    record: dict[str, Any]


def _first_seconds(path: str, corpus: Any, seconds: float) -> np.ndarray:
    from steerlab import audio

    return next(audio.iter_chunks(path, corpus.sample_rate, corpus.channels, seconds, 0.0))[1]


def held_out(corpus: Any, n_clips: int = 2, seconds: float = 2.0, seed: int = 0) -> HeldOut:
    """Keep ``n_clips`` clips of at most ``seconds`` each out of ``corpus`` (a
    :class:`steerlab.capture.Corpus`) for measuring fidelity, drawn with ``seed``.

    - Files: when the corpus has more usable files than ``n_clips``, that many files are drawn
      (seeded) and left out of the training corpus; their first ``seconds`` are the clips.
    - Generated sources (``synth:N``, ``noise:N``, ``flat:N``): otherwise, ``n_clips`` fresh clips
      of the same kinds (taken in turn from each) from a seed independent of the training clips'
      (``SeedSequence([seed, HOLDOUT_SALT])``), so the training corpus is unchanged. ``sines:N`` is
      deterministic (the same clips for any seed) and cannot give held-out clips.
    - Neither: no clips; ``record["reason"]`` says why.

    The cost of :func:`measure` is bounded by ``n_clips * seconds`` of audio, run four times (the
    unspliced, spliced, zero- and mean-ablated passes) plus one capture. Raises
    :class:`steerlab.errors.ConfigError` for ``n_clips < 0`` or ``seconds <= 0``."""
    from steerlab import validation as check
    from steerlab.capture import FileSource, Manifest, SyntheticSource, _seed_for

    check.integer("n_clips", n_clips, low=0)
    check.positive("seconds", seconds)
    base = {"clips": 0, "seconds": 0.0, "max_seconds_per_clip": float(seconds), "seed": int(seed), "ids": []}
    if n_clips == 0:
        return HeldOut(corpus, [], {**base, "how": None, "reason": "no held-out clips were asked for (0)"})
    bad = {b["path"] for b in corpus.check_files()}
    files = [str(p) for s in corpus.sources if isinstance(s, FileSource) for p in s.files() if str(p) not in bad]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), HOLDOUT_SALT]))
    if len(files) > n_clips:
        paths = [files[i] for i in sorted(rng.choice(len(files), n_clips, replace=False))]
        waves = [_first_seconds(p, corpus, seconds) for p in paths]
        how = f"files drawn (seeded) from the corpus's {len(files)} usable files and left out of training"
        return HeldOut(corpus.without_files(paths), waves, _record(base, corpus, waves, paths, how))
    kinds = [s for s in corpus.sources if isinstance(s, SyntheticSource) and s.kind != "sines"]
    if kinds:
        held_seed = int(np.random.SeedSequence([int(seed), HOLDOUT_SALT]).generate_state(1)[0])
        streams = [
            SyntheticSource(s.kind, n_clips).clips(
                corpus.sample_rate,
                corpus.channels,
                _seed_for(held_seed, i),
                corpus.clip_seconds,
                corpus.chunk_seconds,
                Manifest(),
            )
            for i, s in enumerate(kinds)
        ]
        clips: list[tuple[str, np.ndarray]] = []
        while len(clips) < n_clips:
            clips.extend(next(st) for st in streams[: n_clips - len(clips)])
        limit = int(round(seconds * corpus.sample_rate))
        waves = [np.ascontiguousarray(w[:, :limit]) for _, w in clips]
        how = (
            f"fresh generated clips of the corpus's kinds ({', '.join(s.kind for s in kinds)}) from a seed "
            "independent of the training clips'; the training corpus is unchanged"
        )
        return HeldOut(corpus, waves, _record(base, corpus, waves, [c for c, _ in clips], how))
    reason = (
        f"the corpus has {len(files)} usable file(s), too few to keep {n_clips} out of training and still "
        "train on one, and no generated source that can give fresh clips (sines:N is the same for any seed)"
    )
    return HeldOut(corpus, [], {**base, "how": None, "reason": reason})


def _record(base: dict[str, Any], corpus: Any, waves: list[np.ndarray], ids: list[str], how: str) -> dict[str, Any]:
    seconds = sum(w.shape[1] for w in waves) / corpus.sample_rate
    return {**base, "clips": len(waves), "seconds": seconds, "ids": ids, "how": how}


def measure(model: AudioModel, d: Dictionary, held: HeldOut) -> dict[str, Any]:
    """The fidelity record of ``d`` on ``held``'s clips: :func:`splice_fidelity`'s keys plus
    ``held_out`` (``held.record``), ``formula`` and ``references``; every null has a
    ``KEY_reason`` beside it (no held-out clips, or an ablation that leaves the output unchanged)."""
    out: dict[str, Any] = {"held_out": held.record, "formula": FORMULA, "references": REFERENCES}
    if not held.waves:
        for key in ("recovered_vs_zero", "recovered_vs_mean"):
            out[key] = None
            out[f"{key}_reason"] = f"not measured: {held.record['reason']}"
        return out
    out.update(splice_fidelity(model, d, held.waves))
    return out  # splice_fidelity gives every null recovered share its reason
