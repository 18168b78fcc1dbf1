"""Built-in plugin: the spectral scorer (patched decode against baseline decode)."""

from __future__ import annotations

from steerlab.hookspecs import hookimpl


def spectral(baseline, patched, sample_rate, target_hz):
    from steerlab.scoring import score

    return score(baseline, patched, sample_rate, target_hz)


@hookimpl
def steerlab_register_scorers(registry):
    from steerlab.registry import ScorerSpec

    registry.add(
        ScorerSpec(
            "spectral",
            spectral,
            "gain in dB and concentration at each target, off-band and overall log-spectral "
            "distance, MR-STFT distance, centroid/flatness/bandwidth shifts",
        )
    )
