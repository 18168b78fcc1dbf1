"""Rendered-instrument sounds for the built-in concepts' ``instrument`` variant.

Every note is one General MIDI note rendered alone by tinysoundfont from pretty_midi's TimGM6mb
SoundFont (:class:`steerlab.corpus.Renderer`, the renderer of ``steerlab partials``' instrument
family; the ``render`` extra), held for the sound's whole duration, at one velocity; a mixture is
the sum of its notes' renders. tinysoundfont mixes its voices by addition (no reverb or chorus
bus), so the sum equals the notes rendered together to float32 rounding (tests measure it), and a
pair that differs by one note differs by exactly that note's render: the ideal edit.

The program is drawn per pair from :data:`PROGRAMS` (one per pitched GM family that holds a
steady tone for half a second) or, for concepts whose change is the attack, from
:data:`FAST_ATTACK_PROGRAMS` (see there). The concept's own parameters are drawn as for its
synthetic pairs (same seed, same stream), so the ``instrument`` pair of seed ``s`` plays the
notes of the synthetic pair of seed ``s``, on an instrument.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

# GM programs (0-based), one per family, each sounding its pitch for the 0.3-0.5 s of a pair:
# piano, organ, guitar, strings, brass, reed, pipe, synth lead. Percussive families (chromatic
# percussion's bells, percussive, sound effects) are left out: their inharmonic or decaying
# spectra leave little of a pitch, a chord or a level to change by the end of the clip.
PROGRAMS: dict[int, str] = {
    0: "Acoustic Grand Piano",
    16: "Drawbar Organ",
    24: "Acoustic Guitar (nylon)",
    48: "String Ensemble 1",
    56: "Trumpet",
    66: "Tenor Sax",  # not 65 Alto Sax: TimGM6mb renders its E4 (MIDI 64, every major chord's third) as silence
    73: "Flute",
    80: "Lead 1 (square)",
}
# For ``onset`` (attack sharpness) only programs whose own attack is shorter than the sharp
# attack's 2 ms-to-60 ms contrast can carry it: a note that itself swells in over 60 ms or more
# (strings, the flute, the sax) is soft under either envelope, so the pair would not differ by
# the concept's change. Piano, organ, guitar and the square lead start within a few ms.
FAST_ATTACK_PROGRAMS: dict[int, str] = {p: PROGRAMS[p] for p in (0, 16, 24, 80)}
VELOCITY = 100  # one velocity for every note: a velocity change is also a timbre change in a SoundFont
PROGRAM_STREAM = 7  # the program order's stream (the concepts' own draws use streams 1-6)


def draw_program(seed: int, programs: Sequence[int] = tuple(PROGRAMS)) -> int:
    """The GM program of seed ``seed``'s pair: ``programs`` in one order drawn once (from the
    program stream), taken in turn by seed, so any ``len(programs)`` consecutive seeds play
    every program once (a few held-out pairs still span several families)."""
    order = np.random.default_rng(PROGRAM_STREAM).permutation(np.asarray(list(programs)))
    return int(order[int(seed) % len(order)])


def available() -> None:
    """Raise a one-line :class:`steerlab.errors.StimulusError` unless rendering is possible
    (tinysoundfont importable, the SoundFont present): ``steerlab.stimuli.check_renderer``."""
    from steerlab.stimuli import check_renderer

    check_renderer()


@lru_cache(maxsize=4)
def _renderer(sample_rate: int) -> Any:
    from steerlab.corpus import Renderer, default_soundfont

    available()
    return Renderer(default_soundfont(), sample_rate)


@lru_cache(maxsize=512)
def _note(program: int, key: int, velocity: int, n: int, sample_rate: int) -> np.ndarray:
    from steerlab.corpus import Note, RenderSpec
    from steerlab.errors import StimulusError

    seconds = n / sample_rate
    x = _renderer(sample_rate).render(RenderSpec("note", program, (Note(key, velocity, 0.0, seconds),), seconds))
    x = np.asarray(x, dtype=np.float64)
    x = x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))
    if not np.any(x):
        raise StimulusError(f"the SoundFont rendered MIDI note {key} of program {program} as silence")
    x.setflags(write=False)
    return x


def note(program: int, key: int, n: int, sample_rate: int, velocity: int = VELOCITY) -> np.ndarray:
    """``[n]`` float64: MIDI ``key`` of GM ``program`` rendered alone from sample 0, held for
    all ``n`` samples (no release inside the clip), mono. Raises StimulusError for silence."""
    return _note(int(program), int(key), int(velocity), int(n), int(sample_rate)).copy()


def mixture(
    program: int, keys: Sequence[int], n: int, sample_rate: int, levels: Sequence[float] | None = None
) -> np.ndarray:
    """``[n]``: the sum of :func:`note` of each key, times its level (1 when ``levels`` is None)."""
    out = np.zeros(n)
    for i, k in enumerate(keys):
        out += (1.0 if levels is None else float(levels[i])) * _note(int(program), int(k), VELOCITY, n, sample_rate)
    return out


def tilt(x: np.ndarray, sample_rate: int, db_per_octave: float, pivot_hz: float = 1000.0) -> np.ndarray:
    """``x`` through the zero-phase gain ``(f / pivot) ** (db_per_octave / 6.02)`` (frequencies
    below 20 Hz at the 20 Hz gain), by one FFT of the whole signal: a per-frequency gain, nothing
    added or moved. ``x`` should start and end in silence (its fades), so the FFT's circularity
    wraps nothing audible."""
    spectrum = np.fft.rfft(np.asarray(x, dtype=np.float64))
    f = np.fft.rfftfreq(len(x), 1 / sample_rate)
    gain = 10 ** (db_per_octave * np.log2(np.maximum(f, 20.0) / pivot_hz) / 20)
    return np.fft.irfft(spectrum * gain, len(x))
