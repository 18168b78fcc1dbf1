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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from steerlab import plugins
from steerlab.dictionary import Dictionary
from steerlab.errors import DictionaryError
from steerlab.loading import layers
from steerlab.model import AudioModel

__all__ = ["splice_fidelity"]

Edit = Callable[[torch.Tensor, int], torch.Tensor]


def _reconstruct(d: Dictionary, r: torch.Tensor) -> torch.Tensor:
    """The dictionary's reconstruction of one clip's layer output ``r [channels, frames]``."""
    with torch.no_grad():
        if d.target != "archetype":
            return d.sae(r.T.float())[0].T.to(r.dtype)
        if r.shape[1] < 2:
            return r
        g_hat = d.sae((r[:, 1:] - r[:, :-1]).T.float())[0].T.to(r.dtype)
        return torch.cat([r[:, :1], r[:, :-1] + g_hat], 1)


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


def _distance(model: AudioModel, clean: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    from steerlab import metrics, scoring

    if model.has_decoder:
        return {
            "mrstft": scoring.mrstft(clean.double().numpy(), other.double().numpy()),
            "si_sdr_db": float(metrics.si_sdr(other.double(), clean.double()).mean()),
        }
    if model.output_kind == "":
        p, q = torch.log_softmax(clean.double(), -1), torch.log_softmax(other.double(), -1)
        return {
            "kl": float((p.exp() * (p - q)).sum(-1).mean()),
            "agreement": float(clean.argmax(-1) == other.argmax(-1)),
        }
    return {"mean_abs_change": float((clean.double() - other.double()).abs().mean())}


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


#: the distance each kind of output's "recovered" share is computed from
PRIMARY = {"decoder": "mrstft", "logits": "kl", "other": "mean_abs_change"}


def splice_fidelity(model: AudioModel, d: Dictionary, waves: Sequence[np.ndarray]) -> dict[str, Any]:
    """Splice ``d``'s reconstruction into its layer of ``model`` on held-out clips ``waves``
    (each ``[channels, samples]`` at the model's rate) and measure what of the output it keeps.

    Returns ``{"output": "decoder" | "logits" | "other", "distance": <primary distance name>,
    "spliced": {...}, "zero_ablation": {...}, "mean_ablation": {...}, "recovered_vs_zero",
    "recovered_vs_mean", "n_clips"}``; each block holds the distances of :func:`_distance`
    (means over clips: ``mrstft`` and ``si_sdr_db`` for decoders, ``kl`` (nats) and ``agreement``
    for logits, ``mean_abs_change`` otherwise). A recovered share is None when the ablation leaves
    the output unchanged. Raises :class:`DictionaryError` when ``d`` was learned on another model
    or its width does not fit the layer.
    """
    from steerlab.learned import check_dictionary_fits

    layer = check_dictionary_fits(d, model, allow_weights_mismatch=True)
    if not waves:
        raise DictionaryError("splice_fidelity needs at least one clip")
    ws = [torch.from_numpy(np.ascontiguousarray(w)).float() for w in waves]
    from steerlab import tracing

    captured = tracing.run(model, [tracing.TraceItem(w, layer, None, save_activation=True) for w in ws])
    acts = torch.cat([r.activation for r in captured if r.activation is not None], 1)
    mean = acts.double().mean(1).to(acts.dtype)[:, None]
    clean = _run(model, ws, None, None)
    edits = {
        "spliced": _edit(lambda r: _reconstruct(d, r)),
        "zero_ablation": _edit(torch.zeros_like),
        "mean_ablation": _edit(lambda r: mean.to(r.dtype).expand_as(r).clone()),
    }
    kind = "decoder" if model.has_decoder else ("logits" if model.output_kind == "" else "other")
    out: dict[str, Any] = {"output": kind, "distance": PRIMARY[kind], "n_clips": len(ws)}
    for name, edit in edits.items():
        outs = _run(model, ws, layer, edit)
        out[name] = _mean([_distance(model, c, o) for c, o in zip(clean, outs)])
    key = PRIMARY[kind]
    for ref, label in (("zero_ablation", "recovered_vs_zero"), ("mean_ablation", "recovered_vs_mean")):
        base = out[ref][key]
        out[label] = 1.0 - out["spliced"][key] / base if base > 0 else None
    return out
