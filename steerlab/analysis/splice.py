"""The splice fidelity block of an analysis report (:mod:`steerlab.fidelity`).

A dictionary learned by ``steerlab learn`` carries its fidelity on clips held out of its
training (``metrics["fidelity"]``); the report quotes it. A dictionary without one (learned
with ``--fidelity-clips 0``, before the metric existed, or imported) is measured here on the
first clips of the analysis corpus, and the report says that those clips may have been in its
training data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: clips and seconds per clip measured when the dictionary carries no fidelity of its own
CLIPS, SECONDS = 2, 2.0


def _first_clips(corpus: Any, n: int, seconds: float) -> list[np.ndarray]:
    from steerlab.capture import Manifest

    limit = int(round(seconds * corpus.sample_rate))
    waves: list[np.ndarray] = []
    for _, wave in corpus.clips(Manifest(sources=[s.spec for s in corpus.sources])):
        waves.append(np.ascontiguousarray(np.asarray(wave)[:, :limit], dtype=np.float32))
        if len(waves) == n:
            break
    return waves


def headline(f: dict[str, Any]) -> str:
    """One line: where the figure comes from and the shares recovered."""
    where = f"{f['held_out']['clips']} clips, {f['held_out']['seconds']:.1f} s; {f['source']}"
    if f.get("recovered_vs_zero") is None:
        return f"splice fidelity not measured ({where}): {f.get('recovered_vs_zero_reason')}"
    mean = f.get("recovered_vs_mean")
    key = f["distance"]
    return (
        f"splice fidelity ({where}): recovered {f['recovered_vs_zero']:.3f} of the output vs zero ablation, "
        + (f"{mean:.3f} vs mean ablation" if mean is not None else "n/a vs mean ablation")
        + f" ({key}: spliced {f['spliced'][key]:.4g}, zero {f['zero_ablation'][key]:.4g}, "
        f"mean {f['mean_ablation'][key]:.4g})"
    )


def report(d: Any, model: Any, corpus: Any, say: Callable[[str], None]) -> dict[str, Any]:
    """The report's ``fidelity`` block: the dictionary's own (``source`` says so) or one measured
    now on the first :data:`CLIPS` clips of ``corpus`` (at most :data:`SECONDS` s each), with
    ``headline``."""
    from steerlab.fidelity import HeldOut, measure

    stored = d.metrics.get("fidelity") if isinstance(d.metrics, dict) else None
    if isinstance(stored, dict) and "held_out" in stored:
        out = {
            **stored,
            "source": "the dictionary's config metrics, measured when it was learned on clips held out of its training",
        }
    else:
        say(f"splice fidelity on the first {CLIPS} clips of the corpus")
        waves = _first_clips(corpus, CLIPS, SECONDS)
        record = {
            "clips": len(waves),
            "seconds": sum(w.shape[1] for w in waves) / corpus.sample_rate,
            "max_seconds_per_clip": SECONDS,
            "seed": None,
            "seed_reason": "the first clips of the corpus, in order: nothing is drawn",
            "ids": [],
            "how": "the first clips of the analysis corpus",
            "reason": "the analysis corpus gave no clips",
        }
        if waves:
            del record["reason"]
        out = {
            **measure(model, d, HeldOut(corpus, waves, record)),
            "source": "measured by analyze on the first clips of its corpus (the dictionary records no fidelity); "
            "they may have been in the dictionary's training data",
        }
    out["headline"] = headline(out)
    return out
