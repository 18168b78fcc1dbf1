"""The note-support rule for ``instrument`` pairs (docs/partials.md, "The note-support rule").

An instrument pair's ideal edit is the target note rendered alone; on a model whose output is
audio it is scored on the note's own time-frequency support: the cells of the scorer's short-time
spectra where the note is within ``range_db`` (60 dB) of its loudest cell. Sinusoid families keep
the band rule, bitwise.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from steerlab.scoring import ScoreConfig, note_support, power_spectrogram, score, score_note

SR = 8000
CFG = ScoreConfig(n_fft=256)


def _tone(f, amp, n, start=0, stop=None):
    x = np.zeros(n)
    stop = n if stop is None else stop
    t = np.arange(stop - start) / SR
    x[start:stop] = amp * np.sin(2 * np.pi * f * t)
    return x


def test_note_support_is_where_the_note_is_within_range_db_of_its_peak():
    n = SR // 2
    # a note in the middle of the clip: 1 kHz at 0 dB, 2.5 kHz at -50 dB, 3.5 kHz at -70 dB
    on, off = n // 4, 3 * n // 4
    note = (_tone(1000, 1.0, n, on, off) + _tone(2500, 10 ** (-50 / 20), n, on, off)
            + _tone(3500, 10 ** (-70 / 20), n, on, off))
    s = note_support(note, CFG)
    power = power_spectrogram(note[None], CFG.n_fft)
    # frames start every hop (64) from 192 samples before the clip, until every sample lies under four
    assert s.shape == power.shape == ((n - 1 + 192) // 64 + 1, 129)
    # exactly the cells above the peak cell minus 60 dB
    assert np.array_equal(s, power > power.max() * 1e-6)
    mid = (n // 2 - 128 + 192) // 64  # the frame centred on the clip: wholly inside the note
    assert s[mid, 1000 * 256 // SR] and s[mid, 2500 * 256 // SR] and not s[mid, 3500 * 256 // SR]
    assert not s[0].any() and not s[-1].any()  # frames wholly in the silence before and after
    assert s[mid].sum() < 20  # the main lobes (and near skirts) of two partials, not the whole frame
    wide = note_support(note, ScoreConfig(n_fft=256, range_db=80.0))
    assert wide[mid, 3500 * 256 // SR] and (wide >= s).all()
    assert not note_support(np.zeros(n), CFG).any()


def test_score_note_gain_concentration_and_offband_on_constructed_signals():
    from steerlab.stimuli import fade

    n = SR // 2
    env = fade(n, SR, 50.0)  # faded like the stimuli: an abrupt onset would splatter over every bin
    note = _tone(1000, 0.3, n) * env
    s = note_support(note, CFG)
    # the baseline holds the same sound at half the note's amplitude: adding the note scales every
    # cell by (1.5 / 0.5)^2, so the gain is 20 log10(3) and all of the change lies in the support
    base = _tone(1000, 0.15, n) * env
    r = score_note(base, base + note, SR, s, CFG)
    assert r["gain_db"] == pytest.approx(20 * math.log10(3), abs=1e-9)
    assert r["concentration"] > 1 - 1e-6 and r["offband_cells"] == 0 and r["offband_lsd_db"] == 0.0
    assert r["baseline_support_energy"] == pytest.approx(np.mean(base**2), rel=1e-5)  # mean-square units
    # a context tone outside the note's support doubled by the patch: +6.02 dB on every held cell
    ctx = _tone(3000, 0.2, n) * env
    r = score_note(ctx, 2 * ctx, SR, s, CFG)
    assert r["offband_cells"] > 0 and r["offband_lsd_db"] == pytest.approx(20 * math.log10(2), abs=1e-9)
    # nothing of it reaches the note's support (below floor_db there in both): no gain, no concentration
    assert r["concentration"] < 1e-3 and r["gain_db"] == 0.0 and r["baseline_support_energy"] < 1e-12
    with pytest.raises(Exception, match="note support has shape"):
        score_note(ctx, ctx, SR, s[:-1], CFG)
    silent = score_note(ctx, ctx, SR, np.zeros_like(s), CFG)
    assert silent["gain_db"] is None and "silent" in silent["unresolved"]


def test_sinusoid_rows_keep_the_band_rule_bitwise():
    """A sinusoid pair takes the band rule: ``score_output`` is :func:`steerlab.scoring.score` at
    the target, every number bitwise, and no note support is computed for it."""
    from steerlab.partials.sweep import note_support_for, score_output
    from steerlab.stimuli import StimulusSpec, render

    audio = SimpleNamespace(has_decoder=True, sample_rate=24000)
    spec = StimulusSpec("inharmonic", 1200.0, 4, seed=3, sample_rate=24000, duration_s=0.25)
    assert note_support_for(audio, spec, {"band_hz": 50.0, "n_fft": 4096}) is None
    without, with_ = render(spec)
    patched = without + 0.5 * (with_ - without) + 1e-3 * np.sin(np.arange(len(without)) * 0.37)
    got = score_output(audio, without, patched, spec.target_hz, {"band_hz": 50.0, "n_fft": 4096},
                       support=note_support_for(audio, spec, {"band_hz": 50.0, "n_fft": 4096}))
    ref = score(without, patched, 24000, [1200.0], ScoreConfig(band_hz=50.0, n_fft=4096), multires=False)
    t = ref["targets"][0]
    assert got["scoring"] == ref["config"] and "rule" not in got["scoring"]
    for k, v in (("gain_db", t["gain_db"]), ("concentration", t["concentration"]),
                 ("offband_db", t["offband_lsd_db"]), ("offband_lsd_db", t["offband_lsd_db"]),
                 ("baseline_band", t["baseline_band_energy"]), ("patched_band", t["patched_band_energy"]),
                 ("lsd_db", ref["lsd_db"]), ("snr_change_db", ref["snr_change_db"])):
        assert got[k] == v and type(got[k]) is type(v), k
    salience = SimpleNamespace(has_decoder=False, sample_rate=16000)
    note = StimulusSpec("instrument", 300.0, 1, sample_rate=16000, band_high_hz=7200.0)
    assert note_support_for(salience, note, {"n_fft": 4096}) is None  # a salience scores f0's bins


def test_oracle_on_an_instrument_pair_through_a_control():
    """The ideal edit of one instrument pair through the filterbank control (its decodes of the
    without- and with-note signals, one against the other) under the note-support rule: all of the
    change lies in the note's support, as on the waveforms, and the gain is the waveforms' to 0.1 dB."""
    pytest.importorskip("tinysoundfont")
    from steerlab import api
    from steerlab.partials.sweep import note_support_for, outputs, score_output
    from steerlab.stimuli import StimulusSpec, ideal_edit, render

    model = api.load_model("filterbank_24khz")
    spec = StimulusSpec("instrument", 1200.0, 1, seed=102, sample_rate=24000, duration_s=0.25,
                        band_high_hz=7200.0, margin_s=0.1)
    scoring = {"band_hz": 50.0, "n_fft": 4096}
    support = note_support_for(model, spec, scoring)
    note = ideal_edit(spec)
    without, with_ = render(spec)
    assert np.abs((with_.astype(np.float64) - without) - note).max() < 1e-6 * np.abs(note).max() * 10
    wave = SimpleNamespace(has_decoder=True, sample_rate=24000)
    w_add = score_output(wave, without, with_, spec.target_hz, scoring, support=support)
    (b, p), = outputs(model, [spec], 4)
    add = score_output(model, b, p, spec.target_hz, scoring, support=support)
    rem = score_output(model, p, b, spec.target_hz, scoring, support=support)
    assert add["scoring"]["rule"] == "note_support" and add["scoring"]["support_cells"] == int(support.sum())
    for r in (w_add, add, rem):
        assert r["concentration"] > 0.999
    assert add["gain_db"] == pytest.approx(w_add["gain_db"], abs=0.1)
    assert add["gain_db"] > 6.0 and -rem["gain_db"] == pytest.approx(add["gain_db"], abs=1e-9)
    # the off-band cells: where the baseline is held outside the note's support; the ideal edit
    # touches them only with the note's energy more than 60 dB below its peak
    assert add["offband_db"] == pytest.approx(w_add["offband_db"], abs=0.2)
