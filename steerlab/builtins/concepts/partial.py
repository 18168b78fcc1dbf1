"""``partial``: one sinusoid added to or removed from a mixture: the partials batch test.

The concept is ``steerlab partials`` itself: :attr:`Partial.delegate` runs its pipeline
(:func:`steerlab.partials.run`, configuration :func:`steerlab.partials.config.build`), so
``steerlab steerability --concept partial`` writes the rows ``steerlab partials`` writes, row for
row, with its own controls (filterbank_24khz and stft_24khz), null, oracle and validation. Its
pairs, scorer and rule are also offered here in the battery's terms (for the rule check and
for plugins that read concepts): harmonic mixtures of 4 partials on a 220 Hz fundamental with a
1200 Hz target (the quick grid's), scored by partials' band rule (gain in a 50 Hz band, the
share of the change there, off-band log-spectral distance outside a 100 Hz guard).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.battery.concept import PairSpec, Rule, mono

TARGET_HZ, DENSITY = 1200.0, 4


def _rule() -> Rule:
    from steerlab.partials.config import Thresholds

    t = Thresholds()
    return Rule(
        min_target=t.min_gain_db,
        max_damage=t.max_offband_db,
        min_share=t.min_share,
        target="gain in the target's 50 Hz band, dB",
        damage="off-band log-spectral distance outside the band and its 100 Hz guard, dB",
        rationale=(
            "partials' thresholds (steerlab.partials.config.Thresholds, docs/partials.md): a clear "
            "gain of 6 dB, half the change's energy in the band, off-band within 1 dB; the removal's "
            "loss threshold is the same 6 dB"
        ),
        requires=(("concentration", t.min_concentration),),
    )


def run_partials(
    model: str | None,
    out_dir: str | Path,
    quick: bool,
    bar: Any = None,
    notify: Any = None,
    config_file: str | Path | None = None,
    dictionaries: Sequence[str | Path] = (),
    device: Any = "auto",
    executor: Any = None,
) -> Any:
    """``steerlab partials [--quick] [-c CONFIG] [--model MODEL] [-D DICT ...] -o OUT_DIR``, from Python: the same
    config (:func:`steerlab.partials.config.build`), the same run and report; returns what
    :func:`steerlab.partials.run` returns. ``executor``: where the sweep's batches run (``steerlab
    partials --executor``; None: in this process)."""
    from steerlab import partials

    cfg = partials.build(config_file, quick, {"run": {"model": model}} if model else None)
    kwargs: dict[str, Any] = {"device": device}  # where the models run (steerlab.devices.resolve)
    if bar is not None:
        kwargs["bar"] = bar
    if notify is not None:
        kwargs["notify"] = notify
    if executor is not None:
        kwargs["executor"] = executor
    return partials.run(cfg, out_dir, quick, tuple(dictionaries), **kwargs)


class Partial:
    name = "partial"
    description = "one partial (a sinusoid) added to or removed from a mixture; the partials batch test"
    changes = ("create", "remove")
    variants = ("synthetic", "instrument")
    controls: Mapping[str, str] = {
        "filterbank_24khz": "long narrowband filters: a partial at a band centre is steerable by construction",
        "stft_24khz": "STFT magnitudes: a partial's bins are its own, steerable by construction",
    }
    delegate = staticmethod(run_partials)

    def __init__(self) -> None:
        self.rule = _rule()

    def pairs(self, sample_rate: int, seeds: Sequence[int], margin_s: float, quick: bool) -> list[PairSpec]:
        from steerlab.stimuli import StimulusSpec

        out = []
        for seed in seeds:
            spec = StimulusSpec(
                "harmonic",
                TARGET_HZ,
                DENSITY,
                220.0,
                seed=int(seed),
                sample_rate=sample_rate,
                duration_s=0.25 if quick else 0.5,
                margin_s=margin_s,
            )
            out.append(
                PairSpec(
                    self.name,
                    "synthetic",
                    int(seed),
                    sample_rate,
                    spec.duration_s,
                    margin_s,
                    spec.fade_ms,
                    (("stimulus", json.dumps(spec.to_dict(), sort_keys=True)),),
                )
            )
        return out

    def stimulus(self, spec: PairSpec) -> Any:
        from steerlab.stimuli import StimulusSpec

        return StimulusSpec.from_dict(json.loads(spec.param("stimulus")))

    def render(self, spec: PairSpec) -> tuple[np.ndarray, np.ndarray]:
        from steerlab.stimuli import render

        without, with_ = render(self.stimulus(spec))
        return without.astype(np.float64), with_.astype(np.float64)

    def score(self, baseline: np.ndarray, patched: np.ndarray, spec: PairSpec) -> dict[str, Any]:
        from types import SimpleNamespace

        from steerlab.partials.config import ScoringConfig
        from steerlab.partials.sweep import score_output

        s = score_output(
            SimpleNamespace(has_decoder=True, sample_rate=spec.sample_rate),
            mono(baseline)[None],
            mono(patched)[None],
            self.stimulus(spec).target_hz,
            ScoringConfig().options(),
        )
        return {"target": s["gain_db"], "damage": s["offband_db"], "concentration": s["concentration"]}

    def wrong_edits(self, spec: PairSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """partials' own wrong edits (:func:`steerlab.partials.edits.edits`): a partial 40 and 100 Hz
        off, a fifth up, noise, each with the ideal edit's energy."""
        from steerlab.partials.edits import edits

        without, _ = self.render(spec)
        e = edits(self.stimulus(spec))
        return {k: (without, without + e[k]) for k in ("+40 Hz", "+100 Hz", "fifth", "noise") if k in e}


CONCEPT = Partial()
