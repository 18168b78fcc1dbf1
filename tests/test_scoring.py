"""Known-answer tests of steerlab.scoring: each asserts a measured value that a wrong
implementation would get wrong (analytic gains, band shares, centroids, Parseval)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from steerlab.errors import AudioError, SteerlabError
from steerlab.scoring import ScoreConfig, power_spectrum, score

torch.set_num_threads(1)

SR = 16_000


def tone(f: float, amp: float, seconds: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return amp * np.sin(2 * np.pi * f * t + phase)


def harmonic(f0: float, n: int, seconds: float = 1.0) -> np.ndarray:
    """A harmonic tone whose partials k*f0 have amplitude 0.2/k."""
    return sum(tone(k * f0, 0.2 / k, seconds, phase=k) for k in range(1, n + 1))


def pink_noise(seconds: float, seed: int, rms: float = 0.1) -> np.ndarray:
    """Noise with a 1/f power spectrum, shaped in the frequency domain."""
    n = int(SR * seconds)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return x * rms / np.sqrt(np.mean(x**2))


def assert_finite_json(result: dict) -> None:
    json.dumps(result, allow_nan=False)  # raises on NaN/inf, and on anything not JSON


# --- spectrum scaling -----------------------------------------------------------------------


@pytest.mark.parametrize("n_samples", [100, 4095, 16_001])
def test_power_spectrum_sums_to_mean_square(n_samples):
    x = np.random.default_rng(n_samples).standard_normal((2, n_samples))
    assert power_spectrum(x, 4096).sum() == pytest.approx(np.mean(x**2), rel=1e-9)


# --- gain and concentration: known answers ---------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(0.1, 0.3), (0.4, 0.1), (0.05, 0.0501)])
def test_gain_of_changed_partial_matches_amplitude_ratio(a, b):
    f = 1000.0
    rest = harmonic(220.0, 8)  # partials at 220..1760 Hz, the nearest 100 Hz from f
    result = score(rest + tone(f, a), rest + tone(f, b), SR, [f])
    target = result["targets"][0]
    assert target["gain_db"] == pytest.approx(20 * math.log10(b / a), abs=0.5)
    assert target["baseline_band_energy"] == pytest.approx(a**2 / 2, rel=0.02)
    assert target["patched_band_energy"] == pytest.approx(b**2 / 2, rel=0.02)
    assert target["concentration"] > 0.9
    assert_finite_json(result)


def test_gain_of_partial_added_to_pink_noise_matches_energy_sum():
    f, b = 2500.0, 0.05
    noise = pink_noise(2.0, seed=1)
    result = score(noise, noise + tone(f, b, 2.0), SR, [f])
    target = result["targets"][0]
    e_noise = target["baseline_band_energy"]
    # noise and tone are uncorrelated: band energies add
    assert target["gain_db"] == pytest.approx(10 * math.log10((e_noise + b**2 / 2) / e_noise), abs=0.5)
    assert target["gain_db"] > 10  # the tone dominates the band: a real, non-trivial gain
    assert target["concentration"] > 0.9  # the change is the tone alone
    assert target["offband_lsd_db"] < 0.1  # nothing changed outside the band
    assert result["offband_lsd_db"] == target["offband_lsd_db"]  # one target: same bands
    assert result["lsd_db"] > 0.5  # the band itself did change (about 13 of 2049 bins, by over 10 dB)


def test_stereo_mixes_channels_by_averaging_power():
    f, a, b = 700.0, 0.1, 0.3
    base = np.stack([tone(f, a), tone(f, a)])
    patched = np.stack([tone(f, b), tone(f, a)])
    gain = score(base, patched, SR, [f])["targets"][0]["gain_db"]
    assert gain == pytest.approx(10 * math.log10((a**2 + b**2) / (2 * a**2)), abs=0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_white_noise_change_spreads_over_the_spectrum(seed):
    # White noise has a flat spectrum, so the share of its power in a band is the band's
    # share of the bins. Tolerance: 4 s gives 62 Welch frames at 75% overlap (about 33
    # independent ones for Hann) and the 129-bin band holds about 86 independent bins, so
    # the band energy has a relative standard deviation near 1 / sqrt(33 * 86) = 1.9%;
    # 10% is more than 5 standard deviations.
    band, seconds = 500.0, 4.0
    base = harmonic(330.0, 6, seconds)
    noise = 0.05 * np.random.default_rng(seed).standard_normal(base.shape)
    result = score(base, base + noise, SR, [3000.0, 6000.0], ScoreConfig(band_hz=band))
    bin_hz = SR / 4096
    share = (2 * round(band / 2 / bin_hz) + 1) * bin_hz / (SR / 2)  # 129 bins of 3.9 Hz
    assert share == pytest.approx(band / (SR / 2), rel=0.01)
    for target in result["targets"]:
        assert target["concentration"] == pytest.approx(share, rel=0.10)
    assert result["concentration"] == pytest.approx(2 * share, rel=0.10)


def test_doubling_the_signal_shifts_every_bin_by_6_db():
    base = pink_noise(1.0, seed=3)
    result = score(base, 2 * base, SR, [440.0])
    six = 20 * math.log10(2)
    assert result["targets"][0]["gain_db"] == pytest.approx(six, abs=1e-9)
    assert result["targets"][0]["offband_lsd_db"] == pytest.approx(six, abs=1e-9)
    assert result["lsd_db"] == pytest.approx(six, abs=1e-9)
    assert result["centroid_shift_hz"] == pytest.approx(0, abs=1e-6)
    assert result["flatness_shift"] == pytest.approx(0, abs=1e-9)
    assert result["change_rms"] == pytest.approx(result["baseline_rms"])
    assert result["snr_change_db"] == pytest.approx(0, abs=1e-9)
    assert result["mrstft"] > 0.5


def test_small_change_has_high_snr_and_identical_decodes_score_zero():
    base = harmonic(200.0, 5)
    small = score(base, 1.1 * base, SR)
    assert small["change_rms"] == pytest.approx(0.1 * small["baseline_rms"])
    assert small["snr_change_db"] == pytest.approx(20.0)
    same = score(base, base.copy(), SR, [200.0])
    assert same["lsd_db"] == same["mrstft"] == same["change_rms"] == 0.0
    assert same["targets"][0]["gain_db"] == 0.0
    # a change of nothing has no concentration (0/0): null with the reason, never 0.0
    assert same["targets"][0]["concentration"] is None and same["concentration"] is None
    assert "equals the baseline exactly" in same["targets"][0]["concentration_reason"]
    assert same["concentration_reason"] == same["targets"][0]["concentration_reason"]


# --- global shape descriptors --------------------------------------------------------------


def test_adding_a_high_tone_raises_the_centroid_by_the_power_weighted_amount():
    low, high = tone(500.0, 1.0), tone(4000.0, 0.5)
    up = score(low, low + high, SR)
    p_low, p_high = 0.5, 0.125  # powers a**2/2
    centroid = (p_low * 500 + p_high * 4000) / (p_low + p_high)  # 1200 Hz
    spread = math.sqrt(p_low * p_high) / (p_low + p_high) * 3500  # 1400 Hz
    assert up["centroid_shift_hz"] == pytest.approx(centroid - 500, rel=0.02)
    assert up["bandwidth_shift_hz"] == pytest.approx(spread, rel=0.03)
    down = score(low + high, low, SR)
    assert down["centroid_shift_hz"] == pytest.approx(-(centroid - 500), rel=0.02)


def test_a_tone_over_noise_lowers_flatness():
    noise = 0.05 * np.random.default_rng(4).standard_normal(SR)
    result = score(noise, noise + tone(1000.0, 0.5), SR)
    assert result["flatness_shift"] < -0.3  # Welch-averaged white noise is near 1; the tone dominates


# --- silence and edge cases ----------------------------------------------------------------


def test_silence_gives_finite_neutral_scores():
    zeros = np.zeros((2, 5000))  # longer than the spectrum's 4096-sample window, so every number is given
    result = score(zeros, zeros, SR, [440.0, 5000.0])
    assert_finite_json(result)
    for target in result["targets"]:
        assert target["gain_db"] == 0.0
        assert target["concentration"] is None and target["concentration_reason"]
        assert target["offband_lsd_db"] == 0.0
    for key in (
        "lsd_db",
        "offband_lsd_db",
        "mrstft",
        "centroid_shift_hz",
        "flatness_shift",
        "bandwidth_shift_hz",
        "change_rms",
        "baseline_rms",
        "snr_change_db",
    ):
        assert result[key] == 0.0, key
    assert result["concentration"] is None and result["concentration_reason"]


def test_tone_out_of_silence_is_finite_and_clamped_at_the_floor():
    config = ScoreConfig()
    result = score(np.zeros(SR), tone(440.0, 0.5), SR, [440.0], config)
    assert_finite_json(result)
    target = result["targets"][0]
    # gain is measured from the floor: band energy 0.125 is -9 dB, the floor is -120 dB
    assert target["gain_db"] == pytest.approx(10 * math.log10(0.125) - config.floor_db, abs=0.2)
    assert target["concentration"] > 0.9


def test_bins_silent_in_one_decode_count_from_the_floor():
    # White noise of variance s2 has a one-sided power of 2 * s2 / n_fft per bin; against a
    # silent baseline every bin differs by that level above the floor (Welch averaging of
    # 4 s leaves about 0.6 dB of scatter per bin, hence the tolerance). With the default
    # dynamic range the silent side is floored 60 dB below the noise's peak bin instead.
    config, s2 = ScoreConfig(range_db=None), 0.01
    noise = math.sqrt(s2) * np.random.default_rng(5).standard_normal(4 * SR)
    result = score(np.zeros_like(noise), noise, SR, config=config)
    level = 10 * math.log10(2 * s2 / config.n_fft) - config.floor_db
    assert result["lsd_db"] == pytest.approx(level, abs=1.0)
    ranged = score(np.zeros_like(noise), noise, SR)["lsd_db"]
    assert 55.0 < ranged < 60.0  # each bin's distance to a floor 60 dB under the largest bin


def _partials(freqs, amps, seconds=2.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)  # 20 ms ramps, as the stimuli have
    return fade * sum(a * np.sin(2 * np.pi * f * t + 0.3 * i) for i, (f, a) in enumerate(zip(freqs, amps)))


@pytest.mark.parametrize("others", [(), (310.0,), (310.0, 1270.0, 2950.0)])
def test_an_ideal_added_partial_has_no_offband_distance(others):
    # The ideal intervention: patched = the same mixture with the target partial added.
    # Nothing changed off the target, so the off-band distance must be near 0 (before the
    # dynamic range, baseline-only bins and guard, this scored 8 to 20 dB).
    without = _partials(others, [0.2] * len(others)) if others else np.zeros(2 * SR)
    target = _partials([880.0], [0.2])
    t = score(without, without + target, SR, (880.0,))["targets"][0]
    assert t["gain_db"] > 20.0 and t["concentration"] > 0.99
    assert t["offband_lsd_db"] < 0.3


def test_offband_distance_sees_damage_and_concentration_sees_spill():
    others = _partials((310.0, 1270.0, 2950.0), [0.2] * 3)
    target = _partials([880.0], [0.2])
    # the patch also halves the 310 Hz partial: damage to what the baseline held
    damaged = others + target - 0.5 * _partials([310.0], [0.2])
    t = score(others, damaged, SR, (880.0,))["targets"][0]
    assert t["offband_lsd_db"] > 1.0
    # broadband spill (more energy than the partial's) into bins the baseline leaves
    # silent: whatever the off-band distance makes of it, the concentration catches it
    noise = 0.3 * np.random.default_rng(1).standard_normal(2 * SR)
    spilled = score(others, others + target + noise, SR, (880.0,))["targets"][0]
    assert spilled["concentration"] < 0.5


def test_narrow_band_keeps_the_nearest_bin():
    f = 1003.0
    result = score(tone(f, 0.1), tone(f, 0.2), SR, [f], ScoreConfig(band_hz=0.5))
    target = result["targets"][0]
    assert target["band_lo_hz"] == target["band_hi_hz"] == pytest.approx(1000.0, abs=SR / 4096)


def test_torch_tensors_are_accepted():
    x = torch.from_numpy(tone(440.0, 0.1))
    assert score(x, 2 * x, SR, [440.0])["targets"][0]["gain_db"] == pytest.approx(6.02, abs=0.01)


# --- errors --------------------------------------------------------------------------------


def test_shape_mismatch_raises_one_line_error():
    with pytest.raises(SteerlabError, match=r"differ in shape: \(1, 100\) vs \(1, 101\)") as info:
        score(np.zeros(100), np.zeros(101), SR)
    assert "\n" not in str(info.value)
    with pytest.raises(AudioError):
        score(np.zeros((2, 100)), np.zeros((1, 100)), SR)


@pytest.mark.parametrize("f", [0.0, -10.0, SR / 2, 9000.0, float("nan"), float("inf")])
def test_target_outside_open_nyquist_range_raises(f):
    with pytest.raises(SteerlabError, match=r"outside the valid range \(0, 8000\) Hz"):
        score(np.zeros(100), np.zeros(100), SR, [440.0, f])


@pytest.mark.parametrize("bad", [np.zeros((1, 1, 10)), np.zeros(0), np.array([0.0, np.nan])])
def test_bad_audio_raises_audio_error(bad):
    with pytest.raises(AudioError):
        score(bad, bad, SR)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"band_hz": 0.0}, "band_hz must be"),
        ({"band_hz": float("nan")}, "band_hz must be"),
        ({"n_fft": 8}, "n_fft must be"),
        ({"n_fft": 4098}, "multiple of 4"),
        ({"n_fft": 1024.0}, "n_fft must be"),
        ({"floor_db": 0.0}, r"\[-300, 0\)"),
    ],
)
def test_config_validates_itself(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ScoreConfig(**kwargs)


def test_a_kept_baseline_stft_gives_the_same_scores_and_multires_is_optional():
    """The batch test transforms each baseline once and skips the MR-STFT distance; neither
    may change a number it records."""
    from steerlab.scoring import as_audio, stft

    base = harmonic(220.0, 6, 0.6) + pink_noise(0.6, 3, rms=0.02)
    patched = base + tone(1000.0, 0.05, 0.6)
    full = score(base, patched, SR, [1000.0])
    quick = score(base, patched, SR, [1000.0], multires=False, baseline_stft=stft(as_audio(base), ScoreConfig().n_fft))
    assert quick.pop("mrstft") is None and full.pop("mrstft") > 0
    assert quick.pop("mrstft_reason") == "not computed (multires=False)" and "mrstft_reason" not in full
    assert json.dumps(quick, sort_keys=True) == json.dumps(full, sort_keys=True)


def test_scoring_bin_hz_is_the_band_scores_fft_bin_beside_the_clips_resolution_hz():
    """New-user defect: ``resolution_hz`` (sr / n_samples, 0.5 Hz for 2 s) read as the bin width
    of the band scores, which use a 4096-point FFT (5.86 Hz bins at 24 kHz)."""
    sr, n = 24_000, 48_000
    x = 0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)[None]
    s = score(x, 1.5 * x, sr, (440.0,))
    res = s["resolution"]
    assert res["resolution_hz"] == 0.5 and res["scoring_bin_hz"] == 24_000 / 4096 == 5.859375
    band = s["targets"][0]
    for edge in (band["band_lo_hz"], band["band_hi_hz"]):  # band edges fall on the scoring bins
        assert edge / res["scoring_bin_hz"] == pytest.approx(round(edge / res["scoring_bin_hz"]))
    assert score(x, 1.5 * x, sr, (440.0,), ScoreConfig(n_fft=1024))["resolution"]["scoring_bin_hz"] == 24_000 / 1024
