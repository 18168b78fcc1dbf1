"""Matched stimulus pairs: the pair differs by exactly the target sinusoid, the mixture holds
exactly ``density`` partials clear of the target, noise and seeds behave, files round-trip."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import import_or_skip

from steerlab import stimuli as st
from steerlab.errors import SteerlabError
from steerlab.stimuli import StimulusSpec

SR = 24_000
DUR = 0.5  # 2 Hz bins


def _spec(family: str, target: float = 1850.0, density: int = 4, **kw) -> StimulusSpec:
    f0 = kw.pop("f0", 100.0 if family in ("harmonic", "chord") else None)
    if family == "tone":
        density = 0
    return StimulusSpec(family, target, density, f0, duration_s=kw.pop("duration_s", DUR), **kw)


def _peaks(x: np.ndarray, sr: int, pad: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed amplitude spectrum (a sinusoid of amplitude A peaks at about A) and its frequencies."""
    w = np.hanning(len(x))
    mag = np.abs(np.fft.rfft(x * w, n=pad * len(x))) * 2 / w.sum()
    return np.fft.rfftfreq(pad * len(x), 1 / sr), mag


def _count_peaks(mag: np.ndarray, rel: float = 0.25) -> np.ndarray:
    inner = mag[1:-1]
    is_peak = (inner > mag[:-2]) & (inner >= mag[2:]) & (inner > rel * mag.max())
    return np.flatnonzero(is_peak) + 1


FAMILIES = ["tone", "harmonic", "chord", "inharmonic"]


@pytest.mark.parametrize("family", FAMILIES)
def test_difference_is_exactly_the_target(family):
    spec = _spec(family, target=1234.5, seed=3)
    r = st.render_parts(spec)
    without, with_ = st.render(spec)
    assert without.dtype == with_.dtype == np.float32 and without.shape == with_.shape == (SR // 2,)
    np.testing.assert_array_equal(without, r.without)
    # the expected target, built here from the spec and the recorded phase (not from r.target)
    n = len(without)
    t = np.arange(n) / SR
    m = round(spec.fade_ms * SR / 1000)
    env = np.ones(n)
    env[:m] = 0.5 - 0.5 * np.cos(np.pi * np.arange(m) / m)
    env[n - m :] = env[:m][::-1]
    expected = r.scale * spec.amplitude * np.sin(2 * np.pi * spec.target_hz * t + r.partials.target_phase) * env
    diff = with_.astype(np.float64) - without.astype(np.float64)
    assert np.max(np.abs(diff - expected)) <= 1e-7  # float32 rounding only
    assert env[0] == 0.0 and with_[0] == 0.0 and abs(with_[-1]) < 1e-4  # fades: no clicks
    freqs, mag = _peaks(diff, SR, pad=8)
    peak = freqs[np.argmax(mag)]
    assert abs(peak - spec.target_hz) <= SR / n  # within one bin
    assert mag.max() == pytest.approx(r.scale * spec.amplitude, rel=0.02)


@pytest.mark.parametrize(
    "family,density",
    [
        ("harmonic", 1),
        ("harmonic", 16),
        ("chord", 1),
        ("chord", 4),
        ("inharmonic", 1),
        ("inharmonic", 2),
        ("inharmonic", 8),
        ("inharmonic", 16),
    ],
)
def test_mixture_has_exactly_density_partials(family, density):
    spec = _spec(family, density=density, seed=5)
    r = st.render_parts(spec)
    freqs = np.array(r.partials.freqs_hz)
    assert len(freqs) == len(r.partials.amplitudes) == len(r.partials.phases) == density
    f, mag = _peaks(r.without.astype(np.float64), SR)
    found = f[_count_peaks(mag)]
    assert len(found) == density, (found, freqs)
    assert np.max(np.abs(np.sort(found) - np.sort(freqs))) <= 2 * SR / len(r.without)
    # the mixture lies in the span of the recorded sinusoids (nothing else is in it),
    # with the recorded amplitudes
    t = np.arange(len(r.without)) / SR
    env = st.fade(len(t), SR, spec.fade_ms)
    basis = np.concatenate([np.sin(2 * np.pi * freqs * t[:, None]), np.cos(2 * np.pi * freqs * t[:, None])], axis=1)
    coef, *_ = np.linalg.lstsq(basis * env[:, None], r.without.astype(np.float64) / r.scale, rcond=None)
    fit = (basis * env[:, None]) @ coef
    assert np.max(np.abs(fit - r.without / r.scale)) < 1e-5
    np.testing.assert_allclose(np.hypot(coef[:density], coef[density:]), r.partials.amplitudes, rtol=1e-4)


def test_tone_pair_is_silence_vs_tone():
    without, with_ = st.render(_spec("tone"))
    assert not np.any(without)
    assert np.max(np.abs(with_)) == pytest.approx(0.1, rel=1e-3)


def test_min_separation_respected_and_target_band_empty():
    for seed in range(20):
        spec = _spec("inharmonic", target=300.0, density=16, seed=seed, min_separation_hz=40.0)
        fr = np.array(st.partials(spec).freqs_hz)
        assert np.min(np.abs(fr - 300.0)) >= 40.0
        gaps = np.abs(fr[:, None] - fr[None, :])[~np.eye(16, dtype=bool)]
        assert gaps.min() >= 40.0
        assert fr.min() >= 50.0 and fr.max() <= 8000.0
    without, with_ = st.render(_spec("inharmonic", target=300.0, density=16, seed=0, min_separation_hz=40.0))
    f, m_without = _peaks(without.astype(np.float64), SR)
    _, m_with = _peaks(with_.astype(np.float64), SR)
    band = np.abs(f - 300.0) <= 10.0
    assert np.sum(m_without[band] ** 2) < 1e-4 * np.sum(m_with[band] ** 2)
    # harmonics that would sit on (or within 30 Hz of) the target make the combination infeasible
    with pytest.raises(st.Infeasible, match="min_separation_hz"):
        st.partials(StimulusSpec("harmonic", 445.0, 4, 220.0))
    with pytest.raises(st.Infeasible, match="Nyquist"):
        st.partials(StimulusSpec("harmonic", 445.0, 16, 1000.0))


def test_seeds_reproduce_and_differ():
    a = _spec("inharmonic", density=8, seed=1)
    np.testing.assert_array_equal(st.render(a)[1], st.render(_spec("inharmonic", density=8, seed=1))[1])
    b = _spec("inharmonic", density=8, seed=2)
    assert st.partials(a).freqs_hz != st.partials(b).freqs_hz
    assert not np.array_equal(st.render(a)[0], st.render(b)[0])
    h1, h2 = _spec("harmonic", seed=1), _spec("harmonic", seed=2)
    assert st.partials(h1).freqs_hz == st.partials(h2).freqs_hz  # the seed draws phases, not harmonics
    assert not np.array_equal(st.render(h1)[0], st.render(h2)[0])
    z1, z2 = _spec("harmonic", seed=1, phase="zero"), _spec("harmonic", seed=2, phase="zero")
    np.testing.assert_array_equal(st.render(z1)[1], st.render(z2)[1])


def test_key_and_json_round_trip():
    spec = StimulusSpec("harmonic", 1234.5, 4, 220, seed=1)
    assert spec.key() == "22a3118165204071"  # stable across runs and machines
    assert StimulusSpec("tone", 440).key() == "819ee906121a07b3"
    assert StimulusSpec.from_json(spec.to_json()) == spec
    assert StimulusSpec.from_json(spec.to_json()).key() == spec.key()
    # numbers are normalised: 220 and 220.0, numpy floats and ints give one key
    assert StimulusSpec("harmonic", np.float64(1234.5), np.int64(4), 220.0, seed=1).key() == spec.key()
    assert StimulusSpec("harmonic", 1234.5, 4, 220, seed=2).key() != spec.key()
    assert StimulusSpec("harmonic", 1234.5, 4, 220, seed=1, context_amplitude=0.05).key() != spec.key()
    with pytest.raises(st.StimulusError, match="unknown stimulus field"):
        StimulusSpec.from_json('{"family": "tone", "target_hz": 440, "colour": "red"}')


@pytest.mark.parametrize("family,snr", [("harmonic", 10.0), ("inharmonic", 0.0), ("chord", 25.0), ("tone", 6.0)])
def test_noise_identical_in_both_and_snr_as_requested(family, snr):
    noisy = st.render_parts(_spec(family, density=8, seed=4, snr_db=snr))
    clean = st.render_parts(_spec(family, density=8, seed=4))
    assert noisy.partials == clean.partials  # noise never moves the mixture
    without, with_ = (x.astype(np.float64) / noisy.scale for x in (noisy.without, noisy.with_))
    target = with_ - without
    noise_in_without = without - clean.without.astype(np.float64) / clean.scale
    noise_in_with = with_ - target - clean.without.astype(np.float64) / clean.scale
    np.testing.assert_allclose(noise_in_with, noise_in_without, atol=1e-6)
    assert np.std(noise_in_without) > 1e-3
    reference = target if family == "tone" else clean.without.astype(np.float64) / clean.scale
    measured = 10 * np.log10(np.mean(reference**2) / np.mean(noise_in_without**2))
    assert abs(measured - snr) < 0.5
    assert not np.array_equal(noisy.noise, st.render_parts(_spec(family, density=8, seed=5, snr_db=snr)).noise)


def test_no_clipping_and_scale_recorded():
    loud = st.render_parts(_spec("harmonic", density=16, phase="zero", amplitude=0.5))
    assert loud.scale < 0.2
    assert np.max(np.abs(loud.with_)) <= 0.9 and np.max(np.abs(loud.without)) <= 0.9
    assert max(np.max(np.abs(loud.with_)), np.max(np.abs(loud.without))) > 0.899
    np.testing.assert_allclose(loud.without / loud.scale, loud.mixture, atol=1e-6)
    quiet = st.render_parts(_spec("harmonic", density=2, amplitude=0.05))
    assert quiet.scale == 1.0


def test_validation_errors():
    with pytest.raises(ValueError, match="unknown family 'harmonc'. Did you mean 'harmonic'"):
        StimulusSpec("harmonc", 440.0, 4, 220.0)
    with pytest.raises(SteerlabError) as exc:
        StimulusSpec("tone", 12_000.0)
    assert "Nyquist frequency 12000 Hz" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="Nyquist frequency 8000 Hz"):
        StimulusSpec("tone", 9000.0, sample_rate=16_000)
    for kwargs, fragment in [
        (dict(family="tone", target_hz=440.0, f0=220.0), "f0 is only used"),
        (dict(family="harmonic", target_hz=440.0, density=3), "needs f0"),
        (dict(family="tone", target_hz=440.0, phase="sine"), "Valid values: random, zero"),
        (dict(family="tone", target_hz=440.0, context_amplitude="loud"), "match, rolloff, random"),
        (dict(family="tone", target_hz=440.0, duration_s=0.01, fade_ms=10.0), "fade_ms 10 is too long"),
        (dict(family="tone", target_hz=float("nan")), "finite"),
        (dict(family="inharmonic", target_hz=440.0, density=2, sample_rate=16_000), "band_high_hz 8000"),
        (dict(family="chord", target_hz=440.0, density=2, f0=110.0, chord="diminished"), "unknown chord"),
    ]:
        with pytest.raises(st.StimulusError, match=fragment):
            StimulusSpec(**kwargs)


def test_design_cross_product_and_skips():
    d = st.design(["tone", "harmonic", "inharmonic"], [445.0, 1000.0], [0, 4], [220.0], range(2), duration_s=0.1)
    # tone: 2 targets x 2 seeds; harmonic: 445 collides with 440 and density 0 is tone-only;
    # inharmonic: 2 targets x density 4 x 2 seeds
    assert [s.family for s in d].count("tone") == 4
    assert [(s.target_hz, s.density) for s in d if s.family == "harmonic"] == [(1000.0, 4)] * 2
    assert sum(s.family == "inharmonic" for s in d) == 4
    assert d.skipped == {"density 0 is only for tone": 8, "target within min_separation_hz of a mixture partial": 2}
    assert len({s.key() for s in d}) == len(d) == 10
    with pytest.raises(st.StimulusError, match="no feasible stimuli"):
        st.design(["harmonic"], [440.0], [4], [220.0], [0])
    with pytest.raises(st.StimulusError, match="Nyquist"):
        st.design(["tone"], [440.0, 20_000.0], [1], [], [0])
    assert st.log_grid(100, 4000, 8)[0] == 100.0 and st.log_grid(100, 4000, 8)[-1] == 4000.0
    assert np.allclose(np.diff(np.log(st.log_grid(100, 4000, 8))), np.log(40) / 7, rtol=1e-3)


def _design():
    return st.design(
        ["tone", "harmonic", "chord", "inharmonic"],
        [440.0, 1850.0],
        [1, 4],
        [100.0],
        range(2),
        snrs=[None, 10.0],
        duration_s=0.1,
        context_amplitude="random",
    )


def test_write_set_manifest_round_trip_and_reproducible(tmp_path):
    specs = _design()
    manifest = st.write_set(specs, tmp_path / "a")
    st.write_set(specs, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(names) == 2 * len(specs) + 1 and "manifest.csv" in names
    for name in names:  # byte-identical
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == st.MANIFEST_COLUMNS
    assert len(rows) == len(specs)
    rebuilt = st.read_manifest(tmp_path / "a")
    assert rebuilt == list(specs)
    for spec, row in zip(rebuilt, rows):
        r = st.render_parts(spec)
        without = sf.read(tmp_path / "a" / row["without_file"], dtype="float32")[0]
        with_ = sf.read(tmp_path / "a" / row["with_file"], dtype="float32")[0]
        np.testing.assert_array_equal(without, r.without)
        np.testing.assert_array_equal(with_, r.with_)
        assert float(row["scale"]) == r.scale
        recorded = [float(v) for v in row["partials_hz"].split(";")] if row["partials_hz"] else []
        assert recorded == list(r.partials.freqs_hz) and len(recorded) == spec.density


def test_read_manifest_refuses_tampered_rows(tmp_path):
    manifest = st.write_set(_design()[:3], tmp_path)
    text = manifest.read_text()
    manifest.write_text(text.replace(",24000,", ",16000,", 1))
    with pytest.raises(st.StimulusError, match="does not match its fields"):
        st.read_manifest(manifest)
    manifest.write_text(text.replace(",1\n", ",99\n", 1))
    with pytest.raises(st.StimulusError, match="version '99' is not supported"):
        st.read_manifest(manifest)


@pytest.fixture(scope="module")
def cli():
    from steerlab import cli as cli_module

    return cli_module.get_cli()


def test_cli_writes_pairs_and_manifest(cli, tmp_path):
    out = tmp_path / "stim"
    args = [
        "stimuli",
        "-o",
        str(out),
        "-f",
        "tone",
        "-f",
        "inharmonic",
        "-t",
        "440",
        "-t",
        "1000",
        "-d",
        "1",
        "-d",
        "2",
        "-s",
        "1",
        "--duration",
        "0.1",
        "--json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["pairs"] == 2 + 4 and summary["skipped"] == {}
    assert len(list(out.glob("*_without.wav"))) == len(list(out.glob("*_with.wav"))) == 6
    assert len(st.read_manifest(out)) == 6
    grid = CliRunner().invoke(
        cli,
        [
            "stimuli",
            "-o",
            str(tmp_path / "g"),
            "-f",
            "tone",
            "--grid",
            "200",
            "800",
            "3",
            "-s",
            "2",
            "--duration",
            "0.05",
            "--snr-db",
            "none",
            "--snr-db",
            "20",
        ],
    )
    assert grid.exit_code == 0, grid.output
    assert "wrote 12 pairs (24 WAV files)" in grid.stdout


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["-f", "harmonc"], "Did you mean 'harmonic'?"),
        (["-t", "13000"], "Nyquist frequency 12000 Hz"),
        (["-t", "440", "--grid", "100", "200", "3"], "either --targets-hz or --grid"),
        (["--snr-db", "loud"], "--snr-db must be a number"),
        (["-f", "harmonic", "-t", "440", "--f0", "220", "-d", "2"], "no feasible stimuli"),
    ],
)
def test_cli_bad_input_is_one_line(cli, tmp_path, args, fragment):
    out = tmp_path / "stim"
    result = CliRunner().invoke(cli, ["stimuli", "-o", str(out), "--duration", "0.05", *args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.output
    assert not out.exists()


def test_margins_are_silence_around_the_unchanged_sound():
    plain = st.render_parts(_spec("inharmonic", seed=2, snr_db=20.0))
    framed = st.render_parts(_spec("inharmonic", seed=2, snr_db=20.0, margin_s=0.1))
    m = int(0.1 * SR)
    assert framed.without.size == plain.without.size + 2 * m
    for a, b in (
        (framed.without, plain.without),
        (framed.with_, plain.with_),
        (framed.target, plain.target),
        (framed.noise, plain.noise),
        (framed.mixture, plain.mixture),
    ):
        np.testing.assert_array_equal(a[m:-m], b)
        assert not a[:m].any() and not a[-m:].any()
    assert framed.scale == plain.scale


def test_margin_enters_the_key_only_when_set(tmp_path):
    spec = _spec("chord", seed=1)
    assert _spec("chord", seed=1, margin_s=0.0).key() == spec.key()  # earlier results keep their keys
    framed = _spec("chord", seed=1, margin_s=0.25)
    assert framed.key() != spec.key()
    with pytest.raises(st.StimulusError, match="margin_s must be a finite number >= 0, got -0.1"):
        _spec("chord", margin_s=-0.1)
    st.write_set([spec, framed], tmp_path / "set")
    assert st.read_manifest(tmp_path / "set") == [spec, framed]
    # a manifest written before margins existed has no margin_s column: its sounds have none
    manifest = tmp_path / "set" / st.MANIFEST_NAME
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = [c for c in rows[0] if c != "margin_s"]
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        w.writerow(rows[0])
    assert st.read_manifest(manifest) == [spec]


# ---- instrument family: rendered General MIDI pairs -------------------------------------------


def _instrument(**kw):
    import_or_skip("tinysoundfont")
    base = dict(
        family="instrument",
        target_hz=300.0,
        density=3,
        seed=1,
        sample_rate=16000,
        duration_s=0.5,
        margin_s=0.05,
        band_high_hz=7200.0,
    )
    return StimulusSpec(**{**base, **kw})


def test_instrument_pair_differs_by_exactly_one_rendered_note():
    spec = _instrument()
    score = st.instrument_score(spec)
    # the target is the nearest MIDI note (D4, 62) and the spec's target its fundamental
    assert score.target_midi == 62 and spec.target_hz == pytest.approx(293.6648, abs=1e-4)
    assert len(score.context_midi) == 3 and score.target_midi not in score.context_midi
    r = st.render_parts(spec)
    diff = r.with_.astype(np.float64) - r.without.astype(np.float64)
    # the difference is the target note rendered alone (same program, velocity, fade, scale)
    m, n = int(0.05 * 16000), int(0.5 * 16000)
    alone = st._render_notes(spec, score, (score.target_midi,)) * st.fade(n, 16000, spec.fade_ms)
    g = float(np.dot(diff[m : m + n], alone) / np.dot(alone, alone))
    assert np.linalg.norm(diff[m : m + n] - g * alone) / np.linalg.norm(diff) < 1e-5
    assert np.all(diff[:m] == 0) and np.all(diff[m + n :] == 0) and np.all(r.without[:m] == 0)
    assert np.abs(diff).max() == pytest.approx(spec.amplitude, rel=1e-5)  # the note's peak is `amplitude`
    # its spectrum's strongest peaks are harmonics of the note's fundamental
    x = diff[m : m + n] * np.hanning(n)
    mag = np.abs(np.fft.rfft(x, 8 * n))
    freqs = np.fft.rfftfreq(8 * n, 1 / 16000)
    peaks = [i for i in np.argsort(mag[1:-1])[::-1] + 1 if mag[i] >= mag[i - 1] and mag[i] >= mag[i + 1]][:3]
    for i in peaks:
        k = freqs[i] / spec.target_hz
        assert abs(k - round(k)) * spec.target_hz < 3.0 and round(k) >= 1, (freqs[i], spec.target_hz)
    # and the context (without) has its energy at the context notes, not the target's fundamental
    assert st.partials(spec).freqs_hz[0] == pytest.approx(st.midi_hz(score.context_midi[0]))


def test_instrument_pairs_are_deterministic_and_seeded():
    a, b = st.render(_instrument()), st.render(_instrument())
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = st.render(_instrument(seed=2))
    assert not np.array_equal(a[0], c[0])
    assert st.instrument_score(_instrument()) != st.instrument_score(_instrument(seed=2))


def test_instrument_context_keeps_its_harmonics_away_from_the_target():
    for seed in range(6):
        spec = _instrument(seed=seed, density=4, min_separation_hz=30.0)
        assert all(abs(f - spec.target_hz) >= 30.0 for f in st.partials(spec).freqs_hz)
    with pytest.raises(st.Infeasible, match="too crowded"):
        st.partials(_instrument(density=40, min_separation_hz=200.0))


def test_instrument_set_manifest_has_the_midi_ground_truth(tmp_path):
    specs = st.design(["instrument"], [300.0], [2], [], [0, 1], sample_rate=16000, duration_s=0.3, band_high_hz=7200.0)
    manifest = st.write_set(specs, tmp_path)
    rows = list(csv.DictReader(open(manifest)))
    truth = [json.loads(r["instrument"]) for r in rows]
    assert [t["target_midi"] for t in truth] == [62, 62] and all(len(t["context_midi"]) == 2 for t in truth)
    assert st.read_manifest(manifest) == list(specs)


def test_instrument_without_the_render_extra_is_one_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "tinysoundfont" else real(n, *a))
    with pytest.raises(st.StimulusError, match=r"steerlab\[render\]") as exc:
        st.design(["instrument"], [300.0], [2], [], [0], sample_rate=16000, band_high_hz=7200.0)
    assert "\n" not in str(exc.value)
