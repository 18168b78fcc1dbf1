"""``brightness``: the spectral tilt of a sound raised (brighter) or lowered (darker).

Pair: a mixture of two harmonic notes (MIDI 45-69, 24 harmonics at ``1/h`` up to 8 kHz)
without the change, and the same partials with amplitudes times ``(f / 1 kHz) ** (s / 6.02)``,
a tilt of ``s`` = +4 dB per octave about 1 kHz (the ideal edit: a per-frequency gain, nothing
added or moved). Target measure: the change of the spectral centroid in cents
(``librosa.feature.spectral_centroid``, the energy-weighted mean over frames); the change of
the high-band share (energy above 2 kHz, in dB) is recorded beside it. Damage: what the change
holds beyond a tilt: the RMS residual (dB) of the level change at the spectral peaks of
either signal (Welch spectra) after the best straight line in log-frequency, so a level change and a tilt
cost nothing and everything else (a partial added, noise, a notch) does. Each spectrum is floored
60 dB under its own peak, and a peak under the other spectrum's floor is censored: it bounds the
change, and counts only where the line falls on the wrong side of the bound
(:func:`~steerlab.builtins.concepts._bands.tilt_residual_censored`). (A first version read the floor
as the value: a rendered note has peaks that deep, which the +-16 dB tilt moves across the floor, and
the ideal tilt failed with 4.2 dB of residual; read as bounds, 0.00-0.01 dB.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from steerlab.battery.concept import PairSpec, Rule
from steerlab.builtins.concepts._base import SyntheticConcept

HARMONICS, TILT_DB_PER_OCTAVE, PIVOT_HZ, HIGH_HZ, LOW_HZ = 24, 4.0, 1000.0, 2000.0, 40.0
RULE = Rule(
    min_target=100.0,
    max_damage=1.0,
    min_share=0.8,
    target="spectral centroid change, cents (librosa.feature.spectral_centroid)",
    damage="RMS residual of the level change at the spectral peaks after the best tilt (line in log-frequency), "
    "peaks under the other spectrum's 60 dB floor read as bounds, dB",
    rationale=(
        "100 cents is a 6% move of the centroid, above the few-percent differences in centroid "
        "listeners discriminate; the change must be a tilt to within 1 dB per bin (the partials' "
        "off-band threshold), so brightness is not bought with an added partial or noise."
    ),
)


def centroid_hz(x: np.ndarray, sr: int) -> float:
    """Energy-weighted mean over frames of librosa's spectral centroid (Hz; 0 for silence)."""
    return centroids_hz(np.asarray(x, dtype=np.float64)[None], sr)[0]


def centroids_hz(xs: np.ndarray, sr: int) -> list[float]:
    """:func:`centroid_hz` of each row of ``xs`` ``[signals, samples]``: the magnitude STFT of
    every row in one ``librosa.stft`` call, the rest on each row alone (the same values)."""
    import librosa

    from steerlab.builtins.concepts._sound import N_FFT

    out = []
    for s in np.abs(librosa.stft(np.asarray(xs, dtype=np.float64), n_fft=N_FFT, hop_length=N_FFT // 4)):
        c = librosa.feature.spectral_centroid(S=s, sr=sr, n_fft=N_FFT)[0]
        w = (s**2).sum(axis=0)
        out.append(float((c * w).sum() / w.sum()) if w.sum() > 0 else 0.0)
    return out


def tilt_residual_db(freqs: np.ndarray, change_db: np.ndarray) -> float:
    """RMS residual (dB) of ``change_db`` after the least-squares line in ``log2(freqs)``, over
    frequencies from LOW_HZ up (below, a peak is the fades' leakage, not a partial: measured, a
    5.9 Hz leakage peak alone gave an exact tilt 2 dB of residual)."""
    keep = freqs >= LOW_HZ
    if keep.sum() < 3:
        return 0.0
    x, y = np.log2(freqs[keep]), change_db[keep]
    a = np.vstack([x, np.ones_like(x)]).T
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(np.sqrt(np.mean((y - a @ coef) ** 2)))


class Brightness(SyntheticConcept):
    name = "brightness"
    description = "spectral tilt raised or lowered; centroid (cents) and high-band share"
    changes = ("raise", "lower")
    # Not filterbank_24khz or stft_24khz: raising a band or bin adds a carrier at its centre, not a
    # gain of the content there, so by construction they cannot raise half of a tilt
    # (docs/steerability.md, "The positive controls").
    controls = {
        "logspec_24khz": "a tilt is a fixed ramp in log-frequency of the log-magnitudes, a per-bin gain "
        "resynthesised with each bin's analysis phase; the difference of means is that ramp scaled by the share "
        "of training frames holding partials in each bin (cosine 0.90 with the ideal ramp on the quick pairs): "
        "whether that suffices is measured, not assumed (docs/logspec.md)",
    }
    rule = RULE
    variants = ("synthetic", "instrument")

    def draw(self, rng: np.random.Generator, sample_rate: int) -> dict[str, Any]:
        notes = sorted(int(p) for p in rng.choice(np.arange(45, 70), size=2, replace=False))
        return {"notes_midi": ",".join(map(str, notes))}

    def _partials(self, spec: PairSpec) -> list[tuple[float, float]]:
        from steerlab.builtins.concepts._sound import midi_hz, partial_list

        f0s = [midi_hz(int(p)) for p in str(spec.param("notes_midi")).split(",")]
        return partial_list(f0s, [1.0] * len(f0s), HARMONICS, spec.sample_rate)

    def sounds(self, spec: PairSpec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from steerlab.builtins.concepts._sound import envelope, sines

        sr = spec.sample_rate
        parts = self._partials(spec)
        env = envelope(n, sr, spec.fade_ms, spec.fade_ms)
        tilted = [(f, a * 10 ** (TILT_DB_PER_OCTAVE * math.log2(f / PIVOT_HZ) / 20)) for f, a in parts]
        without = sines(parts, n, sr, np.random.default_rng([spec.seed, 6])) * env
        with_ = sines(tilted, n, sr, np.random.default_rng([spec.seed, 6])) * env
        return without, with_

    def instrument_sounds(self, spec: PairSpec, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The two notes rendered on GM ``program``, without and with the concept's own tilt
        (+4 dB per octave about 1 kHz, one zero-phase FFT gain: :func:`~steerlab.builtins.concepts._rendered.tilt`).
        The tilt, not a brighter program or a filter's cutoff: another program or a velocity
        changes the attack, the partials' ratios and the sample itself, so the pair would differ by
        more than brightness; a filter's cutoff is a tilt only far from the cutoff."""
        from steerlab.builtins.concepts._rendered import mixture, tilt
        from steerlab.builtins.concepts._sound import envelope

        sr = spec.sample_rate
        keys = [int(p) for p in str(spec.param("notes_midi")).split(",")]
        without = mixture(int(spec.param("program")), keys, n, sr) * envelope(n, sr, spec.fade_ms, spec.fade_ms)
        return without, tilt(without, sr, TILT_DB_PER_OCTAVE, PIVOT_HZ)

    def features(self, xs: np.ndarray, specs: Sequence[PairSpec]) -> list[dict[str, Any]]:
        """Per signal: its centroid (Hz) and its Welch power spectrum."""
        from steerlab.builtins.concepts._sound import powers

        sr = {s.sample_rate for s in specs}
        if len(sr) != 1:
            return [f for i, s in enumerate(specs) for f in self.features(xs[i : i + 1], [s])]
        return [{"centroid": c, "power": p} for c, p in zip(centroids_hz(xs, sr.pop()), powers(xs))]

    def compare(self, base: dict[str, Any], patched: dict[str, Any], spec: PairSpec) -> dict[str, Any]:
        from steerlab.builtins.concepts._bands import tilt_residual_censored_power
        from steerlab.builtins.concepts._sound import freqs_for

        sr = spec.sample_rate
        cb, cp = base["centroid"], patched["centroid"]
        pb, pp = base["power"], patched["power"]
        high = freqs_for(sr) >= HIGH_HZ
        share_b = float(pb[high].sum() / max(pb.sum(), 1e-30))
        share_p = float(pp[high].sum() / max(pp.sum(), 1e-30))
        return {
            "target": 1200 * math.log2(cp / cb) if cb > 0 and cp > 0 else None,
            "damage": tilt_residual_censored_power(pb, pp, sr, LOW_HZ),
            "centroid_baseline_hz": cb,
            "centroid_patched_hz": cp,
            "high_band_share_change_db": 10 * math.log10(max(share_p, 1e-12) / max(share_b, 1e-12)),
        }

    def wrong_edits(self, spec: PairSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The shared ones; one loud partial added at 4 kHz (brighter by the centroid, not a tilt);
        the tilt the wrong way (darker)."""
        from steerlab.builtins.concepts._sound import envelope, sines

        out = super().wrong_edits(spec)
        without, with_ = self.render(spec)
        a, b = spec.span_samples()
        sr, n = spec.sample_rate, b - a
        tone = np.zeros_like(without)
        tone[a:b] = sines([(4000.0, 1.0)], n, sr, np.random.default_rng(0)) * envelope(
            n, sr, spec.fade_ms, spec.fade_ms
        )
        tone *= np.sqrt(np.sum((with_ - without) ** 2) / np.sum(tone**2))
        out["partial at 4 kHz"] = (without, without + tone)
        out["darker"] = (without, without - (with_ - without) * 0.5)
        return out


CONCEPT = Brightness()
