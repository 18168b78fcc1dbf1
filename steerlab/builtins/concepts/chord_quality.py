"""``chord-quality``: a triad's quality, major against minor: its third moved by a semitone.

Pair: a minor triad (root, minor third, fifth; harmonic notes, 6 harmonics at ``1/h``; the root
C4 in every pair, the third's and fifth's levels and every phase drawn from the seed) without
the change, the major triad on the same root with the same phases and levels with it. Target measure: the chroma of the two thirds' pitch classes
(``librosa.feature.chroma_stft`` of the power STFT, no normalisation, ``tuning=0``, mean over
frames), each read over the bins its third holds: the bins where the third rendered alone is
louder than the other chord (the major third against the minor chord, the minor third against
the major chord; the ideal binary mask at 0 dB, Wang 2005,
:func:`~steerlab.builtins.concepts._bands.held_bins`): ``t_M`` = change (dB) at the major third,
``t_m`` = minus the change at the minor third; the target is the smaller of the two when both
move the same way (towards major: the major third up *and* the minor third down), with that sign,
else 0. Adding a major third on top of the minor one (a cluster, not a major chord) moves only
one: 0. (A first version read chroma over every bin: a pitch class pools the root's 5th harmonic
(the major third's class) and, through the chroma filters' spread, the other third, so the ideal
move reached only 6.3-6.8 dB on sine chords and 3.4-5.0 dB on rendered trumpet, guitar and square
lead, under the rule's 6 dB.) Damage: the off-band log-spectral distance outside both thirds' own
bands in the rest of the chord (:func:`~steerlab.builtins.concepts._bands.edit_bands`, as
``note``'s; a first version's harmonics 1-6 left 7.5 dB on rendered pairs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    target="chroma at the major third up and at the minor third down (the smaller of the two), each over the "
    "bins its third holds against the other chord, dB",
    damage="off-band log-spectral distance outside both thirds' own partials' bands and guard "
    "(steerlab.scoring.note_bands), dB",
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

    from steerlab.builtins.concepts._bands import chroma_of_power
    from steerlab.builtins.concepts._sound import N_FFT

    x = np.asarray(x, dtype=np.float64)
    s = np.abs(librosa.stft(x, n_fft=N_FFT, hop_length=N_FFT // 4)) ** 2
    rows = [chroma_of_power(row, sr).mean(axis=1) for row in (s if x.ndim > 1 else s[None])]
    return np.stack(rows) if x.ndim > 1 else rows[0]


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
    variants = ("synthetic", "instrument")

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

    def instrument_sounds(self, spec: PairSpec, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The same triad rendered on GM ``program``, minor then major: root, third and fifth each
        rendered alone and summed with the drawn levels (a level is a gain on the note's render, not
        a velocity, which would change its timbre), so the ideal edit is the third's render moved a
        semitone, at the same level."""
        from steerlab.builtins.concepts._rendered import mixture
        from steerlab.builtins.concepts._sound import envelope

        sr, program, r = spec.sample_rate, int(spec.param("program")), int(spec.param("root_midi"))
        env = envelope(n, sr, spec.fade_ms, spec.fade_ms)
        lt, lf = float(spec.param("level_third")), float(spec.param("level_fifth"))
        frame = mixture(program, [r, r + 7], n, sr, [1.0, lf])
        minor, major = (mixture(program, [r + k], n, sr, [lt]) for k in (3, 4))
        return (frame + minor) * env, (frame + major) * env

    def third(self, spec: PairSpec, semitones: int) -> np.ndarray:
        """The pair's third ``semitones`` (3 minor, 4 major) above the root alone, as :meth:`render`
        places and scales it (``[samples]``): the minor chord is the rest plus the minor third, the
        major chord the same rest plus the major third."""
        from steerlab.builtins.concepts._sound import envelope, midi_hz, partial_list, place, sines

        a, b = spec.span_samples()
        sr, n, lt = spec.sample_rate, b - a, float(spec.param("level_third"))
        env = envelope(n, sr, spec.fade_ms, spec.fade_ms)
        key = int(spec.param("root_midi")) + semitones
        if spec.variant == "instrument":
            from steerlab.builtins.concepts._rendered import mixture

            alone = mixture(int(spec.param("program")), [key], n, sr, [lt]) * env
        else:
            alone = sines(
                partial_list([midi_hz(key)], [lt], HARMONICS, sr), n, sr, np.random.default_rng([spec.seed, 5])
            )
            alone = alone * env
        return place(alone * self.scale(spec), a)

    def layout(self, spec: PairSpec) -> dict[str, Any]:
        """Where each third sits, from the pair's render: ``held_minor``/``held_major`` the bins the
        third holds against the other chord (:func:`~steerlab.builtins.concepts._bands.held_bins`),
        ``bands`` the two thirds' bands in the rest of the chord (root and fifth,
        :func:`~steerlab.builtins.concepts._bands.edit_bands`)."""
        from steerlab.builtins.concepts._bands import edit_bands, held_bins

        without, with_ = self.render(spec)
        minor, major = self.third(spec, 3), self.third(spec, 4)
        rest, sr = without - minor, spec.sample_rate
        return {
            "held_minor": held_bins(minor, with_),
            "held_major": held_bins(major, without),
            "bands": [edit_bands(minor, rest, sr), edit_bands(major, rest, sr)],
        }

    def features(self, xs: np.ndarray, specs: Sequence[PairSpec]) -> list[dict[str, Any]]:
        """Per signal: its mean chroma over every bin (``chroma``, :func:`chroma`), the chroma of
        the major third's pitch class over the bins the major third holds and of the minor
        third's over the minor third's (``major``, ``minor``: the pair's :meth:`layout`,
        :func:`~steerlab.builtins.concepts._bands.masked_chroma`), and its Welch power spectrum:
        the power STFT of every row in one ``librosa.stft`` call, the values of :meth:`measure`'s
        own steps on each row alone, bit for bit (tests check)."""
        import librosa

        from steerlab.builtins.concepts._bands import chroma_of_power, layout
        from steerlab.builtins.concepts._sound import N_FFT, powers

        xs = np.asarray(xs, dtype=np.float64)
        s = np.abs(librosa.stft(xs, n_fft=N_FFT, hop_length=N_FFT // 4)) ** 2
        out = []
        for row, p, spec in zip(s, powers(xs), specs):
            sr, root, where = spec.sample_rate, int(spec.param("root_midi")), layout(self, spec)
            out.append(
                {
                    "chroma": chroma_of_power(row, sr).mean(axis=1),
                    "major": chroma_of_power(row * where["held_major"][:, None], sr).mean(axis=1)[(root + 4) % 12],
                    "minor": chroma_of_power(row * where["held_minor"][:, None], sr).mean(axis=1)[(root + 3) % 12],
                    "power": p,
                }
            )
        return out

    def compare(self, base: dict[str, Any], patched: dict[str, Any], spec: PairSpec) -> dict[str, Any]:
        from steerlab.builtins.concepts._bands import damage_outside_power, layout

        floor = 1e-6 * max(float(base["chroma"].max()), 1e-20)  # 60 dB under the strongest pitch class

        def change(third: str) -> float:
            # the third's pitch class where the third is heard as itself (its held bins)
            return 10 * math.log10(max(float(patched[third]), floor) / max(float(base[third]), floor))

        up, down = change("major"), -change("minor")
        target = math.copysign(min(abs(up), abs(down)), up) if up * down > 0 else 0.0
        return {
            "target": target,
            "damage": damage_outside_power(base["power"], patched["power"], layout(self, spec)["bands"]),
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
        if spec.variant == "instrument":  # the major third rendered on the pair's program
            from steerlab.builtins.concepts._rendered import note

            key = int(spec.param("root_midi")) + 4
            third[a:b] = lt * note(int(spec.param("program")), key, n, sr) * env * self.scale(spec)
        else:
            third[a:b] = sines(partial_list([major], [lt], HARMONICS, sr), n, sr, rng) * env * self.scale(spec)
        out["major third added"] = (without, without + third)
        up = PairSpec.from_dict(
            {**spec.to_dict(), "params": {**dict(spec.params), "root_midi": int(spec.param("root_midi")) + 1}}
        )
        out["transposed"] = (without, self.render(up)[0])
        return out


CONCEPT = ChordQuality()
