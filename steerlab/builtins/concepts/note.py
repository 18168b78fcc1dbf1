"""``note``: one harmonic note added to (created) or removed from a mixture of others.

Pair: ``density`` context notes (harmonic, 6 harmonics at ``1/h``, MIDI 48-76, drawn from the
seed) without and with the target note (D4, MIDI 62, the same in every pair: directions are
learned for one note, as partials learns them for one target frequency), drawn so no context note is the target's unison, fourth or
fifth in any octave (those share harmonics with it, and a pitch measure could not tell them
apart) or a semitone from it in any octave (the measure compares the note's pitch with those). Target measure: the change (dB) of the harmonic pitch salience at the note's ``f0``
(``librosa.salience``'s harmonic summation over the magnitude STFT, harmonics 1-6 weighted
``1/h``, mean over the clip's frames), counted only when, in the signal that holds the note
(the patched one after a creation, the baseline before a removal), the salience at ``f0`` stands
above the salience a semitone either side; else 0. Without that condition a note a semitone off
passes (measured: its leakage raised the salience at ``f0`` by 7-19 dB while its harmonics sat
inside the note's guarded bands). (A first version subtracted the neighbours' *change* instead:
it failed correct notes added loudly, whose leakage raises a near-silent neighbour by more dB
than the note's own pitch, measured on stft_24khz.) Damage: the off-band
log-spectral distance outside the note's own bands, as ``steerlab partials`` measures a rendered
note (:func:`steerlab.scoring.note_bands`, docs/partials.md): the note's partials are the peaks of
its render alone (the pair's ideal edit) within 60 dB of its largest, one 50 Hz band each, and the
bins where adding or removing that note may move its context (the without signal) by more than 1 dB
are left out too (:func:`~steerlab.builtins.concepts._bands.edit_bands`). (A first version left out
only the bands of harmonics 1-6 of the sine model: a rendered note also sounds harmonics 7 and up
and energy between them (breath, hammer, bow noise), and its ideal edit failed that damage, 5.0 dB
median on rendered pairs, 1.5-3.0 dB even with every harmonic's band left out.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from steerlab.battery.concept import PairSpec, Rule
from steerlab.builtins.concepts._base import SyntheticConcept
from steerlab.scoring import NoteBands

HARMONICS = 6
# one note for every pair (the context varies by seed): a direction is learned for one note, as
# partials learns one per target frequency (a direction averaged over different notes is none of them)
TARGET_MIDI = 62  # D4, 293.66 Hz
RULE = Rule(
    min_target=6.0,
    max_damage=1.0,
    min_share=0.8,
    target="change of the pitch salience at the note's f0 (librosa.salience's harmonic summation, harmonics "
    "1-6), dB, counted where f0 is above its semitone neighbours in the signal holding the note",
    damage="off-band log-spectral distance outside the note's own partials' bands and guard (peaks of its "
    "render within 60 dB; steerlab.scoring.note_bands), dB",
    rationale=(
        "The partials rule, for a note: the note is its partials, so its salience must change as "
        "clearly as a partial's band (6 dB: the amplitude doubled or halved) while the rest of "
        "the spectrum stays within 1 dB (the partials' off-band threshold)."
    ),
)


def magnitudes(x: np.ndarray) -> np.ndarray:
    """The magnitude STFT ``[bins, frames]`` salience is computed from (librosa.stft, Hann,
    n_fft 4096, hop 1024); ``[signals, bins, frames]`` for ``x`` ``[signals, samples]``."""
    import librosa

    from steerlab.builtins.concepts._sound import N_FFT

    return np.abs(librosa.stft(np.asarray(x, dtype=np.float64), n_fft=N_FFT, hop_length=N_FFT // 4))


def salience(s: np.ndarray, sr: int, f0: float) -> float:
    """Mean over frames of the harmonic salience at ``f0`` Hz of a magnitude STFT ``s``: the sum
    over harmonics h = 1..6 of ``s`` linearly interpolated at ``h f0``, weighted ``1/h``: the value
    ``librosa.salience(s, freqs, harmonics, weights, filter_peaks=False)`` gives at a bin of
    frequency ``f0`` (Klapuri's harmonic summation), computed at that one frequency only
    (``librosa.salience`` computes every bin; tests check the two agree)."""
    from steerlab.builtins.concepts._sound import N_FFT

    freqs = np.arange(s.shape[0]) * sr / N_FFT
    total, weights = np.zeros(s.shape[1]), 0.0
    for h in range(1, HARMONICS + 1):
        weights += 1.0 / h  # librosa averages: a harmonic above Nyquist counts with fill_value 0
        if h * f0 <= freqs[-1]:
            total += _interp_rows(h * f0, freqs, s) / h
    return float(np.mean(total) / weights)


def _interp_rows(x: float, freqs: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``[frames]``: ``np.interp(x, freqs, s[:, t])`` for every frame ``t`` at once, with numpy's
    own arithmetic (the bin ``j`` at or below ``x``, ``slope * (x - freqs[j]) + s[j]``; the bin
    itself where ``x`` is on it), so each value is np.interp's bit for bit; ``x`` within
    ``[freqs[0], freqs[-1]]``."""
    j = int(np.searchsorted(freqs, x, side="right")) - 1
    if freqs[j] == x:
        return s[j].copy()
    slope = (s[j + 1] - s[j]) / (freqs[j + 1] - freqs[j])
    return slope * (x - freqs[j]) + s[j]


class Note(SyntheticConcept):
    name = "note"
    description = "one harmonic note added to or removed from a mixture of notes; pitch salience at its f0"
    changes = ("create", "remove")
    controls = {
        "stft_24khz": "its bins are 5.86 Hz apart, so every harmonic of a note (f0 >= 196 Hz) has bins of its own; "
        "raising them adds carriers at their centres, within 2.9 Hz of each harmonic, and lowering them scales "
        "their own content: the note is created (to that detuning) and removed by construction. filterbank_24khz "
        "cannot vouch: its bands (about a tenth of an octave) do not hold one harmonic each",
    }
    rule = RULE
    density = 2
    variants = ("synthetic", "instrument")

    def draw(self, rng: np.random.Generator, sample_rate: int) -> dict[str, Any]:
        target = TARGET_MIDI
        allowed = [p for p in range(48, 77) if (p - target) % 12 not in (0, 1, 5, 7, 11)]
        context = sorted(int(p) for p in rng.choice(allowed, size=self.density, replace=False))
        return {"target_midi": target, "context_midi": ",".join(map(str, context))}

    def _f0s(self, spec: PairSpec) -> tuple[float, list[float]]:
        from steerlab.builtins.concepts._sound import midi_hz

        ctx = [midi_hz(int(p)) for p in str(spec.param("context_midi")).split(",")]
        return midi_hz(int(spec.param("target_midi"))), ctx

    def sounds(self, spec: PairSpec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from steerlab.builtins.concepts._sound import envelope, partial_list, sines

        f0, ctx = self._f0s(spec)
        sr = spec.sample_rate
        env = envelope(n, sr, spec.fade_ms, spec.fade_ms)
        context = sines(partial_list(ctx, [1.0] * len(ctx), HARMONICS, sr), n, sr, rng) * env
        note = sines(partial_list([f0], [1.0], HARMONICS, sr), n, sr, rng) * env
        return context, context + note

    def instrument_sounds(self, spec: PairSpec, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The context notes rendered (GM ``program``), without and with the target note rendered
        on the same program: the ideal edit is the target note's render."""
        from steerlab.builtins.concepts._rendered import mixture
        from steerlab.builtins.concepts._sound import envelope

        sr, program = spec.sample_rate, int(spec.param("program"))
        env = envelope(n, sr, spec.fade_ms, spec.fade_ms)
        context = mixture(program, self._context_keys(spec), n, sr) * env
        return context, context + mixture(program, [int(spec.param("target_midi"))], n, sr) * env

    def _context_keys(self, spec: PairSpec) -> list[int]:
        return [int(p) for p in str(spec.param("context_midi")).split(",")]

    def harmonics_hz(self, spec: PairSpec) -> list[float]:
        f0, _ = self._f0s(spec)
        return [h * f0 for h in range(1, HARMONICS + 1) if h * f0 < spec.sample_rate / 2]

    def layout(self, spec: PairSpec) -> NoteBands:
        """The bands of the pair's note (its render alone, the ideal edit) in its context (the
        without signal): :func:`~steerlab.builtins.concepts._bands.edit_bands`."""
        from steerlab.builtins.concepts._bands import edit_bands

        without, with_ = self.render(spec)
        return edit_bands(with_ - without, without, spec.sample_rate)

    def features(self, xs: np.ndarray, specs: Sequence[PairSpec]) -> list[dict[str, Any]]:
        """Per signal: the salience at the note's f0 and a semitone either side, the magnitude
        STFT's largest value and the Welch power spectrum."""
        from steerlab.builtins.concepts._sound import powers

        mags, pows = magnitudes(xs), powers(xs)
        out = []
        for m, p, spec in zip(mags, pows, specs):
            f0, _ = self._f0s(spec)
            out.append(
                {
                    "salience": {f: salience(m, spec.sample_rate, f) for f in (f0, *self._neighbours(f0))},
                    "max": float(m.max()) if m.size else None,
                    "power": p,
                }
            )
        return out

    @staticmethod
    def _neighbours(f0: float) -> list[float]:
        return [f0 * 2 ** (k / 12) for k in (-1, 1)]

    def compare(self, base: dict[str, Any], patched: dict[str, Any], spec: PairSpec) -> dict[str, Any]:
        from steerlab.builtins.concepts._bands import damage_outside_power, layout

        f0, _ = self._f0s(spec)
        # 60 dB under the baseline's strongest bin: a salience "from nothing" is measured from there
        floor = 1e-3 * base["max"] if base["max"] is not None else 1e-12

        def sal(features: dict[str, Any], f: float) -> float:
            return max(features["salience"][f], floor)

        neighbours = self._neighbours(f0)
        change = 20 * math.log10(sal(patched, f0) / sal(base, f0))
        # where the note is present (after a creation, before a removal), its pitch must stand
        # above the pitches a semitone either side: else the change at f0 is another note's leakage
        present = patched if change >= 0 else base
        peak = 20 * math.log10(sal(present, f0) / max(sal(present, f) for f in neighbours))
        return {
            "target": change if peak > 0 else 0.0,
            "salience_change_db": change,
            "peak_over_neighbours_db": peak,
            "damage": damage_outside_power(base["power"], patched["power"], [layout(self, spec)]),
            "f0_hz": f0,
            "salience_baseline": base["salience"][f0],
            "salience_patched": patched["salience"][f0],
        }

    def wrong_edits(self, spec: PairSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The shared ones, and the same note a semitone up and a tritone up (the wrong pitch;
        rendered on the pair's program for an ``instrument`` pair)."""
        from steerlab.builtins.concepts._sound import envelope, partial_list, sines

        out = super().wrong_edits(spec)
        without, with_ = self.render(spec)
        ideal = with_ - without
        f0, _ = self._f0s(spec)
        a, b = spec.span_samples()
        sr, n = spec.sample_rate, b - a
        for name, ratio, semitones in (("semitone up", 2 ** (1 / 12), 1), ("tritone up", 2**0.5, 6)):
            wrong = np.zeros_like(without)
            env = envelope(n, sr, spec.fade_ms, spec.fade_ms)
            if spec.variant == "instrument":  # the same program's note at the wrong key
                from steerlab.builtins.concepts._rendered import note

                key = int(spec.param("target_midi")) + semitones
                wrong[a:b] = note(int(spec.param("program")), key, n, sr) * env
            else:
                rng = np.random.default_rng([spec.seed, 4])
                wrong[a:b] = sines(partial_list([f0 * ratio], [1.0], HARMONICS, sr), n, sr, rng) * env
            wrong *= np.sqrt(np.sum(ideal**2) / np.sum(wrong**2))
            out[name] = (without, without + wrong)
        return out


CONCEPT = Note()
