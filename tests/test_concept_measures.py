"""The measures of ``note``, ``chord-quality`` and ``brightness`` (steerlab.builtins.concepts._bands):
each is correct on synthetic and rendered sounds, and each test fails a wrong implementation of
it (the sine model's harmonics 1-6, chroma over every bin, the floor read as a value)."""

from __future__ import annotations

import numpy as np
import pytest

from steerlab.battery.registry import concepts
from steerlab.builtins.concepts._bands import damage_outside, layout, masked_chroma, tilt_residual_censored
from steerlab.builtins.concepts._sound import envelope, freqs_for, power, sines

pytest.importorskip("tinysoundfont", reason="the render extra renders the instrument pairs")

SR = 24_000


def _pair(name: str, seed: int, variant: str):
    c = concepts().get(name)
    spec = c.pairs(SR, [seed], 0.1, True, variant=variant)[0]
    return c, spec, *c.render(spec)


def _tone(spec, hz: float, amplitude: float) -> np.ndarray:
    a, b = spec.span_samples()
    out = np.zeros(spec.n_samples)
    env = envelope(b - a, SR, spec.fade_ms, spec.fade_ms)  # the pair's fades: no onset's splatter
    out[a:b] = amplitude * sines([(hz, 1.0)], b - a, SR, np.random.default_rng(0)) * env
    return out


@pytest.mark.parametrize("variant", ["synthetic", "instrument"])
def test_note_damage_is_outside_the_notes_own_partials(variant):
    c, spec, w, x = _pair("note", 0, variant)
    bands = layout(c, spec)
    f0 = 293.66
    if variant == "instrument":  # a rendered note has partials above harmonic 6: the sine model's bands miss them
        assert max(bands.peaks_hz) > 10 * f0 and len(bands.peaks_hz) > 20
    else:
        assert np.allclose(bands.peaks_hz, [h * f0 for h in range(1, 7)], atol=3.0)
    assert c.score(w, x, spec)["damage"] < 0.3 and c.score(x, w, spec)["damage"] < 0.3
    # tones on the context's three loudest partials outside the note's bands and guard, each 4x the
    # partial's amplitude (+14 dB there): damage, though the note is there
    pb, pn = power(w), power(x - w)
    freqs = freqs_for(SR)
    free = ~(bands.bands | bands.guard) & (freqs > 100)
    ks = [int(k) for k in np.flatnonzero(free)[np.argsort(pb[free])[::-1]]]
    top: list[int] = []
    for k in ks:  # one bin per partial
        if all(abs(k - j) > 8 for j in top):
            top.append(k)
        if len(top) == 3:
            break
    extra = sum(_tone(spec, float(freqs[k]), 4 * _amplitude(spec, float(freqs[k]), pb[k])) for k in top)
    hurt = c.score(w, x + extra, spec)
    assert hurt["damage"] > 1.0 and hurt["target"] >= 6.0  # the rule fails it on damage alone
    # a tone doubling the note's own first partial is the note's (its band), not damage
    f1 = bands.peaks_hz[0]
    k1 = int(np.argmin(np.abs(freqs - f1)))
    inside = c.score(w, x + _tone(spec, f1, _amplitude(spec, f1, pn[k1])), spec)
    assert inside["damage"] < 0.5


def _amplitude(spec, hz: float, bin_power: float) -> float:
    """The amplitude of a tone at ``hz`` whose Welch peak bin holds ``bin_power``."""
    unit = power(_tone(spec, hz, 1.0))
    return float(np.sqrt(bin_power / unit.max()))


def test_damage_outside_with_no_bands_is_the_offband_distance_of_everything():
    c, spec, w, x = _pair("note", 1, "instrument")
    assert damage_outside(w, x, []) > 5.0  # the note itself is damage when nothing is left out
    assert damage_outside(w, 2 * w, []) == pytest.approx(20 * np.log10(2), abs=1e-9)


@pytest.mark.parametrize("variant", ["synthetic", "instrument"])
def test_chord_quality_chroma_is_read_where_each_third_is_heard(variant):
    import librosa

    from steerlab.builtins.concepts.chord_quality import chroma

    c, spec, w, x = _pair("chord-quality", 4, variant)  # instrument: the trumpet, the root's 5th harmonic strong
    full = np.ones(2049, dtype=bool)
    assert np.allclose(masked_chroma(w, SR, full), chroma(w, SR), rtol=1e-9)
    s = c.score(w, x, spec)
    assert s["target"] >= 6.0 and s["damage"] < 0.5 and c.score(x, w, spec)["target"] <= -6.0
    # chroma over every bin (the first measure) moves the major third by less than the rule's 6 dB
    # on the rendered trumpet: the root's 5th harmonic and the minor third's spread share its class
    e = (int(spec.param("root_midi")) + 4) % 12
    unmasked = 10 * np.log10(chroma(x, SR)[e] / chroma(w, SR)[e])
    assert (unmasked < 6.0) == (variant == "instrument")
    where = layout(c, spec)
    assert where["held_major"].any() and where["held_minor"].any()
    # a major third added on top of the minor one (a cluster) moves one third only: target 0
    added = c.wrong_edits(spec)["major third added"]
    assert abs(c.score(*added, spec)["target"]) < 0.5
    assert librosa.note_to_midi("E4") % 12 == e


@pytest.mark.parametrize("variant", ["synthetic", "instrument"])
def test_brightness_residual_reads_censored_peaks_as_bounds(variant):
    c, spec, w, x = _pair("brightness", 3, variant)
    assert tilt_residual_censored(w, x, SR, 40.0) < 0.05  # the ideal tilt, deep peaks and all
    assert tilt_residual_censored(w, 2 * w, SR, 40.0) < 1e-9  # a gain
    # a partial added where the baseline is under its floor: censored, still counted in full
    a, b = c.wrong_edits(spec)["partial at 4 kHz"]
    assert tilt_residual_censored(a, b, SR, 40.0) > 3.0


def test_brightness_censored_partial_is_what_the_residual_sees():
    """Synthetic seed 3: the 4 kHz partial lands where the baseline is under its floor, so its only
    trace is a censored peak; leaving censored peaks out (instead of bounding them) misses it."""
    from steerlab.builtins.concepts._sound import _peaks

    c, spec, _, _ = _pair("brightness", 3, "synthetic")
    a, b = c.wrong_edits(spec)["partial at 4 kHz"]
    pa = power(a)
    k = int(np.argmin(np.abs(freqs_for(SR) - 4000.0)))
    assert pa[k] < pa.max() * 1e-6 and _peaks(power(b), power(b).max() * 1e-6)[k]
    assert c.score(a, b, spec)["damage"] > 5.0


def test_brightness_a_decode_left_with_rumble_only_is_damage():
    """Every baseline peak under the rumble's floor: the bounds alone are consistent with a gain of
    -100 dB; with no peak the two spectra share, the damage is the whole 60 dB range (logspec_24khz's
    ablations of rendered pairs left such decodes, centroid 4-9 Hz, and scored 0.00 dB without it)."""
    c, spec, w, x = _pair("brightness", 2, "synthetic")
    rumble = 0.3 * np.sin(2 * np.pi * 6.0 * np.arange(len(w)) / SR)
    s = c.score(x, rumble, spec)
    assert s["target"] <= -100 and s["damage"] == 60.0  # darker by the centroid, and rejected
