"""README, "Reconstruction quality of the embedded model": the quantized row and its per-kind
columns recomputed on the README's own 280 held-out clips (seed 12345), and the random-init rows
checked on every fourth of those clips (10 per kind) against what they are there to show. The
continuous row (median, interval, MR-STFT distance, per-kind medians) is recomputed in
tests/test_codec_eval.py::test_readme_median_floor_on_its_held_out_clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steerlab import synth

# README's quantized row (8 codebooks): median [95% CI], mean, MR-STFT distance, per-kind medians
QUANTIZED = {
    "median": 5.28,
    "ci": (4.41, 5.86),
    "mean": 3.35,
    "mrstft": 1.278,
    "by_kind": {
        "tone": 17.7,
        "harmonic": 9.1,
        "chord": 6.3,
        "melody": 7.0,
        "noise_burst": -0.8,
        "percussion": 4.0,
        "mixture": 5.4,
    },
}


def _clips(model, every: int = 1):
    specs = synth.corpus(280, 12_345, model.sample_rate, 1.0)[::every]
    length = model.sample_rate - model.sample_rate % model.hop
    clips = torch.from_numpy(np.stack([synth.synthesize(s)[:length] for s in specs]))[:, None]
    return clips, [s.kind for s in specs]


def _by_kind(sdr: list[float], kinds: list[str]) -> dict[str, float]:
    return {k: float(np.median([s for s, kk in zip(sdr, kinds) if kk == k])) for k in synth.KINDS}


def test_readme_quantized_row_on_its_held_out_clips(embedded):
    """About 10 s on one core. Rounding in the README is to 0.01 dB (overall) and 0.1 dB (kinds)."""
    from steerlab.builtins.encodec.evaluation import clip_metrics, median_ci

    clips, kinds = _clips(embedded)
    with torch.no_grad():
        sdr, dist = clip_metrics(lambda x: embedded(x, path="quantized"), clips)
    lo, hi = median_ci(sdr)
    assert float(np.median(sdr)) == pytest.approx(QUANTIZED["median"], abs=0.01)
    assert (lo, hi) == pytest.approx(QUANTIZED["ci"], abs=0.01)
    assert float(np.mean(sdr)) == pytest.approx(QUANTIZED["mean"], abs=0.01)
    assert float(np.mean(dist)) == pytest.approx(QUANTIZED["mrstft"], abs=0.001)
    by_kind = _by_kind(sdr, kinds)
    for kind, value in QUANTIZED["by_kind"].items():
        assert by_kind[kind] == pytest.approx(value, abs=0.05), (kind, by_kind[kind])
    # the README's reading of the columns: tones best, noise bursts not tracked sample by sample
    assert max(by_kind, key=by_kind.get) == "tone" and min(by_kind, key=by_kind.get) == "noise_burst"


def test_random_init_rows_are_far_below_the_trained_codec(embedded):
    """README's random-init rows (medians -91.2 dB overall; -97 to -101 dB on tones, harmonic
    tones, chords and melodies; -53 to -67 dB on noise bursts, percussion and mixtures). Checked on
    70 of the 280 clips, so not to the README's decimals: every kind's median below -45 dB, the
    tonal kinds near -100 dB (an output uncorrelated with the input) and both paths alike (the
    trained codec's per-kind medians, all above -1 dB, are checked on all 280 clips elsewhere)."""
    from steerlab.builtins.encodec.evaluation import clip_metrics, median_ci
    from steerlab.builtins.encodec.loaders import random_codec

    clips, kinds = _clips(embedded, every=4)
    random = random_codec("random", embedded.cfg)  # what `steerlab eval codec` builds (seed 0)
    rows = {}
    with torch.no_grad():
        for path in ("continuous", "quantized"):
            rows[path] = clip_metrics(lambda x, path=path: random(x, path=path), clips)[0]
    for path, sdr in rows.items():
        by_kind = _by_kind(sdr, kinds)
        assert max(by_kind.values()) < -45.0, (path, by_kind)
        assert all(by_kind[k] < -95.0 for k in ("tone", "harmonic", "chord")), (path, by_kind)
        lo, hi = median_ci(sdr)
        assert lo < -91.2 < hi  # the README's 280-clip median inside this subset's interval
    assert np.abs(np.array(rows["continuous"]) - np.array(rows["quantized"])).max() < 3.0
