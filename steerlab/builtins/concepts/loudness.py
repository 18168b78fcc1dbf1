"""``loudness``: the level of a sound raised or lowered, nothing else.

Pair: a mixture of three harmonic notes (MIDI 45-76, 12 harmonics at ``1/h``) without the
change, the same times 2 (+6.02 dB) with it. Target measure: the change of the RMS level in dB
over the clip. Damage: the log-spectral distance after removing the mean level change (the RMS
over bins with energy of the per-bin dB change minus its mean): a pure gain costs nothing,
any change of spectral shape (a tilt, an added note, noise) does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from steerlab.battery.concept import PairSpec, Rule
from steerlab.builtins.concepts._base import SyntheticConcept

HARMONICS, GAIN = 12, 2.0
RULE = Rule(
    min_target=3.0,
    max_damage=1.0,
    min_share=0.8,
    target="RMS level change, dB",
    damage="log-spectral distance after removing the mean level change, dB",
    rationale=(
        "3 dB (the power doubled or halved) is several times the ~1 dB just-noticeable level "
        "difference and half the ideal edit's 6 dB; the spectrum's shape must stay within 1 dB "
        "per bin (the partials' off-band threshold)."
    ),
)


class Loudness(SyntheticConcept):
    name = "loudness"
    description = "level raised or lowered by a gain; RMS level in dB"
    changes = ("raise", "lower")
    # Not filterbank_24khz or stft_24khz: raising a band or bin adds a carrier at its centre, not a
    # gain of the content there (measured: +3 dB with 10 dB of shape damage), so by construction they
    # cannot raise a level (docs/steerability.md, "The positive controls").
    controls = {
        "logspec_24khz": "log-magnitudes resynthesised with each bin's analysis phase: adding the constant vector "
        "c is the gain e^c by construction (|gX| = g|X|), and for this pair (x, 2x) the difference of means is "
        "exactly ln 2 times the share of sound frames on every bin above the floor: the constant vector "
        "(docs/logspec.md)",
    }
    rule = RULE
    variants = ("synthetic", "instrument")

    def draw(self, rng: np.random.Generator, sample_rate: int) -> dict[str, Any]:
        notes = sorted(int(p) for p in rng.choice(np.arange(45, 77), size=3, replace=False))
        return {"notes_midi": ",".join(map(str, notes))}

    def sounds(self, spec: PairSpec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from steerlab.builtins.concepts._sound import envelope, midi_hz, partial_list, sines

        sr = spec.sample_rate
        f0s = [midi_hz(int(p)) for p in str(spec.param("notes_midi")).split(",")]
        x = sines(partial_list(f0s, [1.0] * len(f0s), HARMONICS, sr), n, sr, rng)
        x *= envelope(n, sr, spec.fade_ms, spec.fade_ms)
        return x, x * GAIN

    def instrument_sounds(self, spec: PairSpec, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The three notes rendered on GM ``program``, and the same times 2 (+6.02 dB). A gain, not
        a higher MIDI velocity: in a SoundFont velocity also opens the filter and picks the sample
        layer (a brighter, different sound), so the pair would differ by more than level."""
        from steerlab.builtins.concepts._rendered import mixture
        from steerlab.builtins.concepts._sound import envelope

        sr = spec.sample_rate
        x = mixture(int(spec.param("program")), [int(p) for p in str(spec.param("notes_midi")).split(",")], n, sr)
        x = x * envelope(n, sr, spec.fade_ms, spec.fade_ms)
        return x, x * GAIN

    def features(self, xs: np.ndarray, specs: Sequence[PairSpec]) -> list[dict[str, Any]]:
        """Per signal: its RMS level (dB) and its Welch power spectrum."""
        from steerlab.builtins.concepts._sound import powers, rms_db

        return [{"rms_db": rms_db(x), "power": p} for x, p in zip(xs, powers(xs))]

    def compare(self, base: dict[str, Any], patched: dict[str, Any], spec: PairSpec) -> dict[str, Any]:
        from steerlab.builtins.concepts._sound import db_change_from_power

        _, change = db_change_from_power(base["power"], patched["power"], spec.sample_rate)
        shape = float(np.sqrt(np.mean((change - change.mean()) ** 2))) if len(change) else 0.0
        return {
            "target": patched["rms_db"] - base["rms_db"],
            "damage": shape,
            "mean_bin_change_db": float(change.mean()) if len(change) else None,
        }

    def wrong_edits(self, spec: PairSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Noise at the ideal edit's energy; a tilt (+6 dB per octave about 1 kHz, louder by its
        highs); one more note at the ideal edit's energy."""
        from steerlab.builtins.concepts.brightness import CONCEPT as brightness

        out = {k: v for k, v in super().wrong_edits(spec).items() if not k.startswith("gain")}
        without, with_ = self.render(spec)
        energy = float(np.sum((with_ - without) ** 2))
        if spec.variant == "instrument":  # the pair's own sound tilted
            from steerlab.builtins.concepts._rendered import tilt
            from steerlab.builtins.concepts.brightness import PIVOT_HZ, TILT_DB_PER_OCTAVE

            bw, bx = without, tilt(without, spec.sample_rate, TILT_DB_PER_OCTAVE, PIVOT_HZ)
        else:
            b_spec = PairSpec.from_dict({**spec.to_dict(), "concept": "brightness", "params": {"notes_midi": "45,57"}})
            bw, bx = brightness.render(b_spec)
        out["tilt"] = (bw, bw + (bx - bw) * np.sqrt(energy / np.sum((bx - bw) ** 2)))
        a, b = spec.span_samples()
        from steerlab.builtins.concepts._sound import envelope, midi_hz, partial_list, sines

        n, sr = b - a, spec.sample_rate
        note = np.zeros_like(without)
        if spec.variant == "instrument":  # G#5 on the pair's program
            from steerlab.builtins.concepts._rendered import note as rendered_note

            note[a:b] = rendered_note(int(spec.param("program")), 80, n, sr)
        else:
            note[a:b] = sines(partial_list([midi_hz(80)], [1.0], HARMONICS, sr), n, sr, np.random.default_rng(1))
        note[a:b] *= envelope(n, sr, spec.fade_ms, spec.fade_ms)
        out["a note added"] = (without, without + note * np.sqrt(energy / np.sum(note**2)))
        return out


CONCEPT = Loudness()
