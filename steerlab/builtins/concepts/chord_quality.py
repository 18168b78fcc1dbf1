"""``chord-quality``: a triad's quality, major against minor: its third moved by a semitone.

Pair: a minor triad (root, minor third, fifth; harmonic notes, 6 harmonics at ``1/h``; the root
C4 in every pair, the third's and fifth's levels and every phase drawn from the seed) without
the change, the major triad on the same root with the same phases and levels with it. Target measure: the chroma of the two thirds' pitch classes
(``librosa.feature.chroma_stft`` of the power STFT, no normalisation, ``tuning=0``, mean over
frames): ``t_M`` = change (dB) at the major third, ``t_m`` = minus the change at the minor
third; the target is the smaller of the two when both move the same way (towards major: the
major third up *and* the minor third down), with that sign, else 0. Adding a major third on
top of the minor one (a cluster, not a major chord) moves only one: 0. Damage: the off-band
log-spectral distance outside the harmonic bands of both thirds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from steerlab.battery.concept import PairSpec, Rule
from steerlab.builtins.concepts._base import SyntheticConcept

HARMONICS = 6
# one root for every pair (levels and phases vary by seed): a direction is learned for one chord
ROOT_MIDI = 60  # C4: C minor against C major
RULE = Rule(
    min_target=6.0,
    max_damage=1.0,
    min_share=0.8,
    target="chroma at the major third up and at the minor third down (the smaller of the two), dB",
    damage="off-band log-spectral distance outside both thirds' harmonic bands, dB",
    rationale=(
        "A quality change is one third replacing the other: both pitch classes must move by a "
        "clear 6 dB (the partials' gain threshold) in opposite ways, with the rest of the chord's "
        "spectrum within 1 dB (the partials' off-band threshold)."
    ),
)


def chroma(x: np.ndarray, sr: int) -> np.ndarray:
    """``[12]`` mean chroma (C = 0) of a mono signal (librosa.feature.chroma_stft, n_fft 4096);
    ``[signals, 12]`` for ``x`` ``[signals, samples]``. The power STFT of every row in one
    ``librosa.stft`` call and the filter bank built once, then chroma_stft's own steps (its
    einsum, its normalisation with ``norm=None``) on each row: the values of
    ``librosa.feature.chroma_stft(y=row, sr=sr, n_fft=4096, hop_length=1024, norm=None,
    tuning=0.0).mean(axis=1)`` bit for bit (tests check)."""
    import librosa

    from steerlab.builtins.concepts._sound import N_FFT

    x = np.asarray(x, dtype=np.float64)
    s = np.abs(librosa.stft(x, n_fft=N_FFT, hop_length=N_FFT // 4)) ** 2
    bank = _chroma_bank(sr)
    rows = [
        librosa.util.normalize(np.einsum("cf,...ft->...ct", bank, row, optimize=True), norm=None, axis=-2).mean(axis=1)
        for row in (s if x.ndim > 1 else s[None])
    ]
    return np.stack(rows) if x.ndim > 1 else rows[0]


@lru_cache(maxsize=8)
def _chroma_bank(sr: int) -> np.ndarray:
    """librosa.feature.chroma_stft's filter bank at ``sr`` (n_fft 4096, 12 classes, tuning 0), read-only."""
    import librosa

    from steerlab.builtins.concepts._sound import N_FFT

    bank = librosa.filters.chroma(sr=sr, n_fft=N_FFT, tuning=0.0, n_chroma=12)
    bank.setflags(write=False)
    return bank


class ChordQuality(SyntheticConcept):
    name = "chord-quality"
    description = "a triad's third moved a semitone: minor to major and back; chroma at the two thirds"
    changes = ("to major", "to minor")
    controls = {
        "stft_24khz": "its bins are 5.86 Hz apart, narrower than the semitone between the thirds' harmonics (15.6 "
        "Hz between the thirds at C4): moving the third lowers the minor third's bins (scaling their own content) and "
        "raises the major third's (carriers at their centres, within 2.9 Hz), a quality change by construction; "
        "filterbank_24khz cannot vouch: its bands (about a tenth of an octave) hold both thirds' harmonics in one "
        "band or neighbouring ones",
    }
    rule = RULE

    def draw(self, rng: np.random.Generator, sample_rate: int) -> dict[str, Any]:
        return {
            "root_midi": ROOT_MIDI,
            "level_third": float(rng.uniform(0.6, 1.0)),
            "level_fifth": float(rng.uniform(0.6, 1.0)),
        }

    def _notes(self, spec: PairSpec) -> tuple[float, float, float, float]:
        from steerlab.builtins.concepts._sound import midi_hz

        r = int(spec.param("root_midi"))
        return midi_hz(r), midi_hz(r + 3), midi_hz(r + 4), midi_hz(r + 7)

    def sounds(self, spec: PairSpec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from steerlab.builtins.concepts._sound import envelope, partial_list, sines

        sr = spec.sample_rate
        root, minor, major, fifth = self._notes(spec)
        env = envelope(n, sr, spec.fade_ms, spec.fade_ms)
        lt, lf = float(spec.param("level_third")), float(spec.param("level_fifth"))
        frame = sines(partial_list([root, fifth], [1.0, lf], HARMONICS, sr), n, sr, rng) * env
        third_rng = np.random.default_rng([spec.seed, 5])  # the same phases for either third
        m = sines(partial_list([minor], [lt], HARMONICS, sr), n, sr, third_rng) * env
        third_rng = np.random.default_rng([spec.seed, 5])
        big = sines(partial_list([major], [lt], HARMONICS, sr), n, sr, third_rng) * env
        return frame + m, frame + big

    def features(self, xs: np.ndarray, specs: Sequence[PairSpec]) -> list[dict[str, Any]]:
        """Per signal: its mean chroma and its Welch power spectrum."""
        from steerlab.builtins.concepts._sound import powers

        sr = {s.sample_rate for s in specs}
        if len(sr) != 1:
            return [f for i, s in enumerate(specs) for f in self.features(xs[i : i + 1], [s])]
        return [{"chroma": c, "power": p} for c, p in zip(chroma(xs, sr.pop()), powers(xs))]

    def compare(self, base: dict[str, Any], patched: dict[str, Any], spec: PairSpec) -> dict[str, Any]:
        from steerlab.builtins.concepts._sound import lsd_outside_power

        sr = spec.sample_rate
        root = int(spec.param("root_midi"))
        cb, cp = base["chroma"], patched["chroma"]
        floor = 1e-6 * max(float(cb.max()), 1e-20)  # 60 dB under the strongest pitch class
        pc_minor, pc_major = (root + 3) % 12, (root + 4) % 12

        def change(k: int) -> float:
            return 10 * math.log10(max(float(cp[k]), floor) / max(float(cb[k]), floor))

        up, down = change(pc_major), -change(pc_minor)
        target = math.copysign(min(abs(up), abs(down)), up) if up * down > 0 else 0.0
        _, minor, major, _ = self._notes(spec)
        bands = [h * f for f in (minor, major) for h in range(1, HARMONICS + 1) if h * f < sr / 2]
        return {
            "target": target,
            "damage": lsd_outside_power(base["power"], patched["power"], sr, bands),
            "major_third_change_db": up,
            "minor_third_change_db": -down,
        }

    def wrong_edits(self, spec: PairSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The shared ones; the major third added on top of the minor one (a cluster); the whole
        minor chord a semitone up (every pitch moved)."""
        from steerlab.builtins.concepts._sound import envelope, partial_list, sines

        out = super().wrong_edits(spec)
        without, _ = self.render(spec)
        a, b = spec.span_samples()
        sr, n = spec.sample_rate, b - a
        _, _, major, _ = self._notes(spec)
        third = np.zeros_like(without)
        rng = np.random.default_rng([spec.seed, 5])
        env = envelope(n, sr, spec.fade_ms, spec.fade_ms)
        lt = float(spec.param("level_third"))
        third[a:b] = sines(partial_list([major], [lt], HARMONICS, sr), n, sr, rng) * env * self._scale(spec)
        out["major third added"] = (without, without + third)
        up = PairSpec.from_dict(
            {**spec.to_dict(), "params": {**dict(spec.params), "root_midi": int(spec.param("root_midi")) + 1}}
        )
        out["transposed"] = (without, self.render(up)[0])
        return out

    def _scale(self, spec: PairSpec) -> float:
        """The gain :meth:`render` applied to this pair (its peak scaling)."""
        from steerlab.builtins.concepts._sound import PEAK

        a, b = spec.span_samples()
        w, x = self.sounds(spec, b - a, np.random.default_rng([spec.seed, 2]))
        return PEAK / max(float(np.max(np.abs(w))), float(np.max(np.abs(x))), 1e-12)


CONCEPT = ChordQuality()
