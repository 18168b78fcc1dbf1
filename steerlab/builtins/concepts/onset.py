"""``onset``: attack sharpness: the same note started sharply (2 ms) or softly (60 ms).

Pair: a mixture of two harmonic notes (MIDI 48-72, 12 harmonics at ``1/h``) with a 60 ms
raised-cosine attack without the change, a 2 ms attack with it; the sustain and the release
are the same samples. Target measure: the change (dB) of the peak of the onset strength
(``librosa.onset.onset_strength``, spectral flux of the log-mel spectrogram, hop 256) within
100 ms of the sound's start. Damage: the log-spectral distance of the sustain (from 100 ms
after the start to the release), where the ideal edit changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from steerlab.battery.concept import PairSpec, Rule
from steerlab.builtins.concepts._base import SyntheticConcept
from steerlab.builtins.concepts._rendered import FAST_ATTACK_PROGRAMS

HARMONICS, SOFT_MS, SHARP_MS, WINDOW_S, HOP = 12, 60.0, 2.0, 0.1, 256
ONSET_N_FFT = 2048  # librosa.onset.onset_strength's default
RULE = Rule(
    min_target=3.0,
    max_damage=1.0,
    min_share=0.8,
    target="peak onset strength within 100 ms of the start, change in dB (librosa.onset.onset_strength)",
    damage="log-spectral distance of the sustain (100 ms after the start to the release), dB",
    rationale=(
        "3 dB: the attack's flux peak 1.4 times higher or lower, a clear change of a measure whose "
        "peak at a fixed level rises with the attack's steepness; the sustain, which the ideal edit "
        "leaves as it is, within 1 dB (the partials' off-band threshold)."
    ),
)


def onset_peak(x: np.ndarray, sr: int, start_s: float) -> float:
    """Peak of librosa's onset strength (hop 256) within WINDOW_S of ``start_s`` (s)."""
    return onset_peaks(np.asarray(x, dtype=np.float64)[None], sr, [start_s])[0]


def onset_peaks(xs: np.ndarray, sr: int, starts_s: Sequence[float]) -> list[float]:
    """:func:`onset_peak` of each row of ``xs`` ``[signals, samples]`` (its start in ``starts_s``):
    the power STFT of every row in one ``librosa.stft`` call and the mel filter bank built once,
    then ``librosa.feature.melspectrogram``'s einsum and ``librosa.onset.onset_strength`` of its
    dB on each row: the values of ``onset_strength(y=row, sr=sr, hop_length=256, center=True)``
    bit for bit (tests check)."""
    import librosa

    power = np.abs(librosa.stft(np.asarray(xs, dtype=np.float64), n_fft=ONSET_N_FFT, hop_length=HOP)) ** 2.0
    bank = _mel_bank(sr)
    out = []
    for s, start_s in zip(power, starts_s):
        mel = np.einsum("...ft,mf->...mt", s, bank, optimize=True)
        env = librosa.onset.onset_strength(S=librosa.power_to_db(np.abs(mel)), sr=sr, hop_length=HOP, center=True)
        t = np.arange(len(env)) * HOP / sr
        sel = (t >= start_s - 0.02) & (t <= start_s + WINDOW_S)
        out.append(float(env[sel].max()) if sel.any() else 0.0)
    return out


@lru_cache(maxsize=8)
def _mel_bank(sr: int) -> np.ndarray:
    """librosa.feature.melspectrogram's default mel filter bank at ``sr`` (n_fft 2048), read-only."""
    import librosa

    bank = librosa.filters.mel(sr=sr, n_fft=ONSET_N_FFT)
    bank.setflags(write=False)
    return bank


class Onset(SyntheticConcept):
    name = "onset"
    description = "attack sharpness (2 ms against 60 ms attacks); peak onset strength"
    changes = ("sharpen", "soften")
    controls: dict[str, str] = {}  # no control resolves a 2 ms attack: none can vouch
    no_control_reason = (
        "no control resolves an attack: stft_24khz frames are 43 ms apart with 171 ms windows and "
        "filterbank_24khz's filters last 0.68 s, both longer than the 60 ms the attacks differ by, and "
        "logspec_24khz (the control of loudness and brightness) adds one vector to every 43 ms frame of the "
        "span, constant in time (docs/logspec.md)"
    )
    rule = RULE
    variants = ("synthetic", "instrument")

    programs = FAST_ATTACK_PROGRAMS  # attack sharpness needs an instrument whose own attack is short

    def draw(self, rng: np.random.Generator, sample_rate: int) -> dict[str, Any]:
        notes = sorted(int(p) for p in rng.choice(np.arange(48, 73), size=2, replace=False))
        return {"notes_midi": ",".join(map(str, notes))}

    def sounds(self, spec: PairSpec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from steerlab.builtins.concepts._sound import envelope, midi_hz, partial_list, sines

        sr = spec.sample_rate
        f0s = [midi_hz(int(p)) for p in str(spec.param("notes_midi")).split(",")]
        x = sines(partial_list(f0s, [1.0] * len(f0s), HARMONICS, sr), n, sr, rng)
        return x * envelope(n, sr, SOFT_MS, spec.fade_ms), x * envelope(n, sr, SHARP_MS, spec.fade_ms)

    def instrument_sounds(self, spec: PairSpec, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The two notes rendered on GM ``program`` (one of the fast-attack programs, whose own
        attack is a few ms), under the concept's 60 ms and 2 ms attack envelopes: the same
        samples, only the attack differs. Not two velocities or programs: those change the
        spectrum and the sustain too."""
        from steerlab.builtins.concepts._rendered import mixture
        from steerlab.builtins.concepts._sound import envelope

        sr = spec.sample_rate
        x = mixture(int(spec.param("program")), [int(p) for p in str(spec.param("notes_midi")).split(",")], n, sr)
        return x * envelope(n, sr, SOFT_MS, spec.fade_ms), x * envelope(n, sr, SHARP_MS, spec.fade_ms)

    @staticmethod
    def _sustain(spec: PairSpec) -> tuple[int, int]:
        """The sustain's samples ``[first, last)``: from WINDOW_S after the start to the release."""
        a, b = spec.span_samples()
        return a + int(WINDOW_S * spec.sample_rate), b - int(spec.fade_ms / 1000 * spec.sample_rate)

    def features(self, xs: np.ndarray, specs: Sequence[PairSpec]) -> list[dict[str, Any]]:
        """Per signal: the peak onset strength near the sound's start and the Welch power
        spectrum of its sustain."""
        from steerlab.builtins.concepts._sound import powers

        groups: dict[tuple, list[int]] = {}
        for i, spec in enumerate(specs):
            groups.setdefault((spec.sample_rate, *self._sustain(spec)), []).append(i)
        out: list[dict[str, Any]] = [{} for _ in specs]
        for (sr, s0, s1), rows in groups.items():
            starts = [specs[i].span_samples()[0] / sr for i in rows]
            peaks = onset_peaks(xs[rows], sr, starts)
            sustain = powers(xs[rows, s0:s1])
            for i, peak, p in zip(rows, peaks, sustain):
                out[i] = {"onset_peak": peak, "sustain_power": p}
        return out

    def compare(self, base: dict[str, Any], patched: dict[str, Any], spec: PairSpec) -> dict[str, Any]:
        from steerlab.builtins.concepts._sound import db_change_from_power

        pb, pp = base["onset_peak"], patched["onset_peak"]
        _, change = db_change_from_power(base["sustain_power"], patched["sustain_power"], spec.sample_rate)
        return {
            "target": 20 * math.log10(pp / pb) if pb > 0 and pp > 0 else None,
            "damage": float(np.sqrt(np.mean(change**2))) if len(change) else 0.0,
            "onset_peak_baseline": pb,
            "onset_peak_patched": pp,
        }

    def wrong_edits(self, spec: PairSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The shared ones (+6 dB, noise), and a brightness tilt of the whole sound."""
        out = super().wrong_edits(spec)
        without, _ = self.render(spec)
        from steerlab.builtins.concepts.brightness import TILT_DB_PER_OCTAVE

        spectrum = np.fft.rfft(without)
        f = np.fft.rfftfreq(len(without), 1 / spec.sample_rate)
        gain = 10 ** (TILT_DB_PER_OCTAVE * np.log2(np.maximum(f, 20.0) / 1000.0) / 20)
        out["tilt"] = (without, np.fft.irfft(spectrum * gain, len(without)))
        return out


CONCEPT = Onset()
